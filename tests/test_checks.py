"""Every system check id fires on the configuration it is about, and only then."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from collectfast.checks import check_settings
from collectfast.strategies import Strategy, load_strategy
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


def test_checks_never_walk_the_static_files(settings, static_tree: StaticTree, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a system check listed the static files")

    monkeypatch.setattr("django.contrib.staticfiles.finders.FileSystemFinder.list", refuse)
    monkeypatch.setattr("django.contrib.staticfiles.finders.AppDirectoriesFinder.list", refuse)
    settings.COLLECTFAST_STRATEGY = CACHING_FS
    static_tree.write("a.css", "x")
    settings.CACHES = {"default": culling_cache(tmp_path, max_entries=3)}
    assert ids() == []


def culling_cache(tmp_path, max_entries: int) -> dict:
    return {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path / "cache"),
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": max_entries},
    }


def test_w004_at_run_time_max_entries_below_the_number_of_files(settings, tmp_path):
    from collectfast.checks import cache_capacity_warning
    from collectfast.strategies.filesystem import CachingFileSystemStrategy

    settings.CACHES = {"default": culling_cache(tmp_path, max_entries=3)}
    message = cache_capacity_warning(CachingFileSystemStrategy, 5)
    assert message is not None
    assert "collectfast.W004" in message
    assert "5 static files" in message
    assert cache_capacity_warning(CachingFileSystemStrategy, 3) is None
    settings.CACHES = {"default": culling_cache(tmp_path, max_entries=10)}
    assert cache_capacity_warning(CachingFileSystemStrategy, 5) is None


def test_w004_not_for_listing_strategies_whose_listing_takes_a_few_entries(settings, tmp_path):
    from collectfast.checks import cache_capacity_warning
    from collectfast.strategies.filesystem import FileSystemStrategy

    settings.CACHES = {"default": culling_cache(tmp_path, max_entries=3)}
    assert cache_capacity_warning(FileSystemStrategy, 5) is None
    assert cache_capacity_warning(load_strategy(BOTO3), 5000) is None


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


W001_SCRIPT = """
from django.conf import settings
settings.STATICFILES_DIRS = [{static!r}]
settings.STORAGES = {{**settings.STORAGES, "staticfiles": {{"BACKEND": "django.core.files.storage.InMemoryStorage"}}}}
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "collectstatic", "--noinput"])
"""


def test_w001_is_printed_once_by_manage_py_collectstatic(static_tree: StaticTree):
    static_tree.write("a.css", "a")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", W001_SCRIPT.format(static=str(static_tree.root))],
        cwd=root,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "collectfast.W001" in result.stderr
    assert result.stderr.count("InMemoryStorage") == 1, result.stderr


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


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_checks_make_no_request_to_an_unreachable_manifest_storage(settings, monkeypatch):
    port = closed_port()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "storages.backends.s3.S3ManifestStaticStorage",
            "OPTIONS": {
                "bucket_name": "checks",
                "endpoint_url": f"http://127.0.0.1:{port}",
                "access_key": "a",
                "secret_key": "b",
            },
        },
    }
    attempts = []
    connect = socket.socket.connect

    def recording_connect(sock, address):
        attempts.append(address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    started = time.monotonic()
    call_command("check", stdout=StringIO(), stderr=StringIO())
    assert attempts == []
    assert time.monotonic() - started < 5
    assert ids() == []


def test_fit_is_decided_from_the_storage_class():
    from django.core.files.storage import FileSystemStorage, InMemoryStorage
    from storages.backends.s3 import S3ManifestStaticStorage

    from collectfast.strategies.filesystem import FileSystemStrategy
    from collectfast.strategies.manifest import S3ManifestStrategy
    from collectfast.strategies.upload_all import UploadAllStrategy

    assert load_strategy(BOTO3).fits_class(S3ManifestStaticStorage)
    assert S3ManifestStrategy.fits_class(S3ManifestStaticStorage)
    assert not load_strategy(BOTO3).fits_class(FileSystemStorage)
    assert FileSystemStrategy.fits_class(FileSystemStorage)
    assert not FileSystemStrategy.fits_class(InMemoryStorage)
    assert UploadAllStrategy.fits_class(InMemoryStorage)
    assert FileSystemStrategy.fits(FileSystemStorage())


class InMemoryOnly(Strategy):
    @classmethod
    def fits_class(cls, storage_class):
        from django.core.files.storage import InMemoryStorage

        return issubclass(storage_class, InMemoryStorage)

    def should_copy_file(self, path, prefixed_path, local_storage):
        return True


def test_fits_on_an_instance_derives_from_fits_class(settings):
    from django.core.files.storage import FileSystemStorage, InMemoryStorage

    assert InMemoryOnly.fits(InMemoryStorage())
    assert not InMemoryOnly.fits(FileSystemStorage())
    settings.COLLECTFAST_STRATEGY = "tests.test_checks.InMemoryOnly"
    assert ids() == ["collectfast.E004"]


@pytest.mark.parametrize(
    ("name", "closest"),
    [("COLLECTFAST_THREAD", "COLLECTFAST_THREADS"), ("COLLECTFAST_STRATEGIES", "COLLECTFAST_STRATEGY")],
)
def test_w005_unknown_collectfast_setting_names_the_closest(settings, name, closest):
    setattr(settings, name, 4)
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.W005"]
    assert name in messages[0].msg
    assert closest in messages[0].hint


@pytest.mark.parametrize(
    ("name", "value", "equivalent"),
    [
        ("COLLECTFASTA_STRATEGY", "collectfasta.strategies.boto3.Boto3Strategy", "COLLECTFAST_STRATEGY"),
        ("COLLECTFASTA_THREADS", 20, "COLLECTFAST_THREADS"),
        ("COLLECTFASTA_CACHE", "collectfasta", "COLLECTFAST_CACHE"),
        ("COLLECTFASTA_CACHE_KEY_PREFIX", "x", "COLLECTFAST_CACHE_KEY_PREFIX"),
        ("COLLECTFASTA_ENABLED", False, "COLLECTFAST_ENABLED"),
        ("COLLECTFASTA_DEBUG", True, "COLLECTFAST_DEBUG"),
    ],
)
def test_w006_collectfasta_settings_name_their_equivalent(settings, name, value, equivalent):
    setattr(settings, name, value)
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.W006"]
    assert name in messages[0].msg
    assert re.search(rf"\b{equivalent}\b", messages[0].hint)


def test_w006_names_collectfasts_own_strategy_for_collectfastas():
    from django.test import override_settings

    with override_settings(COLLECTFASTA_STRATEGY="collectfasta.strategies.filesystem.FileSystemStrategy"):
        [message] = check_settings()
    assert "collectfast.strategies.filesystem.FileSystemStrategy" in message.hint


def test_w007_aws_preload_metadata(settings):
    settings.AWS_PRELOAD_METADATA = True
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.W007"]
    assert "AWS_PRELOAD_METADATA" in messages[0].msg


def test_w008_leftover_staticfiles_storage(settings):
    settings.STATICFILES_STORAGE = "storages.backends.s3.S3Storage"
    messages = check_settings()
    assert [m.id for m in messages] == ["collectfast.W008"]
    assert "STORAGES['staticfiles']" in messages[0].msg + messages[0].hint


def test_strategy_setting_may_be_a_class(settings):
    from collectfast.strategies.filesystem import FileSystemStrategy

    settings.COLLECTFAST_STRATEGY = FileSystemStrategy
    assert ids() == []
    assert load_strategy(FileSystemStrategy) is FileSystemStrategy
    settings.COLLECTFAST_STRATEGY = load_strategy(BOTO3)
    assert ids() == ["collectfast.E004"]


def test_strategy_class_runs_collectstatic(settings, static_tree: StaticTree, tmp_path):
    from tests.test_filesystem import OldHashStrategy

    settings.COLLECTFAST_STRATEGY = OldHashStrategy
    settings.STATIC_ROOT = str(tmp_path / "root")
    static_tree.write("a.css", "a")
    stdout = StringIO()
    call_command("collectstatic", interactive=False, stdout=stdout, stderr=StringIO())
    assert "1 static file copied" in stdout.getvalue()


def test_a_class_that_is_not_a_strategy_is_e003(settings):
    settings.COLLECTFAST_STRATEGY = dict
    assert ids() == ["collectfast.E003"]
