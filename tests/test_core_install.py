"""collectfast without its extras: the file-system path needs no optional package, a missing extra is a check.

Each test runs a child Python in which an import hook hides packages, as if they were not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
S3_PACKAGES = ("boto3", "botocore", "s3transfer")
GCLOUD_STRATEGY = "collectfast.strategies.gcloud.GoogleCloudStrategy"
OPTIONAL = (*S3_PACKAGES, "google", "storages", "moto", "mypy_boto3_s3")
CORE_MODULES = [
    "collectfast",
    "collectfast.apps",
    "collectfast.checks",
    "collectfast.conf",
    "collectfast.counting",
    "collectfast.hashing",
    "collectfast.manifest",
    "collectfast.pool",
    "collectfast.postprocess",
    "collectfast.settings",
    "collectfast.strategies",
    "collectfast.strategies.base",
    "collectfast.strategies.filesystem",
    "collectfast.strategies.upload_all",
    "collectfast.management.commands.collectstatic",
]

HIDE = """
import sys

HIDDEN = set({hidden!r})
for _name in [n for n in sys.modules if n.split(".")[0] in HIDDEN]:
    del sys.modules[_name]


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Hide())

import json
from django.conf import settings

for _key, _value in json.loads(sys.argv[1]).items():
    setattr(settings, _key, _value)
"""

CHECK_MESSAGES = """
import django

django.setup()
from collectfast.checks import check_settings

print(json.dumps([[m.id, m.msg, m.hint] for m in check_settings()]))
"""


def run(hidden: tuple[str, ...], code: str, env: dict[str, str] | None = None, **settings: object) -> str:
    """Run ``code`` with ``hidden`` packages missing and ``settings`` overridden; return its stdout."""
    script = HIDE.format(hidden=hidden) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_messages(hidden: tuple[str, ...], **settings: object) -> list[list[str]]:
    messages: list[list[str]] = json.loads(run(hidden, CHECK_MESSAGES, **settings).splitlines()[-1])
    return messages


def static_files(tmp_path: Path) -> dict[str, object]:
    tree = tmp_path / "static"
    (tree / "css").mkdir(parents=True)
    (tree / "css" / "site.css").write_text("body { background: url('../logo.txt'); }")
    (tree / "logo.txt").write_text("logo")
    return {"STATICFILES_DIRS": [str(tree)], "STATIC_ROOT": str(tmp_path / "root")}


def storages(backend: str, **options: object) -> dict[str, object]:
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": backend, "OPTIONS": options},
    }


DEPLOY = """
import importlib

import django

django.setup()
for module in {modules!r}:
    importlib.import_module(module)
from django.core.management import call_command

call_command("check")
call_command("collectstatic", interactive=False, verbosity=1)
"""


@pytest.mark.parametrize(
    "backend",
    [
        "django.contrib.staticfiles.storage.StaticFilesStorage",
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
    ],
)
def test_a_file_system_deploy_needs_no_optional_package(tmp_path, backend):
    out = run(OPTIONAL, DEPLOY.format(modules=CORE_MODULES), STORAGES=storages(backend), **static_files(tmp_path))
    assert "2 static files copied" in out
    assert (tmp_path / "root" / "css" / "site.css").is_file()


CHECK = """
import django

django.setup()
from django.core.management import call_command

