"""Failure paths against the real S3 server: one clear error, fail fast, a true closing sentence, no wrong skip."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.finders import get_finders
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from collectfast.strategies.boto3 import Boto3Strategy
from tests.fixtures import Bucket, StaticTree, collectstatic, s3_storage

UPLOAD_ALL = "collectfast.strategies.upload_all.UploadAllStrategy"
MANIFEST = "collectfast.strategies.manifest.S3ManifestStrategy"


def write_files(tree: StaticTree, n: int, prefix: str = "f", content: str = "") -> None:
    for i in range(n):
        tree.write(f"{prefix}/{i:03}.txt", f"{prefix} {i} {content}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signal_deploy_when(
    bucket: Bucket, args: list[str], ready: Callable[[], bool], signum: int, *, delay_ms: float = 0
) -> tuple[int, str]:
    """Run tests.deploy_process against ``bucket``; once ``ready()``, send it ``signum``; its exit code and stderr."""
    bucket.server.configure(delay_ms=delay_ms)
    command = [sys.executable, "-m", "tests.deploy_process", "--endpoint", bucket.server.endpoint_url]
    deploy = subprocess.Popen(
        [*command, "--bucket", bucket.name, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert deploy.poll() is None and time.monotonic() < deadline, "the deploy never got there"
        deploy.send_signal(signum)
        _, stderr = deploy.communicate(timeout=60)
    finally:
        bucket.server.configure(delay_ms=0)
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()
    return deploy.returncode, stderr


def test_unset_static_root_raises_as_stock_once(settings, static_tree: StaticTree):
    settings.STATIC_ROOT = None
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    write_files(static_tree, 130)

    with pytest.raises(ImproperlyConfigured) as stock:
        collectstatic("--disable-collectfast")
    with pytest.raises(ImproperlyConfigured) as ours:
        collectstatic()

    assert str(ours.value) == str(stock.value)
    assert "STATIC_ROOT" in str(ours.value)


def test_access_denied_on_every_upload_stops_after_a_few(s3_settings, settings, bucket: Bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = UPLOAD_ALL
    write_files(static_tree, 200)
    bucket.server.add_fault("PUT", "", status=403, code="AccessDenied")

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    # Three failures the same way stop it; what had started by then (at most 4 tasks per thread) still runs.
    assert bucket.counts()["PUT"] <= 3 + 4 * settings.COLLECTFAST_THREADS < 200
    assert message.count("was refused (AccessDenied)") == 1
    assert message.startswith("collectfast stopped: Uploading in bucket")
    assert len(message.splitlines()) <= 6
    assert message.splitlines()[-1].startswith("No file was uploaded: of 200 files 0 already in place")
    assert bucket.list_keys() == []


@pytest.mark.parametrize("strategy", [UPLOAD_ALL, MANIFEST])
def test_an_unreachable_endpoint_is_reported_once(settings, bucket: Bucket, static_tree: StaticTree, strategy):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": s3_storage(bucket, endpoint_url=f"http://127.0.0.1:{closed_port()}"),
    }
    settings.COLLECTFAST_STRATEGY = strategy
    settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    settings.COLLECTFAST_RETRIES = 0
    write_files(static_tree, 200)

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert message.count("could not be reached") == 1
    assert "endpoint_url" in message
    assert len(message.splitlines()) <= 6


def test_many_failures_are_summarised_and_the_others_finish(s3_settings, settings, bucket: Bucket, static_tree):
    settings.COLLECTFAST_RETRIES = 0
    write_files(static_tree, 30, prefix="bad")
    write_files(static_tree, 10, prefix="good")
    bucket.server.add_fault("PUT", "bad/", status=500, code="InternalError")

    with pytest.raises(CommandError) as error:
        collectstatic()

    lines = str(error.value).splitlines()
    assert lines[0] == "collectfast could not upload 30 of 40 files:"
    assert [line.split(":")[0].strip() for line in lines[1:11]] == [f"bad/{i:03}.txt" for i in range(10)]
    assert lines[11] == "  ... and 20 more."
    assert lines[-1] == "Uploaded 10 of 40 files; 0 already in place, 30 failed, 0 not tried."
    assert bucket.list_keys() == [f"good/{i:03}.txt" for i in range(10)]


class FailingFinishStrategy(Boto3Strategy):
    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        raise RuntimeError("the cache is down")


def test_an_error_while_finishing_never_hides_the_failed_uploads(s3_settings, settings, bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = f"{__name__}.FailingFinishStrategy"
    write_files(static_tree, 3)
    bucket.server.add_fault("PUT", "f/001", status=403, code="AccessDenied")

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert "f/001.txt: AccessDenied" in message
    assert message.endswith("Then, while finishing: RuntimeError: the cache is down")


def test_clear_dry_run_makes_the_decisions_clear_makes(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_files(static_tree, 20)
    collectstatic()
    static_tree.write("f/003.txt", "changed")
    bucket.server.reset()

    dry = collectstatic("--clear", "--dry-run")
    assert "20 static files copied" in dry.stdout
    assert set(bucket.counts()) <= {"LIST"}

    real = collectstatic("--clear")
    assert "20 static files copied" in real.stdout
    assert bucket.objects() == static_tree.files()


def test_no_cache_ignores_a_cached_listing_and_caches_a_new_one(s3_settings, bucket: Bucket, static_tree):
    write_files(static_tree, 5)
    collectstatic()
    collectstatic()  # nothing changed: the listing is cached
    bucket.client.put_object(Bucket=bucket.name, Key="f/002.txt", Body=b"changed behind collectfast's back")
    bucket.server.reset()

    assert "0 static files copied, 5 unmodified. No remote requests." in collectstatic().stdout
    run = collectstatic("--no-cache")

    assert "1 static file copied, 4 unmodified. 1 LIST, 1 PUT." in run.stdout
    assert bucket.objects() == static_tree.files()


def two_folders(settings: Any, tmp_path: Path) -> tuple[StaticTree, StaticTree]:
    """Two STATICFILES_DIRS: the finder lists every file of the first before any of the second."""
    first, second = StaticTree(tmp_path / "first"), StaticTree(tmp_path / "second")
    settings.STATICFILES_DIRS = [str(first.root), str(second.root)]
    return first, second


def test_per_file_lines_come_in_the_finders_order(s3_settings, settings, bucket: Bucket, tmp_path: Path):
    first, second = two_folders(settings, tmp_path)
    first.write("big.bin", b"x" * (6 * 1024 * 1024))  # first found, last uploaded
    write_files(second, 20)
    found = [path for finder in get_finders() for path, _ in finder.list([])]

    run = collectstatic(verbosity=2)

    copied = [line.split("'")[1] for line in run.stdout.splitlines() if line.startswith("Copying")]
    assert [Path(path).relative_to(tmp_path).as_posix().split("/", 1)[1] for path in copied] == found


def test_a_killed_run_leaves_no_cached_listing_that_hides_its_upload(
    s3_settings, settings, bucket: Bucket, tmp_path: Path
):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "c")}
    }
    first, second = two_folders(settings, tmp_path)
    first.write("a.css", "v1")
    write_files(second, 30)
    collectstatic()
    collectstatic()  # nothing changed: the listing of v1 is cached
    first.write("a.css", "v2")
    write_files(second, 30, content="changed")
    v2 = hashlib.md5(b"v2").hexdigest()

    signal_deploy_when(
        bucket,
        [
            *("--threads", "1", "--static", str(first.root), "--static", str(second.root)),
            *("--strategy", "collectfast.strategies.boto3.Boto3Strategy", "--cache", str(tmp_path / "c")),
        ],
        lambda: bucket.etag("a.css") == v2,
        signal.SIGKILL,
        delay_ms=200,
    )
    first.write("a.css", "v1")  # a local rollback to the bytes the cached listing knew
    caches["default"].close()

    run = collectstatic(verbosity=2)

    assert "Copying" in run.stdout and "a.css" in run.stdout
    assert bucket.objects()["a.css"] == b"v1"


@pytest.mark.parametrize("strategy", [None, MANIFEST])
def test_turning_gzip_on_resends_hashed_copies_gzipped_too(settings, bucket: Bucket, static_tree, strategy):
    settings.COLLECTFAST_STRATEGY = strategy
    storage = {**s3_storage(bucket), "BACKEND": "storages.backends.s3.S3ManifestStaticStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}
    static_tree.write("css/app.css", "body { color: red }\n" * 20)
    collectstatic()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {**storage, "OPTIONS": {**storage["OPTIONS"], "gzip": True}},
    }
    caches["default"].clear()

    collectstatic()

    css = [key for key in bucket.list_keys() if key.endswith(".css")]
    assert len(css) == 2
    for key in css:
        assert bucket.client.head_object(Bucket=bucket.name, Key=key).get("ContentEncoding") == "gzip", key


def test_disabled_strategy_runs_stock_collectstatic(s3_settings, settings, bucket: Bucket, static_tree):
    from collectfast.strategies import DisabledStrategy

    settings.COLLECTFAST_STRATEGY = DisabledStrategy
    write_files(static_tree, 3)

    run = collectstatic()

    assert run.stdout.strip().endswith("3 static files copied.")  # no request counts: stock ran
    assert "HEAD" in bucket.counts()  # stock asks about each file
    assert bucket.objects() == static_tree.files()


def test_no_fitting_strategy_is_announced_once(settings, static_tree: StaticTree):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    write_files(static_tree, 2)

    run = collectstatic(skip_checks=False)

    assert run.stderr.count("collectfast.W001") == 1
    assert "no built-in strategy fits" not in run.stderr
    assert "no built-in strategy fits" in collectstatic().stderr  # the checks were skipped: said once, here


@pytest.mark.parametrize(
    "planted",
    [b"[" * 100_000 + b"]" * 100_000, b'{"format": "collectfast-manifest", "version": ' + b"9" * 5000 + b"}"],
    ids=["nested", "huge-number"],
)
def test_a_planted_manifest_never_stops_a_deploy(s3_settings, settings, bucket: Bucket, static_tree, planted):
    settings.COLLECTFAST_STRATEGY = MANIFEST
    write_files(static_tree, 3)
    bucket.client.put_object(Bucket=bucket.name, Key="collectfast-manifest.json", Body=planted)

    run = collectstatic()

    assert "is unusable, so it is treated as empty and replaced" in run.stderr
    assert "3 static files copied" in run.stdout
    assert bucket.objects()["collectfast-manifest.json"].startswith(b'{"format":"collectfast-manifest"')


def test_an_upload_that_landed_unconfirmed_is_never_trusted_later(s3_settings, settings, bucket: Bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = MANIFEST
    settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_files(static_tree, 3)
    static_tree.write("a.css", "v1")
    collectstatic()
    static_tree.write("a.css", "v2")
    # S3 stores v2, but the answer is lost: the client sees an error.
    bucket.server.add_fault("PUT", "a.css", status=500, code="InternalError", after=True)

    with pytest.raises(CommandError, match="a.css: "):
        collectstatic()
    assert bucket.objects()["a.css"] == b"v2"
    bucket.server.clear_faults()
    static_tree.write("a.css", "v1")  # a local rollback to the bytes the manifest knew

    run = collectstatic()

    assert "1 static file copied" in run.stdout
    assert bucket.objects()["a.css"] == b"v1"


def test_sigterm_stops_a_deploy_as_ctrl_c_does_and_the_manifest_records_what_landed(
    s3_settings, bucket: Bucket, static_tree: StaticTree
):
    write_files(static_tree, 30)
    returncode, stderr = signal_deploy_when(
        bucket,
        ["--threads", "1", "--static", str(static_tree.root), "--mode", "trusting"],
        lambda: len(bucket.list_keys("f/")) >= 2,
        signal.SIGTERM,
        delay_ms=150,
    )

    assert returncode != 0
    assert "KeyboardInterrupt" in stderr
    from collectfast.manifest import loads

    manifest = loads(bucket.objects()["collectfast-manifest.json"])
    landed = {key: bucket.etag(key) for key in bucket.list_keys() if key != "collectfast-manifest.json"}
    recorded = {name: entry.etag for name, entry in manifest.entries.items()}
    assert 0 < len(recorded) < 30
    # Every entry is an object the bucket holds; an upload cut off before its answer is not recorded.
    assert recorded.items() <= landed.items()
    assert len(landed) - len(recorded) <= 1


def test_a_name_that_climbs_out_is_refused_as_stock_refuses_it(s3_settings, settings, bucket: Bucket, tmp_path):
    tree = StaticTree(tmp_path / "climb")
    tree.write("x.css", "x")
    settings.STATICFILES_DIRS = [("a/..", str(tree.root))]

    with pytest.raises(Exception, match=r"Detected path traversal attempt in 'a/../x.css'") as stock:
        collectstatic("--disable-collectfast")
    with pytest.raises(CommandError, match=r"a/../x.css: SuspiciousFileOperation: Detected path traversal attempt"):
        collectstatic()

    assert type(stock.value).__name__ == "SuspiciousFileOperation"
    assert bucket.list_keys() == []


def test_ctrl_c_during_a_hung_upload_stops_within_seconds(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_files(static_tree, 8)
    static_tree.write("hung.css", "never answered")
    bucket.server.add_fault("PUT", "hung.css", status=0, hang=120)
    # The hung request is held for 120 s: stopping at all before then is the behaviour under test.
    returncode, stderr = signal_deploy_when(
        bucket,
        # A read timeout past the hold: the upload is still hung when the signal comes, however slow the machine.
        ["--threads", "4", "--static", str(static_tree.root), "--mode", "trusting", "--read-timeout", "300"],
        lambda: len(bucket.list_keys("f/")) >= 8,
        signal.SIGINT,
    )

    assert returncode != 0
    # The server may have stored a file whose answer is still on its way: that upload is in flight too.
    assert re.search(r"Stopping: waiting for [1-9] uploads? in flight \(Ctrl-C again to abort\)\.", stderr), stderr
    from collectfast.manifest import loads

    manifest = loads(bucket.objects()["collectfast-manifest.json"])
    assert set(manifest.entries) == {f"f/{i:03}.txt" for i in range(8)}


def test_a_cache_too_small_for_the_run_is_warned_about_at_run_time(settings, static_tree: StaticTree, tmp_path):
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.filesystem.CachingFileSystemStrategy"
    settings.STATIC_ROOT = str(tmp_path / "root")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
            "TIMEOUT": None,
            "OPTIONS": {"MAX_ENTRIES": 5},
        }
    }
    write_files(static_tree, 10)

    run = collectstatic()

    assert "holds at most 5 entries (MAX_ENTRIES) but there are 10 static files" in run.stderr
    assert "collectfast.W004" in run.stderr


def test_deploy_config_keeps_what_the_user_set_and_fills_in_timeouts(settings):
    from botocore.config import Config

    from collectfast.backends.s3 import deploy_config, user_provided

    assert user_provided(Config(read_timeout=3)) == {"read_timeout"}  # pins botocore's private bookkeeping
    assert user_provided(Config()) == set()
    settings.COLLECTFAST_READ_TIMEOUT = 7
    filled = deploy_config(Config(connect_timeout=2, s3={"addressing_style": "path"}))
    assert (filled.connect_timeout, filled.read_timeout, filled.retries) == (2, 7, {"mode": "standard"})
    assert filled.s3 == {"addressing_style": "path"}
    kept = deploy_config(Config(read_timeout=30, retries={"total_max_attempts": 1}))
    assert (kept.read_timeout, kept.retries) == (30, {"total_max_attempts": 1})


def test_a_hung_manifest_read_falls_back_to_uploading_everything(s3_settings, settings, bucket: Bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = MANIFEST
    settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    settings.COLLECTFAST_READ_TIMEOUT = 1
    write_files(static_tree, 3)
    collectstatic()
    bucket.server.add_fault("GET", "collectfast-manifest.json", status=0, hang=60)

    run = collectstatic()

    assert "Read timeout" in run.stderr and "Every file is uploaded" in run.stderr
    assert "3 static files copied" in run.stdout


def test_a_hung_upload_fails_that_file_without_another_round_of_retries(s3_settings, settings, bucket, static_tree):
    settings.COLLECTFAST_READ_TIMEOUT = 1
    write_files(static_tree, 3)
    bucket.server.add_fault("PUT", "f/001", status=0, hang=60)

    with pytest.raises(CommandError, match=r"f/001.txt: ReadTimeoutError: Read timeout on endpoint URL"):
        collectstatic()

    assert bucket.counts()["PUT"] == 3  # the client's one attempt per file (the tests' client_config), no more
    assert bucket.list_keys() == ["f/000.txt", "f/002.txt"]


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [(404, "NoSuchBucket", "does not exist"), (403, "InvalidAccessKeyId", "credentials are wrong or expired")],
)
def test_a_missing_bucket_or_bad_credentials_stop_at_the_first_failure(
    s3_settings, settings, bucket: Bucket, static_tree, status, code, words
):
    settings.COLLECTFAST_STRATEGY = UPLOAD_ALL  # looks nothing up first: the uploads meet the cause
    write_files(static_tree, 100)
    bucket.server.add_fault("PUT", "", status=status, code=code)

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert message.count(words) == 1
    assert bucket.counts()["PUT"] <= 1 + 4 * settings.COLLECTFAST_THREADS < 100
    assert message.splitlines()[-1].startswith("No file was uploaded: of 100 files")


@pytest.mark.parametrize("strategy", [None, MANIFEST, UPLOAD_ALL])
def test_a_killed_runs_multipart_upload_is_aborted_by_the_next_run_that_sends_the_file(
    s3_settings, settings, bucket: Bucket, static_tree, strategy
):
    settings.COLLECTFAST_STRATEGY = strategy
    static_tree.write("big.bin", b"x" * (9 * 1024 * 1024))
    static_tree.write("small.css", "small")
    # What a deploy killed mid-upload leaves: parts S3 keeps (and bills) until someone aborts them.
    bucket.client.create_multipart_upload(Bucket=bucket.name, Key="big.bin")
    time.sleep(0.01)

    run = collectstatic()

    assert "Aborted 1 abandoned multipart upload." in run.stdout
    assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    objects = bucket.objects()
    objects.pop("collectfast-manifest.json", None)
    assert objects == static_tree.files()


def test_a_trusting_deploy_after_one_that_never_finished_checks_the_bucket(
    s3_settings, settings, bucket: Bucket, static_tree
):
    settings.COLLECTFAST_STRATEGY = MANIFEST
    settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_files(static_tree, 3)
    collectstatic()
    from collectfast.manifest import dumps, loads

    manifest = loads(bucket.objects()["collectfast-manifest.json"])
    assert manifest.unfinished == {}  # the deploy's own mark is gone once it finished
    # What a killed trusting deploy leaves: its mark, and an object replaced behind the entry's back.
    manifest.unfinished = {"killed": manifest.updated_at}
    bucket.client.put_object(Bucket=bucket.name, Key="collectfast-manifest.json", Body=dumps(manifest))
    bucket.client.put_object(Bucket=bucket.name, Key="f/001.txt", Body=b"the killed deploy's bytes")
    bucket.server.reset()

    run = collectstatic()

    assert "never finished" in run.stderr and "checks the bucket" in run.stderr
    assert "1 static file copied, 2 unmodified" in run.stdout
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 1 + 2}  # the mark of this deploy, then its outcome
    assert bucket.objects()["f/001.txt"] == b"f 1 "
    # A mark younger than an hour may be a deploy still running: it stays until then.
    assert set(loads(bucket.objects()["collectfast-manifest.json"]).unfinished) == {"killed"}


class SwallowingStrategy(Boto3Strategy):
    """Swallows the KeyboardInterrupt of a Ctrl-C, as Python does when it comes while a finalizer runs."""

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Any) -> bool:
        if prefixed_path.endswith("000.txt"):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here, on this (the main) thread
            except KeyboardInterrupt:
                pass
        return super().should_copy_file(path, prefixed_path, local_storage)


def test_a_ctrl_c_that_python_swallowed_still_stops_the_run(s3_settings, settings, bucket: Bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = "tests.test_failures.SwallowingStrategy"
    settings.COLLECTFAST_THREADS = 1  # decisions on the main thread, where signal handlers run
    write_files(static_tree, 3)
    # Python's own handler, as in a terminal, even when the test runner was started with SIGINT ignored.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            collectstatic()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, ignored)


def test_an_ignored_ctrl_c_stays_ignored(s3_settings, bucket: Bucket, static_tree):
    # nohup and background jobs start the deploy with SIGINT ignored: collectfast leaves it so.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        write_files(static_tree, 2)
        collectstatic()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(bucket.list_keys()) == 2
