"""The ``collectfast_manifest`` command, against the real S3 test server."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from storages.backends.s3 import S3Storage

from collectfast.pool import WorkerPool
from collectfast.strategies.manifest import S3ManifestStrategy
from tests.fixtures import Bucket, Run, StaticTree, collectstatic, s3_storage
from tests.test_manifest import MANIFEST, MIB, STRATEGY, assert_consistent, stored_manifest, write_site

pytestmark = pytest.mark.filterwarnings("error::collectfast.manifest.ManifestWarning")

NOT_USED = "collectstatic does not use or update this manifest"


class CustomManifestStrategy(S3ManifestStrategy):
    pass


@pytest.fixture
def manifest_settings(s3_settings: Any) -> Any:
    s3_settings.COLLECTFAST_STRATEGY = STRATEGY
    return s3_settings


def manifest_command(*args: str) -> Run:
    stdout, stderr = StringIO(), StringIO()
    call_command("collectfast_manifest", *args, stdout=stdout, stderr=stderr)
    return Run(stdout.getvalue(), stderr.getvalue())


def deploy_without_manifest(settings: Any, bucket: Bucket, static_tree: StaticTree, **options: Any) -> None:
    """A bucket deployed by the listing strategy, then the manifest strategy configured."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    write_site(static_tree)
    collectstatic()
    settings.COLLECTFAST_STRATEGY = STRATEGY
    bucket.server.reset()


def test_the_command_shows_the_manifest_state(manifest_settings: Any, bucket: Bucket, static_tree: StaticTree) -> None:
    shown = manifest_command()
    assert "No manifest at s3://" in shown.stdout and "The next deploy uploads every file" in shown.stdout
    write_site(static_tree)
    collectstatic()

    shown = manifest_command()

    assert f"Manifest s3://{bucket.name}/{MANIFEST} (format version 1," in shown.stdout
    assert "Entries: 5, recording" in shown.stdout
    assert re.search(r"Last written: \S+, by a run that uploaded 5 files\.", shown.stdout)
    assert "Conditional writes: honoured. Mode: verified." in shown.stdout
    assert shown.stderr == ""
    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=b"garbage")
    assert "is unusable: it is not JSON" in manifest_command().stdout


def test_show_reports_a_newer_manifest_as_left_alone(manifest_settings: Any, bucket: Bucket) -> None:
    newer = b'{"format": "collectfast-manifest", "version": 2, "entries": {}}'
    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=newer)

    shown = manifest_command()

    assert "has format version 2" in shown.stdout and "Upgrade collectfast" in shown.stdout
    assert "treats it as empty" not in shown.stdout


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param({"COLLECTFAST_STRATEGY": None}, id="default-strategy"),
        pytest.param({"COLLECTFAST_STRATEGY": "collectfast.strategies.boto3.Boto3Strategy"}, id="boto3"),
        pytest.param({"COLLECTFAST_STRATEGY": STRATEGY, "COLLECTFAST_ENABLED": False}, id="disabled"),
    ],
)
def test_show_says_when_collectstatic_does_not_use_the_manifest(
    s3_settings: Any, bucket: Bucket, static_tree: StaticTree, configure: dict[str, Any]
) -> None:
    for name, value in configure.items():
        setattr(s3_settings, name, value)
    shown = manifest_command()
    assert NOT_USED in shown.stderr and "next deploy" not in shown.stdout
    s3_settings.COLLECTFAST_STRATEGY, s3_settings.COLLECTFAST_ENABLED = STRATEGY, True
    write_site(static_tree)
    collectstatic()
    for name, value in configure.items():
        setattr(s3_settings, name, value)

    shown = manifest_command()

    assert "Entries: 5, recording" in shown.stdout
    assert NOT_USED in shown.stderr
    assert f"COLLECTFAST_STRATEGY = {STRATEGY!r}" in shown.stderr


def test_a_subclass_of_the_manifest_strategy_is_in_use(s3_settings: Any, bucket: Bucket) -> None:
    s3_settings.COLLECTFAST_STRATEGY = f"{__name__}.CustomManifestStrategy"

    shown = manifest_command()

    assert shown.stderr == ""
    assert "The next deploy uploads every file" in shown.stdout


def test_rebuild_without_the_manifest_strategy_is_refused_unless_forced(
    settings: Any, bucket: Bucket, static_tree: StaticTree
) -> None:
    deploy_without_manifest(settings, bucket, static_tree)
    del settings.COLLECTFAST_STRATEGY

    with pytest.raises(CommandError, match=r"does not use.*COLLECTFAST_STRATEGY.*--force"):
        manifest_command("--rebuild")
    assert bucket.counts() == {}

    forced = manifest_command("--rebuild", "--force")

    assert NOT_USED in forced.stderr
    assert "adopted 5 files" in forced.stdout
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


