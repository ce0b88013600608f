"""The deploy manifest and manifest storages on GCS, against the GCS test server, through unpatched
google-cloud-storage and django-storages: the S3 tests' scenarios (test_manifest.py, test_manifest_storage.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any

import pytest

pytest.importorskip("google.cloud.storage", reason="needs collectfast[test] (google-cloud-storage)")
pytest.importorskip("gcp_storage_emulator", reason="needs collectfast[test] (gcp-storage-emulator)")

from django.contrib.staticfiles.storage import ManifestFilesMixin  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from google.api_core.exceptions import PreconditionFailed  # noqa: E402
from storages.backends.gcloud import GoogleCloudStorage  # noqa: E402

from collectfast.checks import check_settings  # noqa: E402
from collectfast.manifest import WRITES_HONOURED, Manifest, Stored, loads  # noqa: E402
from collectfast.strategies.gcloud import GoogleCloudManifestStrategy  # noqa: E402
from tests import test_gcloud  # noqa: E402
from tests.fixtures import StaticTree, collectstatic  # noqa: E402
from tests.test_gcloud import GCSBucket, gcs_storage, use_storage  # noqa: E402

gcs_bucket = test_gcloud.gcs_bucket  # gcs_server: tests/conftest.py

pytestmark = pytest.mark.filterwarnings("error::collectfast.manifest.ManifestWarning")

MANIFEST = "collectfast-manifest.json"
STRATEGY = "collectfast.strategies.gcloud.GoogleCloudManifestStrategy"


class ManifestGoogleCloudStorage(ManifestFilesMixin, GoogleCloudStorage):
    """What a project writes for hashed names on GCS: django-storages ships no such class."""


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def manifest_settings(settings: Any, gcs_bucket: GCSBucket, static_tree: StaticTree) -> Any:
    use_storage(settings, gcs_bucket)
    settings.COLLECTFAST_STRATEGY = STRATEGY
    return settings


def write_site(tree: StaticTree) -> None:
    tree.write("css/app.css", "body { color: red }\n")
    tree.write("js/app.js", "console.log('hello');\n")
    tree.write("img/logo.svg", "<svg/>")
    tree.write("fonts/Ünïcode naïve file.txt", "ünïcode")
    tree.write("with space/file name.txt", "spaces")


def stored_manifest(bucket: GCSBucket) -> Manifest:
    return loads(bucket.bucket.blob(MANIFEST).download_as_bytes())


def generation(bucket: GCSBucket, key: str) -> int:
    return int(bucket.bucket.get_blob(key).generation)


def listing(bucket: GCSBucket) -> dict[str, Stored]:
    return {
        blob.name: Stored(base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else "", blob.size)
        for blob in bucket.bucket.list_blobs()
        if blob.name != MANIFEST
    }


def assert_consistent(bucket: GCSBucket, *, plain: bool = True) -> Manifest:
    """Every entry describes the object in the bucket; ``plain``: and its md5 is that of the stored bytes."""
    manifest = stored_manifest(bucket)
    listed = listing(bucket)
    for name, recorded in manifest.entries.items():
        assert listed.get(name) == recorded.stored, name
    if plain:
        objects = bucket.objects()
        for name, recorded in manifest.entries.items():
            assert md5(objects[name]) == recorded.md5, name
    return manifest


def site_objects(bucket: GCSBucket) -> dict[str, bytes]:
    return {key: data for key, data in bucket.objects().items() if key != MANIFEST}


# The test server's preconditions, as GCS has them.


def test_the_server_honours_if_generation_match_and_reports_generations(gcs_bucket: GCSBucket):
    blob = gcs_bucket.bucket.blob("m.json")
    blob.upload_from_string(b"one", if_generation_match=0)
    first = blob.generation
    with pytest.raises(PreconditionFailed):
        gcs_bucket.bucket.blob("m.json").upload_from_string(b"two", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        gcs_bucket.bucket.blob("m.json").upload_from_string(b"two", if_generation_match=first + 1)
    blob.upload_from_string(b"three", if_generation_match=first)

    read = gcs_bucket.bucket.blob("m.json")
    assert read.download_as_bytes() == b"three"
    assert read.generation == blob.generation != first


# The manifest strategy on GCS.


def test_the_strategy_is_a_builtin_for_google_cloud_storage(manifest_settings):
    assert check_settings() == []
    assert GoogleCloudManifestStrategy.fits(GoogleCloudStorage(bucket_name="b"))
    assert not GoogleCloudManifestStrategy.fits(FileSystemStorage())


def test_a_first_deploy_records_what_gcs_stored_for_each_upload(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)

    run = collectstatic()

    # One GET finds no manifest; per file django-storages' GET and an upload POST; the manifest's
    # creation (ifGenerationMatch=0) and the one-off probe that proves the server applies it (412).
    assert gcs_bucket.counts() == {"GET": 1 + 5, "POST": 5 + 2}
    assert "5 static files copied. 6 GET, 7 POST. Manifest saved (5 entries)." in run.stdout
    assert site_objects(gcs_bucket) == static_tree.files()
    manifest = assert_consistent(gcs_bucket)
    assert set(manifest.entries) == set(static_tree.files())
    assert manifest.conditional_writes == WRITES_HONOURED


@pytest.mark.parametrize("n", [5, 1001])
def test_a_no_change_redeploy_in_verified_mode_reads_once_and_lists(manifest_settings, gcs_bucket, static_tree, n):
    for i in range(n):
        static_tree.write(f"many/{i // 100}/file-{i}.txt", f"file {i}")
    collectstatic()
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic()

    # The manifest is listed too: 1,001 files and it take two pages.
    assert gcs_bucket.counts() == {"GET": 1, "LIST": 1 if n < 1000 else 2}
    assert f"0 static files copied, {n} unmodified." in run.stdout
    assert f"Manifest unchanged ({n} entries)." in run.stdout


def test_a_no_change_redeploy_in_trusting_mode_is_one_get(manifest_settings, gcs_bucket, static_tree):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic()

    assert gcs_bucket.counts() == {"GET": 1}
    assert "0 static files copied, 5 unmodified. 1 GET. Manifest unchanged (5 entries)." in run.stdout


# Trusting mode writes the manifest once more, before its first upload: the mark of a deploy under way.
@pytest.mark.parametrize(("mode", "reads", "writes"), [("verified", {"LIST": 1}, 1), ("trusting", {}, 2)])
def test_k_changed_files_are_k_uploads_plus_the_manifest_writes(
    manifest_settings, gcs_bucket, static_tree, mode, reads, writes
):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = mode
    for i in range(30):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    before = stored_manifest(gcs_bucket)
    for i in (3, 14, 27):
        static_tree.write(f"f/{i}.js", f"var x = {i} + 1;")
    gcs_bucket.server.reset()

    run = collectstatic(verbosity=2)

    assert gcs_bucket.counts() == {"GET": 1 + 3, **reads, "POST": 3 + writes}
    assert "3 static files copied, 27 unmodified." in run.stdout
    assert "Skipping 'f/0.js' (not modified)" in run.stdout
    assert site_objects(gcs_bucket) == static_tree.files()
    after = assert_consistent(gcs_bucket)
    changed = {name for name in after.entries if after.entries[name] != before.entries[name]}
    assert changed == {"f/3.js", "f/14.js", "f/27.js"}


def test_verified_mode_repairs_objects_deleted_or_replaced_by_hand(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    gcs_bucket.bucket.delete_blob("css/app.css")
    gcs_bucket.put("js/app.js", b"tampered")
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"GET": 1 + 2, "LIST": 1, "POST": 2 + 1}
    assert site_objects(gcs_bucket) == static_tree.files()
    assert_consistent(gcs_bucket)


def test_gzipped_uploads_are_recorded_with_what_gcs_stored(manifest_settings, gcs_bucket, static_tree):
    use_storage(manifest_settings, gcs_bucket, gzip=True)
    static_tree.write("css/app.css", "body { color: red }\n" * 50)
    static_tree.write("img/a.png", b"\x89PNG not compressed")

    collectstatic()

    manifest = assert_consistent(gcs_bucket, plain=False)
    assert manifest.entries["css/app.css"].size < len(static_tree.files()["css/app.css"])
    assert manifest.entries["css/app.css"].md5 == md5(static_tree.files()["css/app.css"])
    gcs_bucket.server.reset()
    collectstatic()
    assert gcs_bucket.counts() == {"GET": 1, "LIST": 1}


def test_a_failed_upload_leaves_a_manifest_claiming_only_uploaded_files(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    gcs_bucket.server.add_fault("POST", "js/app.js", status=403, reason="forbidden")

    with pytest.raises(CommandError, match="could not upload 1 of 5 files"):
        collectstatic()

    manifest = assert_consistent(gcs_bucket)
    assert set(manifest.entries) == set(static_tree.files()) - {"js/app.js"}
    gcs_bucket.server.clear_faults()
    gcs_bucket.server.reset()
    collectstatic()
    assert gcs_bucket.counts() == {"GET": 1 + 1, "LIST": 1, "POST": 1 + 1}
    assert set(assert_consistent(gcs_bucket).entries) == set(static_tree.files())


def test_dry_run_never_writes_the_manifest(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    collectstatic("--dry-run")
    assert gcs_bucket.counts() == {"GET": 1}
    assert gcs_bucket.list_keys() == []
    collectstatic()
    before = generation(gcs_bucket, MANIFEST)
    static_tree.write("css/app.css", "changed")
    gcs_bucket.server.reset()

    run = collectstatic("--dry-run")

    assert gcs_bucket.counts() == {"GET": 1, "LIST": 1}
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert generation(gcs_bucket, MANIFEST) == before
    assert site_objects(gcs_bucket)["css/app.css"] == b"body { color: red }\n"


def test_a_manifest_that_keeps_changing_is_given_up_after_bounded_retries(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    gcs_bucket.server.add_fault("POST", MANIFEST, status=412, reason="conditionNotMet")

    with pytest.raises(CommandError, match="changed under this deploy 5 times in a row. The manifest was not saved"):
        collectstatic()

    # Each refused write is followed by a re-read, and the failure by a read-back.
    assert gcs_bucket.counts() == {"GET": 1 + 5 + 5 + 1, "POST": 5 + 5}


def test_a_refused_manifest_read_uploads_everything_and_leaves_it_alone(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    before = generation(gcs_bucket, MANIFEST)
    gcs_bucket.server.add_fault("GET", MANIFEST, status=403, reason="forbidden")
    gcs_bucket.server.reset()

    run = collectstatic()

    assert re.search(r"was refused \(403.*Every file is uploaded", run.stderr)
    assert gcs_bucket.counts() == {"GET": 1 + 5, "POST": 5}
    gcs_bucket.server.clear_faults()
    assert generation(gcs_bucket, MANIFEST) == before


def test_clear_deletes_the_manifest_and_starts_from_nothing(manifest_settings, gcs_bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    gcs_bucket.put("stale.txt", b"stale")
    gcs_bucket.server.reset()

    collectstatic("--clear")

    # One listing, one batch of deletes, every file, the manifest's creation and its probe.
    assert gcs_bucket.counts() == {"LIST": 1, "BATCH": 1, "GET": 5, "POST": 5 + 2}
    assert site_objects(gcs_bucket) == static_tree.files()
    assert set(assert_consistent(gcs_bucket).entries) == set(static_tree.files())


# Concurrent deploys: another deploy writes the manifest between this one's read and its write.


class RacingStrategy(GoogleCloudManifestStrategy):
    """Another deploy (its own strategy and client, the command's calls) runs between this one's read and write."""

    rival: StaticTree
    when: str

    def start(self, prefixed_paths, *, dry_run=False, cleared=False):
        super().start(prefixed_paths, dry_run=dry_run, cleared=cleared)
        if self.when == "before-uploads":
            self.run_rival()

    def finish(self, *, succeeded, dry_run=False):
        if self.when == "after-uploads":
            self.run_rival()
        super().finish(succeeded=succeeded, dry_run=dry_run)

    def run_rival(self) -> None:
        storage = GoogleCloudStorage(**gcs_storage(self.bucket)["OPTIONS"])
        rival = GoogleCloudManifestStrategy(storage)
        source = FileSystemStorage(location=self.rival.root)
        names = sorted(self.rival.files())
        rival.start(names)
        worker = rival.worker_storage(storage)
        for name in names:
            if rival.should_copy_file(name, name, source):
                rival.forget(name)
                rival.copy_file(name, name, source, worker)
        rival.finish(succeeded=True)


@pytest.mark.parametrize(("when", "winner"), [("before-uploads", "mine"), ("after-uploads", "theirs")])
def test_a_deploy_that_lost_the_race_merges_and_keeps_the_upload_gcs_holds(
    manifest_settings, gcs_bucket, static_tree, tmp_path, when, winner
):
    static_tree.write("shared.css", "shared")
    collectstatic()
    rival = StaticTree(tmp_path / "rival")
    rival.write("shared.css", "shared")
    rival.write("theirs.css", "only theirs")
    rival.write("clash.js", "theirs")
    static_tree.write("mine.css", "only mine")
    static_tree.write("clash.js", "mine")
    RacingStrategy.rival, RacingStrategy.when, RacingStrategy.bucket = rival, when, gcs_bucket
    manifest_settings.COLLECTFAST_STRATEGY = "tests.test_gcs_manifest.RacingStrategy"
    gcs_bucket.server.reset()

    run = collectstatic()

    counts = gcs_bucket.counts()
    assert "merged with a concurrent deploy" in run.stdout
    manifest = assert_consistent(gcs_bucket)
    assert set(manifest.entries) == {"shared.css", "mine.css", "theirs.css", "clash.js"}
    assert site_objects(gcs_bucket)["clash.js"] == winner.encode()
    # Each deploy: its read, listing and two uploads (GET and POST each); the rival's write; this
    # deploy's write refused (412), its re-read, a GET of the metadata of clash.js to settle it, its write.
    assert counts == {"GET": 2 * (1 + 2) + 1 + 1, "LIST": 2, "POST": 2 * 2 + 1 + 1 + 1}


# Pruning with the history the manifest keeps (docs/pruning.rst).


def redeploy(bucket: GCSBucket, *args: str) -> Any:
    caches["default"].clear()
    bucket.server.reset()
    return collectstatic(*args)


def test_pruning_keeps_the_keys_of_the_last_k_deploys(manifest_settings, gcs_bucket, static_tree):
    manifest_settings.COLLECTFAST_PRUNE_GRACE = 0
    manifest_settings.COLLECTFAST_PRUNE_KEEP_DEPLOYS = 2
    for i in range(4):
        static_tree.write(f"f/{i:03d}.js", f"var x = {i};")
    collectstatic("--prune")
    os.remove(static_tree.root / "f/000.js")

    # Deploy 2 no longer produces f/000.js, but deploy 1 (one of the last two) did.
    run = redeploy(gcs_bucket, "--prune")
    # The strategy's GET and LIST; the prune's LIST and one write recording the deploy in the history.
    assert gcs_bucket.counts() == {"GET": 1, "LIST": 2, "POST": 1}
    assert "f/000.js" in gcs_bucket.list_keys()
    assert "Pruned 0 objects" in run.stdout

    os.remove(static_tree.root / "f/001.js")
    run = redeploy(gcs_bucket, "--prune")

    # The prune: LIST, one write recording the deploy and dropping f/000.js's entry first, one batch delete.
    assert gcs_bucket.counts() == {"GET": 1, "LIST": 2, "POST": 1, "BATCH": 1}
    assert "Pruned 1 object (10 bytes) under gs://" in run.stdout
    keys = gcs_bucket.list_keys()
    assert "f/000.js" not in keys and "f/001.js" in keys
    assert "f/000.js" not in stored_manifest(gcs_bucket).entries


# Manifest storages (hashed names) on GCS: post-processed locally, as for S3 (test_manifest_storage.py).


def write_hashed_site(tree: StaticTree) -> None:
    tree.write("css/base/reset.css", "html { margin: 0 }\n.bg { background: url('/static/img/bg.png') }\n")
    tree.write("css/app.css", '@import "base/reset.css";\nbody { background: url("../img/bg.png") }\n')
    tree.write("js/app.js", 'console.log("hi");\n')
    tree.write("img/bg.png", b"\x89PNG fake")


HASHED_ORIGINALS = 4


def deploy(settings: Any, bucket: GCSBucket, *, stock: bool = False) -> Any:
    settings.STORAGES = {
        **settings.STORAGES,
        # Static files are public: unsigned URLs (signing needs a private key, which tests have none of).
        "staticfiles": gcs_storage(
            bucket, backend="tests.test_gcs_manifest.ManifestGoogleCloudStorage", querystring_auth=False
        ),
    }
    return collectstatic(*(["--disable-collectfast"] if stock else []))


def snapshot(bucket: GCSBucket) -> dict[str, tuple[bytes, str]]:
    return {
        key: (data, bucket.bucket.get_blob(key).content_type)
        for key, data in bucket.objects().items()
        if key != MANIFEST
    }


def test_a_manifest_storage_gives_the_stock_bucket_with_hashed_files_uploaded_by_collectfast(
    settings, gcs_bucket: GCSBucket, static_tree: StaticTree
):
    write_hashed_site(static_tree)
    stock = GCSBucket(f"{gcs_bucket.name}-stock", gcs_bucket.server, gcs_bucket.client)
    gcs_bucket.client.create_bucket(stock.name)
    deploy(settings, stock, stock=True)
    gcs_bucket.server.reset()

    run = deploy(settings, gcs_bucket)

    counts = gcs_bucket.counts()
    expected = snapshot(stock)
    assert snapshot(gcs_bucket) == expected
    paths = json.loads(expected["staticfiles.json"][0])["paths"]
    assert re.fullmatch(r"css/app\.[0-9a-f]{12}\.css", paths["css/app.css"])
    assert f"{HASHED_ORIGINALS} static files copied, {HASHED_ORIGINALS} post-processed." in run.stdout
    # Building the storage looks for staticfiles.json (GET, 404) as stock does; then one listing, and
    # per original, hashed file and the manifest django-storages' GET and an upload POST: no exists() per name.
    uploads = HASHED_ORIGINALS + HASHED_ORIGINALS + 1
    assert counts == {"GET": 1 + uploads, "LIST": 1, "POST": uploads}
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1}
    assert f"0 static files copied, {HASHED_ORIGINALS} unmodified" in run.stdout
    assert snapshot(gcs_bucket) == expected


def test_a_manifest_storage_with_the_manifest_strategy(settings, gcs_bucket: GCSBucket, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = STRATEGY
    write_hashed_site(static_tree)
    deploy(settings, gcs_bucket)
    assert "staticfiles.json" in stored_manifest(gcs_bucket).entries
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"GET": 1, "LIST": 1}
    edit = os.path.join(static_tree.root, "js/app.js")
    with open(edit, "w") as handle:
        handle.write('console.log("changed");\n')
    gcs_bucket.server.reset()
    collectstatic()
    # The original, its new hashed name and staticfiles.json (GET and POST each), then the manifest.
    assert gcs_bucket.counts() == {"GET": 1 + 3, "LIST": 1, "POST": 3 + 1}
    assert_consistent(gcs_bucket)