call_command("check")
print("checked")
"""


def test_django_storages_without_boto3_never_crashes_check():
    pytest.importorskip("storages")
    assert run(S3_PACKAGES, CHECK).splitlines()[-1] == "checked"
    assert run(("google",), CHECK).splitlines()[-1] == "checked"


def test_django_storages_without_boto3_deploys_to_the_file_system(tmp_path):
    pytest.importorskip("storages")
    run(S3_PACKAGES, DEPLOY.format(modules=CORE_MODULES), **static_files(tmp_path))
    assert (tmp_path / "root" / "logo.txt").is_file()


@pytest.mark.parametrize(
    ("hidden", "setting", "extra"),
    [
        (S3_PACKAGES, {"STORAGES": storages("storages.backends.s3.S3Storage", bucket_name="b")}, "s3"),
        (S3_PACKAGES, {"STORAGES": storages("storages.backends.s3.S3ManifestStaticStorage", bucket_name="b")}, "s3"),
        (S3_PACKAGES, {"COLLECTFAST_STRATEGY": "collectfast.strategies.boto3.Boto3Strategy"}, "s3"),
        (S3_PACKAGES, {"COLLECTFAST_STRATEGY": "collectfast.strategies.manifest.S3ManifestStrategy"}, "s3"),
        (("google",), {"STORAGES": storages("storages.backends.gcloud.GoogleCloudStorage", bucket_name="b")}, "gcloud"),
        (("google",), {"COLLECTFAST_STRATEGY": GCLOUD_STRATEGY}, "gcloud"),
        (
            ("storages", "google"),
            {"COLLECTFAST_STRATEGY": "collectfast.strategies.gcloud.GoogleCloudStrategy"},
            "gcloud",
        ),
    ],
)
def test_e003_a_missing_extra_names_the_pip_extra(hidden, setting, extra):
    messages = check_messages(hidden, **setting)
    assert [m[0] for m in messages] == ["collectfast.E003"], messages
    assert f'pip install "collectfast[{extra}]"' in messages[0][2]


GCLOUD_DEPLOY = """
import django
from google.auth.credentials import AnonymousCredentials

settings.STORAGES = {{
    **settings.STORAGES,
    "staticfiles": {{
        "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
        "OPTIONS": {{"bucket_name": {bucket!r}, "project_id": "test", "credentials": AnonymousCredentials()}},
    }},
}}
django.setup()
from django.core.management import call_command

call_command("check")
call_command("collectstatic", interactive=False, verbosity=1)
"""


def test_gcloud_extra_deploys_without_boto3(tmp_path, monkeypatch):
    pytest.importorskip("google.cloud.storage")
    pytest.importorskip("gcp_storage_emulator")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    from tests.gcsserver import GCSServer

    server = GCSServer()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint_url)
        monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
        client = gcs.Client(project="test", credentials=AnonymousCredentials())
        client.create_bucket("no-boto3")
        out = run(S3_PACKAGES, GCLOUD_DEPLOY.format(bucket="no-boto3"), **static_files(tmp_path))
        assert "2 static files copied" in out
        assert sorted(blob.name for blob in client.bucket("no-boto3").list_blobs()) == ["css/site.css", "logo.txt"]
    finally:
        server.stop()


# tox (tox.ini) tests the installed wheel: it runs pytest in a copy of the checkout without
# collectfast/, and sets COLLECTFAST_EXPECT_INSTALLED=1 and COLLECTFAST_CHECKOUT to the checkout.
EXPECT_INSTALLED = os.environ.get("COLLECTFAST_EXPECT_INSTALLED") == "1"
tox_only = pytest.mark.skipif(
    not EXPECT_INSTALLED, reason="tox only (COLLECTFAST_EXPECT_INSTALLED=1): make test runs the checkout"
)
WHERE = "import collectfast; print(collectfast.__file__)"


def assert_installed(module_file: str) -> None:
    """``module_file`` (collectfast's ``__init__.py``) is the installed wheel's, not the checkout's."""
    where = Path(module_file).resolve()
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    checkout = Path(os.environ.get("COLLECTFAST_CHECKOUT") or ROOT).resolve()
    assert where.is_relative_to(site_packages), f"collectfast imported from {where}, not from {site_packages}"
    assert not where.is_relative_to(checkout / "collectfast"), f"collectfast imported from the checkout: {where}"
    assert not (ROOT / "collectfast").exists(), f"the tests run next to a collectfast/ package: {ROOT}"


@tox_only
def test_tox_imports_the_installed_wheel_not_the_checkout():
    import collectfast

    assert_installed(collectfast.__file__)


@tox_only
@pytest.mark.parametrize("args", [["-c", WHERE], ["-m", "tests.test_core_install"]], ids=["python-c", "python-m"])
def test_children_started_from_the_root_import_the_installed_wheel(args):
    # As the suite starts its children (python -m tests.deploy_process, python -c ...): from ROOT.
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_installed(result.stdout.splitlines()[-1])


if __name__ == "__main__":  # python -m tests.test_core_install: where collectfast comes from
    import collectfast

    print(collectfast.__file__)