def test_rebuild_adopts_only_files_the_bucket_proves(settings: Any, bucket: Bucket, static_tree: StaticTree) -> None:
    options = {"gzip": True, "object_parameters": {"CacheControl": "max-age=60"}}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    write_site(static_tree)
    static_tree.write("big.bin", os.urandom(9 * MIB))
    collectstatic()  # the listing strategy: no manifest
    static_tree.write("js/app.js", "changed locally, not deployed")
    bucket.client.put_object(  # the right bytes, uploaded by hand without the Cache-Control uploads set
        Bucket=bucket.name, Key="img/logo.svg", Body=b"<svg/>", ContentType="image/svg+xml"
    )
    settings.COLLECTFAST_STRATEGY = STRATEGY

    dry = manifest_command("--rebuild", "--dry-run").stdout
    assert "would adopt 4 files" in dry and "Nothing written." in dry
    assert MANIFEST not in bucket.list_keys()
    shown = manifest_command("--rebuild").stdout

    assert "adopted 4 files; 2 local files in the bucket are not proven" in shown
    assert set(assert_consistent(bucket, plain=False).entries) == set(static_tree.files()) - {
        "js/app.js",
        "img/logo.svg",
    }
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 2 + 1}
    assert set(assert_consistent(bucket, plain=False).entries) == set(static_tree.files())


def test_a_rebuild_uploads_nothing_and_says_so(settings: Any, bucket: Bucket, static_tree: StaticTree) -> None:
    deploy_without_manifest(settings, bucket, static_tree)

    rebuilt = manifest_command("--rebuild")

    assert "adopted 5 files" in rebuilt.stdout
    assert "Manifest saved (5 entries)." in rebuilt.stdout
    assert not re.search(r"upload(ed|ing) [1-9]", rebuilt.stdout)
    assert stored_manifest(bucket).last_uploads == 0
    assert "by a run that uploaded 0 files." in manifest_command().stdout


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the boto3 sessions django-storages and collectfast build."""
    built: list[int] = []
    create = S3Storage._create_session

    def counting(storage: S3Storage) -> Any:
        built.append(threading.get_ident())
        return create(storage)

    monkeypatch.setattr(S3Storage, "_create_session", counting)
    yield built


@pytest.fixture
def closed_pools(monkeypatch: pytest.MonkeyPatch) -> list[WorkerPool]:
    """Every WorkerPool closed (the threads of one left open may linger until it is collected)."""
    closed: list[WorkerPool] = []
    close = WorkerPool.close

    def recording(pool: WorkerPool, timeout: float | None = None) -> None:
        closed.append(pool)
        close(pool, timeout)

    monkeypatch.setattr(WorkerPool, "close", recording)
    return closed


def collectfast_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("collectfast")}


def test_rebuild_closes_its_pool_and_heads_through_one_session(
    settings: Any, bucket: Bucket, static_tree: StaticTree, sessions: list[int], closed_pools: list[WorkerPool]
) -> None:
    settings.COLLECTFAST_THREADS = 4
    for i in range(20):
        static_tree.write(f"many/file-{i}.txt", f"file {i}")
    deploy_without_manifest(settings, bucket, static_tree)
    before = collectfast_threads()
    sessions.clear()
    closed_pools.clear()

    manifest_command("--rebuild")

    assert len(closed_pools) == 1
    assert collectfast_threads() <= before
    # The main thread's session reads, lists and writes; one more builds every worker's client.
    assert len(sessions) <= 2
    # One GET of the manifest, one LIST, one HEAD per local file, its creation and the one-off probe.
    assert bucket.counts() == {"GET": 1, "LIST": 1, "HEAD": 25, "PUT": 2}


def test_failed_heads_are_reported_and_nothing_is_written(
    settings: Any, bucket: Bucket, static_tree: StaticTree, closed_pools: list[WorkerPool]
) -> None:
    settings.COLLECTFAST_RETRIES = 0
    deploy_without_manifest(settings, bucket, static_tree)
    bucket.server.add_fault("HEAD", "css/app.css", status=500, code="InternalError")
    closed_pools.clear()

    with pytest.raises(CommandError) as raised:
        manifest_command("--rebuild")

    message = str(raised.value)
    assert "'css/app.css'" in message and "HeadObject operation" in message and "Internal Server Error" in message
    assert "nothing was written" in message
    assert "PUT" not in bucket.counts()
    assert len(closed_pools) == 1


def test_many_failed_heads_are_summarised(settings: Any, bucket: Bucket, static_tree: StaticTree) -> None:
    settings.COLLECTFAST_RETRIES = 0
    for i in range(12):
        static_tree.write(f"many/file-{i:02}.txt", f"file {i}")
    deploy_without_manifest(settings, bucket, static_tree)
    bucket.server.add_fault("HEAD", "many/", status=403, code="AccessDenied")

    with pytest.raises(CommandError) as raised:
        manifest_command("--rebuild")

    message = str(raised.value)
    assert message.startswith("12 of 17 files could not be checked")
    assert len(re.findall(r"'many/file-\d\d\.txt'", message)) == 5
    assert "and 7 more" in message
    assert "PUT" not in bucket.counts()
    assert MANIFEST not in bucket.list_keys()
