"""Every system check id fires on the configuration it is about, and only then."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from collectfast.checks import check_settings
from tests.fixtures import Bucket, StaticTree, s3_storage

S3 = "storages.backends.s3.S3Storage"
BOTO3 = "collectfast.strategies.boto3.Boto3Strategy"
CACHING_FS = "collectfast.strategies.filesystem.CachingFileSystemStrategy"


def ids(settings_obj=None) -> list[str]:
    return [message.id for message in check_settings()]


@pytest.fixture
def s3_static(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": S3, "OPTIONS": {"bucket_name": "checks", "access_key": "a", "secret_key": "b"}},
    }
    return settings


def test_the_test_settings_pass(s3_static):
    assert ids() == []


def test_the_default_filesystem_storage_passes(settings):
    assert ids() == []


def test_e001_collectfast_after_staticfiles(settings):
    settings.INSTALLED_APPS = ["django.contrib.staticfiles", "collectfast"]
    assert "collectfast.E001" in ids()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COLLECTFAST_THREADS", "8"),
        ("COLLECTFAST_THREADS", -1),
        ("COLLECTFAST_ENABLED", "yes"),
        ("COLLECTFAST_DEBUG", 1),
        ("COLLECTFAST_STRATEGY", 42),
        ("COLLECTFAST_CACHE", ""),
        ("COLLECTFAST_CACHE_KEY_PREFIX", None),
        ("COLLECTFAST_RETRIES", 1.5),
        ("COLLECTFAST_MANIFEST", ""),
        ("COLLECTFAST_MANIFEST_MODE", "optimistic"),
    ],
)
def test_e002_wrong_setting_values(settings, name, value):
    setattr(settings, name, value)
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.E002"]
    assert name in messages[0].msg


def test_threads_false_from_collectfast_2_is_accepted(settings):
    settings.COLLECTFAST_THREADS = False
    assert ids() == []


@pytest.mark.parametrize("path", ["collectfast.strategies.nope.Nope", "collectfast.conf.Settings"])
def test_e003_strategy_that_does_not_import_or_is_not_a_strategy(settings, path):
    settings.COLLECTFAST_STRATEGY = path
    assert ids() == ["collectfast.E003"]


def test_e004_strategy_that_does_not_fit_the_storage(settings):
    settings.COLLECTFAST_STRATEGY = BOTO3
    assert ids() == ["collectfast.E004"]


def test_e005_cache_alias_missing(s3_static):
    s3_static.COLLECTFAST_CACHE = "collectfast"
    assert ids() == ["collectfast.E005"]


def test_w001_no_strategy_fits(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert ids() == ["collectfast.W001"]


def test_w002_per_process_cache_with_threads(settings):
    settings.COLLECTFAST_STRATEGY = CACHING_FS
    settings.COLLECTFAST_THREADS = 8
    assert ids() == ["collectfast.W002"]
    settings.COLLECTFAST_THREADS = 1
    assert ids() == []


def test_w002_not_for_boto3_whose_cache_is_optional(s3_static):
    s3_static.COLLECTFAST_THREADS = 8
    assert ids() == []


def test_w003_short_timeout(s3_static):
    s3_static.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/tmp/x"}
    }
    assert "collectfast.W003" in ids()
    s3_static.CACHES["default"]["TIMEOUT"] = None
    assert "collectfast.W003" not in ids()


def test_w004_max_entries_below_the_number_of_files(settings, static_tree: StaticTree, tmp_path):
    settings.COLLECTFAST_STRATEGY = CACHING_FS
    for i in range(5):
        static_tree.write(f"{i}.css", "x")
    cache = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path / "cache"),
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 3},
    }
    settings.CACHES = {"default": cache}
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.W004"]
    assert "5 static files" in messages[0].msg
    cache["OPTIONS"]["MAX_ENTRIES"] = 10
    assert ids() == []


def test_w004_not_for_listing_strategies_whose_listing_takes_a_few_entries(
    s3_static, static_tree: StaticTree, tmp_path
):
    for i in range(5):
        static_tree.write(f"{i}.css", "x")
    s3_static.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
            "TIMEOUT": None,
            "OPTIONS": {"MAX_ENTRIES": 3},
        }
    }
    assert ids() == []


def test_checks_are_registered_under_the_staticfiles_tag(settings):
    settings.COLLECTFAST_THREADS = "many"
    with pytest.raises(SystemCheckError, match="collectfast.E002"):
        call_command("check", "--tag", "staticfiles", stdout=StringIO(), stderr=StringIO())


def test_collectstatic_runs_the_checks_first(settings, static_tree: StaticTree):
    settings.COLLECTFAST_THREADS = "many"
    with pytest.raises(SystemCheckError, match="COLLECTFAST_THREADS must be a whole number"):
        call_command("collectstatic", interactive=False, skip_checks=False, stdout=StringIO(), stderr=StringIO())


def test_bad_settings_with_skipped_checks_are_a_command_error(settings, static_tree: StaticTree):
    from django.core.management.base import CommandError

    settings.COLLECTFAST_THREADS = "many"
    with pytest.raises(CommandError, match="COLLECTFAST_THREADS must be a whole number"):
        call_command("collectstatic", interactive=False, stdout=StringIO(), stderr=StringIO())


def test_fallback_to_stock_warns_at_run_time(settings, static_tree: StaticTree):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    static_tree.write("a.css", "a")
    stderr = StringIO()
    call_command("collectstatic", "--skip-checks", interactive=False, stdout=StringIO(), stderr=stderr)
    assert "no built-in strategy fits django.core.files.storage.memory.InMemoryStorage" in stderr.getvalue()
    assert "COLLECTFAST_STRATEGY" in stderr.getvalue()


def test_mismatched_strategy_is_refused_even_with_skipped_checks(settings, static_tree: StaticTree):
    from django.core.management.base import CommandError

    settings.COLLECTFAST_STRATEGY = BOTO3
    static_tree.write("a.css", "a")
    with pytest.raises(CommandError, match="does not work with the configured storage"):
        call_command("collectstatic", "--skip-checks", interactive=False, stdout=StringIO(), stderr=StringIO())


def test_the_old_s3boto3_storage_path_gets_the_boto3_strategy(settings, bucket: Bucket, static_tree: StaticTree):
    storage = s3_storage(bucket)
    storage["BACKEND"] = "storages.backends.s3boto3.S3Boto3Storage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}
    static_tree.write("a.css", "a")
    stdout = StringIO()
    call_command("collectstatic", interactive=False, stdout=stdout, stderr=StringIO())
    assert "1 LIST, 1 PUT." in stdout.getvalue()
    assert ids() == []
