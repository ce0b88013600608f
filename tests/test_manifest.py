"""The deploy manifest: format and merge rule, then the S3 strategy against the real S3 test server."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.management.base import CommandError

from collectfast import manifest as manifest_module
from collectfast.manifest import (
    WRITES_HONOURED,
    WRITES_IGNORED,
    Changes,
    Entry,
    Manifest,
    ManifestError,
    NewerManifestError,
    Stored,
    dumps,
    loads,
    merge,
    options_fingerprint,
)
from collectfast.strategies import manifest_base
from collectfast.strategies.manifest import S3ManifestStrategy
from collectfast.strategies.manifest_base import SPOOL_BYTES, serialised
from tests.fixtures import Bucket, StaticTree, collectstatic, lists_for, s3_storage

# Inside the command, problems the deploy survives go to its stderr, never to Python's warnings.
pytestmark = pytest.mark.filterwarnings("error::collectfast.manifest.ManifestWarning")

MANIFEST = "collectfast-manifest.json"
STRATEGY = "collectfast.strategies.manifest.S3ManifestStrategy"
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def entry(content: bytes, *, at: int = 0, options: str = "o" * 32) -> Entry:
    return Entry(md5(content), len(content), md5(content), options, T0 + timedelta(seconds=at))


# The format and the merge rule, storage-agnostic.


def test_a_manifest_survives_a_round_trip():
    manifest = Manifest({"css/ü n.css": entry(b"a"), "b.js": entry(b"b", at=5)}, WRITES_HONOURED, T0, 2)

    assert loads(dumps(manifest)) == manifest


def test_entry_lines_with_and_without_escapes_read_alike():
    gone = dataclasses.replace(entry(b"g", at=9), gone_since=T0 + timedelta(days=1))
    names = {'a "quoted".css': entry(b"q"), "back\\slash.js": entry(b"b"), "tab\t.txt": entry(b"t")}
    plain = {"css/ü n.css": entry(b"a"), "gone.js": gone, "other.js": dataclasses.replace(entry(b"o"), etag="e-2")}
    manifest = Manifest({**names, **plain}, WRITES_HONOURED, T0, 2)
    data = dumps(manifest)

    lines = data.split(b"\n")[1:-1]
    read_plainly = {line.split(b'"')[1].decode() for line in lines if manifest_module._PLAIN_LINE.fullmatch(line)}
    assert read_plainly == set(plain)  # the others went through the JSON decoder
    assert loads(io.BytesIO(data)) == loads(data) == manifest
    assert loads(io.BytesIO(data)).entries["gone.js"].gone_since == T0 + timedelta(days=1)
    (other,) = [line for line in lines if line.startswith(b'"other.js"')]
    broken = data.replace(other, other.replace(T0.isoformat().encode(), b"yesterday"))
    for read in (broken, io.BytesIO(broken)):
        with pytest.raises(ManifestError, match="uploaded_at of 'other.js' is not an ISO 8601 time"):
            loads(read)


@pytest.mark.parametrize(
    "data",
    [
        b"not json{",
        b"\xff\xfe",
        b"[]",
        b'{"format": "something-else", "version": 1, "entries": {}}',
        b'{"format": "collectfast-manifest", "version": "1", "entries": {}}',
        b'{"format": "collectfast-manifest", "version": 1, "entries": []}',
        b'{"format": "collectfast-manifest", "version": 1, "entries": {"a": {"md5": "x", "size": 1, '
        b'"etag": "e", "options": "o", "uploaded_at": "2025-01-01T00:00:00+00:00"}}}',
        b'{"format": "collectfast-manifest", "version": 1, "entries": {"a": {"md5": "' + b"0" * 32 + b'", '
        b'"size": 1, "etag": "e", "options": "o", "uploaded_at": "yesterday"}}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "collectfast-manifest", "version": ' + b"9" * 5000 + b', "entries": {}}',
    ],
)
def test_anything_but_a_manifest_is_refused_with_a_reason(data):
    with pytest.raises(ManifestError, match=r"."):
        loads(data)
    with pytest.raises(ManifestError, match=r"."):
        loads(io.BytesIO(data))  # as a streamed GET body


def test_a_stream_reads_as_the_bytes_do():
    manifest = Manifest(
        {"css/ü n.css": entry(b"a"), "b.js": entry(b"b", at=5), "z/\U0001f600.js": entry(b"c")}, WRITES_HONOURED, T0, 2
    )
    data = dumps(manifest)

    assert loads(io.BytesIO(data)) == loads(data) == manifest
    assert loads(io.BytesIO(dumps(Manifest()))) == Manifest()
    # Laid out otherwise (by hand, say): read whole.
    indented = json.dumps(json.loads(data), indent=2).encode()
    assert loads(io.BytesIO(indented)) == manifest
    # Cut short, a comma lost, an entry's line broken: refused, streamed or not.
    lines = data.split(b"\n")
    for broken in (
        data[:-2],
        b"\n".join(lines[:-2] + lines[-1:]),
        data.replace(b"},\n", b"}\n", 1),
        b"\n".join([*lines[:2], lines[2][:40], *lines[3:]]),
    ):
        with pytest.raises(ManifestError):
            loads(broken)
        with pytest.raises(ManifestError):
            loads(io.BytesIO(broken))


def test_a_large_manifest_is_written_to_disk_an_entry_at_a_time(tmp_path):
    manifest = Manifest({f"static/{i:06d}/app.css": entry(str(i).encode()) for i in range(50_000)}, WRITES_HONOURED)
    data = dumps(manifest)

    tracemalloc.start()
    try:
        with serialised(manifest) as document:
            written = tracemalloc.get_traced_memory()[1]
            assert document.read() == data
    finally:
        tracemalloc.stop()

    # Held whole, the document (10 MB here, 23 MB at 100,000 files) would count twice: in memory, only the
    # first SPOOL_BYTES, copied once when they go to disk, and the sorted names.
    assert len(data) > 9 * MIB
    assert written < 3 * SPOOL_BYTES


def test_a_newer_format_is_refused_as_such():
    with pytest.raises(NewerManifestError, match="format version 99"):
        loads(b'{"format": "collectfast-manifest", "version": 99, "entries": {}}')


def test_merge_keeps_the_union_and_my_upload_over_the_entry_i_saw():
    mine, seen, theirs = entry(b"new", at=10), entry(b"old", at=1), entry(b"other", at=20)
    current = Manifest({"a.css": seen, "b.css": theirs})

    merged, conflicts = merge(current, Changes(upserts={"a.css": mine, "c.css": mine}, seen={"a.css": seen}))

    assert merged.entries == {"a.css": mine, "b.css": theirs, "c.css": mine}
    assert conflicts == []


def test_merge_flags_another_deploys_upload_of_other_content_and_keeps_the_newest_meanwhile():
    mine, theirs = entry(b"mine", at=10), entry(b"theirs", at=20)

    merged, conflicts = merge(Manifest({"a.css": theirs}), Changes(upserts={"a.css": mine}, seen={"a.css": None}))

    assert conflicts == ["a.css"]
    assert merged.entries["a.css"] == theirs


def test_merge_of_the_same_content_uploaded_twice_is_no_conflict():
    mine, theirs = entry(b"same", at=30), entry(b"same", at=20)

    merged, conflicts = merge(Manifest({"a.css": theirs}), Changes(upserts={"a.css": mine}, seen={"a.css": None}))

    assert (merged.entries["a.css"], conflicts) == (mine, [])


def test_merge_removes_only_the_entry_found_wrong():
    wrong, replaced = entry(b"wrong"), entry(b"re-uploaded by another deploy", at=9)
    changes = Changes(removals={"a.css": wrong, "b.css": wrong})

    merged, _ = merge(Manifest({"a.css": wrong, "b.css": replaced}), changes)

    assert merged.entries == {"b.css": replaced}


def test_the_options_fingerprint_follows_every_option_and_ignores_their_order():
    base = {"ContentType": "text/css", "CacheControl": "max-age=60"}

    assert options_fingerprint(base) == options_fingerprint(dict(reversed(base.items())))
    assert options_fingerprint(base) != options_fingerprint({**base, "CacheControl": "max-age=61"})
    assert options_fingerprint(base) != options_fingerprint({**base, "ContentEncoding": "gzip"})
    assert "secret" not in options_fingerprint({"SSECustomerKey": "secret"})
    # Digested once per set of strings; other values each time, by their JSON.
    assert options_fingerprint({"BucketKeyEnabled": True}) != options_fingerprint({"BucketKeyEnabled": 1})
    assert options_fingerprint({**base, "Metadata": {"a": "1"}}) != options_fingerprint(
        {**base, "Metadata": {"a": "2"}}
    )
    assert options_fingerprint({"ContentType": "1"}) != options_fingerprint({"ContentType": 1})


# The S3 strategy, against the real test server.


@pytest.fixture
def manifest_settings(s3_settings):
    s3_settings.COLLECTFAST_STRATEGY = STRATEGY
    return s3_settings


def write_site(tree: StaticTree) -> None:
    tree.write("css/app.css", "body { color: red }\n")
    tree.write("js/app.js", "console.log('hello');\n")
    tree.write("img/logo.svg", "<svg/>")
    tree.write("fonts/Ünïcode naïve file.txt", "ünïcode")
    tree.write("with space/file name.txt", "spaces")


def stored_manifest(bucket: Bucket, prefix: str = "") -> Manifest:
    return loads(bucket.client.get_object(Bucket=bucket.name, Key=prefix + MANIFEST)["Body"].read())


def listing(bucket: Bucket, prefix: str = "") -> dict[str, Stored]:
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix)
    return {
        obj["Key"].removeprefix(prefix): Stored(obj["ETag"].strip('"'), obj["Size"])
        for page in pages
        for obj in page.get("Contents", ())
        if obj["Key"] != prefix + MANIFEST
    }


def assert_consistent(bucket: Bucket, prefix: str = "", *, plain: bool = True) -> Manifest:
    """Every entry describes the object in the bucket; ``plain``: and its md5 is that of the stored bytes."""
    manifest = stored_manifest(bucket, prefix)
    listed = listing(bucket, prefix)
    for name, recorded in manifest.entries.items():
        assert listed.get(name) == recorded.stored, name
    if plain:
        objects = bucket.objects(prefix)
        for name, recorded in manifest.entries.items():
            assert md5(objects[prefix + name]) == recorded.md5, name
    return manifest


def site_objects(bucket: Bucket) -> dict[str, bytes]:
    return {key: data for key, data in bucket.objects().items() if key != MANIFEST}


def test_a_first_deploy_records_what_s3_stored_for_each_upload(manifest_settings, bucket, static_tree):
    write_site(static_tree)

    run = collectstatic()

    # One GET finds no manifest; 5 uploads, the manifest's creation, and the one-off probe that
    # proves the server applies If-None-Match (answered 412, nothing written).
    assert bucket.counts() == {"GET": 1, "PUT": 7}
    assert "5 static files copied. 1 GET, 7 PUT. Manifest saved (5 entries)." in run.stdout
    assert site_objects(bucket) == static_tree.files()
    manifest = assert_consistent(bucket)
    assert set(manifest.entries) == set(static_tree.files())
    assert manifest.conditional_writes == WRITES_HONOURED
    assert manifest.last_uploads == 5


@pytest.mark.parametrize("n", [5, 1200])
def test_a_no_change_redeploy_on_a_fresh_machine_reads_once_and_lists(manifest_settings, bucket, static_tree, n):
    for i in range(n):
        static_tree.write(f"many/{i // 100}/file-{i}.txt", f"file {i}")
    collectstatic()
    caches["default"].clear()
    bucket.server.reset()

    run = collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": lists_for(n)}
    assert f"0 static files copied, {n} unmodified." in run.stdout
    assert f"Manifest unchanged ({n} entries)." in run.stdout


def test_a_no_change_redeploy_in_trusting_mode_is_one_get(manifest_settings, bucket, static_tree):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    bucket.server.reset()

    run = collectstatic()

    assert bucket.counts() == {"GET": 1}
    assert "0 static files copied, 5 unmodified. 1 GET. Manifest unchanged (5 entries)." in run.stdout


# Trusting mode writes the manifest once more, before its first upload: the mark of a deploy under way.
@pytest.mark.parametrize(
    ("mode", "reads", "writes"), [("verified", {"GET": 1, "LIST": 1}, 1), ("trusting", {"GET": 1}, 2)]
)
def test_k_changed_files_are_k_puts_plus_the_manifest_writes(
    manifest_settings, bucket, static_tree, mode, reads, writes
):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = mode
    for i in range(30):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    before = stored_manifest(bucket)
    for i in (3, 14, 27):
        static_tree.write(f"f/{i}.js", f"var x = {i} + 1;")
    bucket.server.reset()

    run = collectstatic(verbosity=2)

    assert bucket.counts() == {**reads, "PUT": 3 + writes}
    assert "3 static files copied, 27 unmodified." in run.stdout
    assert "Skipping 'f/0.js' (not modified)" in run.stdout
    assert site_objects(bucket) == static_tree.files()
    after = assert_consistent(bucket)
    changed = {name for name in after.entries if after.entries[name] != before.entries[name]}
    assert changed == {"f/3.js", "f/14.js", "f/27.js"}


def test_changing_an_object_parameter_reuploads_with_it(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    options = {"object_parameters": {"CacheControl": "max-age=86400"}}
    manifest_settings.STORAGES = {**manifest_settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 5 + 1}
    head = bucket.client.head_object(Bucket=bucket.name, Key="css/app.css")
    assert head["CacheControl"] == "max-age=86400"
    assert_consistent(bucket)
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1}


def test_turning_gzip_on_reuploads_exactly_the_compressible_files(manifest_settings, bucket, static_tree):
    static_tree.write("css/app.css", "body { color: red }\n" * 50)
    static_tree.write("js/app.js", "console.log('hello');\n" * 50)
    static_tree.write("img/a.png", b"\x89PNG not compressed")
    static_tree.write("data.bin", os.urandom(100))
    collectstatic()
    manifest_settings.STORAGES = {**manifest_settings.STORAGES, "staticfiles": s3_storage(bucket, gzip=True)}
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 2 + 1}
    manifest = assert_consistent(bucket, plain=False)
    assert manifest.entries["css/app.css"].size < len(static_tree.files()["css/app.css"])
    assert manifest.entries["css/app.css"].md5 == md5(static_tree.files()["css/app.css"])
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1}


def test_multipart_and_kms_objects_are_skipped_with_no_etag_guessing(manifest_settings, bucket, static_tree):
    options = {"object_parameters": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/test"}}
    manifest_settings.STORAGES = {**manifest_settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    big = os.urandom(9 * MIB)
    static_tree.write("video/big.bin", big)
    static_tree.write("a.css", "a")
    collectstatic()
    manifest = assert_consistent(bucket)
    assert manifest.entries["video/big.bin"].etag.endswith("-2")
    assert manifest.entries["video/big.bin"].size == len(big)
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1}


def test_verified_mode_repairs_objects_deleted_or_replaced_by_hand(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    bucket.client.delete_object(Bucket=bucket.name, Key="css/app.css")
    bucket.client.put_object(Bucket=bucket.name, Key="js/app.js", Body=b"tampered")
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 2 + 1}
    assert site_objects(bucket) == static_tree.files()
    assert_consistent(bucket)


def test_trusting_mode_does_not_look_at_the_bucket(manifest_settings, bucket, static_tree):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_site(static_tree)
    collectstatic()
    bucket.client.put_object(Bucket=bucket.name, Key="js/app.js", Body=b"tampered")
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1}
    assert site_objects(bucket)["js/app.js"] == b"tampered"


def test_entries_of_files_gone_locally_stay_until_their_object_goes(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    os.remove(static_tree.root / "img/logo.svg")
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1}
    assert "img/logo.svg" in stored_manifest(bucket).entries
    bucket.client.delete_object(Bucket=bucket.name, Key="img/logo.svg")
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 1}
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


def test_a_failed_upload_leaves_a_manifest_claiming_only_uploaded_files(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    bucket.server.add_fault("PUT", "js/app.js", status=403, code="AccessDenied")

    with pytest.raises(CommandError, match="could not upload 1 of 5 files"):
        collectstatic()

    manifest = assert_consistent(bucket)
    assert set(manifest.entries) == set(static_tree.files()) - {"js/app.js"}
    bucket.server.clear_faults()
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 1 + 1}
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


class InterruptedStrategy(S3ManifestStrategy):
    """Ctrl-C while uploading js/app.js."""

    def copy_file(self, path, prefixed_path, local_storage, remote_storage):
        if path == "js/app.js":
            raise KeyboardInterrupt
        super().copy_file(path, prefixed_path, local_storage, remote_storage)


def test_ctrl_c_saves_the_entries_of_the_files_already_uploaded(manifest_settings, bucket, static_tree):
    manifest_settings.COLLECTFAST_STRATEGY = "tests.test_manifest.InterruptedStrategy"
    manifest_settings.COLLECTFAST_THREADS = 1
    write_site(static_tree)

    with pytest.raises(KeyboardInterrupt):
        collectstatic()

    manifest = assert_consistent(bucket)
    assert set(manifest.entries) == set(listing(bucket))
    assert "js/app.js" not in manifest.entries


def test_dry_run_never_writes_the_manifest(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic("--dry-run")
    assert bucket.counts() == {"GET": 1}
    assert bucket.list_keys() == []
    collectstatic()
    etag = bucket.etag(MANIFEST)
    static_tree.write("css/app.css", "changed")
    bucket.server.reset()

    run = collectstatic("--dry-run")

    assert bucket.counts() == {"GET": 1, "LIST": 1}
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert bucket.etag(MANIFEST) == etag


def test_a_manifest_edited_to_garbage_is_reported_and_replaced(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=b'{"format": "collectfast-manifest", "vers')
    bucket.server.reset()

    run = collectstatic()
    assert re.search(r"collectfast-manifest.json is unusable.*not JSON", run.stderr)

    # Nothing is skipped on a corrupt manifest's word; it is replaced (and its successor probed).
    assert bucket.counts() == {"GET": 1, "PUT": 5 + 2}
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


def test_an_unreadable_manifest_uploads_everything_and_is_left_alone(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    etag = bucket.etag(MANIFEST)
    bucket.server.add_fault("GET", MANIFEST, status=403, code="AccessDenied")
    bucket.server.reset()

    run = collectstatic()
    assert re.search(r"was refused \(AccessDenied\).*Every file is uploaded", run.stderr)

    assert bucket.counts() == {"GET": 1, "PUT": 5}
    bucket.server.clear_faults()
    assert bucket.etag(MANIFEST) == etag


def test_a_manifest_from_a_newer_release_is_left_alone(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    newer = b'{"format": "collectfast-manifest", "version": 2, "entries": {}, "shape": "unknown to us"}'
    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=newer)
    bucket.server.reset()

    run = collectstatic()
    assert re.search("format version 2.*Upgrade collectfast", run.stderr)

    assert bucket.counts() == {"GET": 1, "PUT": 5}
    assert bucket.objects()[MANIFEST] == newer


def test_a_refused_manifest_write_fails_the_command_after_the_uploads(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    bucket.server.add_fault("PUT", MANIFEST, status=403, code="AccessDenied")

    with pytest.raises(CommandError) as error:
        collectstatic()
    assert re.search(r"Writing .* was refused \(AccessDenied\).*not saved. The uploads are in place", str(error.value))

    assert site_objects(bucket) == static_tree.files()
    assert MANIFEST not in bucket.list_keys()


def test_no_room_for_the_manifest_on_disk_fails_the_command_after_the_uploads(
    manifest_settings, bucket, static_tree, monkeypatch, tmp_path
):
    write_site(static_tree)
    monkeypatch.setattr(manifest_base, "SPOOL_BYTES", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))

    with pytest.raises(CommandError) as error:
        collectstatic()
    assert re.search(r"temporary file in .*gone failed .*TMPDIR.*not saved. The uploads are in place", str(error.value))

    assert site_objects(bucket) == static_tree.files()
    assert MANIFEST not in bucket.objects()


def test_a_manifest_that_keeps_changing_is_given_up_after_bounded_retries(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    bucket.server.add_fault("PUT", MANIFEST, status=412, code="PreconditionFailed")

    with pytest.raises(CommandError, match="changed under this deploy 5 times in a row. The manifest was not saved"):
        collectstatic()

    # Each refused write is followed by a re-read, and the failure by a read-back: 1 + 5 + 1 GET, 5 + 5 PUT.
    assert bucket.counts() == {"GET": 1 + 5 + 1, "PUT": 5 + 5}


def test_manifest_warnings_outside_collectstatic_are_python_warnings(manifest_settings, bucket):
    from django.contrib.staticfiles.storage import staticfiles_storage

    from collectfast.manifest import ManifestWarning

    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=b"not json")
    strategy = S3ManifestStrategy(staticfiles_storage)

    with pytest.warns(ManifestWarning, match="is unusable"):
        strategy.adopt(strategy.read_manifest())


def test_manifest_warnings_are_shown_at_every_verbosity(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    bucket.client.put_object(Bucket=bucket.name, Key=MANIFEST, Body=b"not json")

    run = collectstatic(verbosity=0)

    assert run.stdout == ""
    assert run.stderr.startswith("collectfast: The manifest ") and "is unusable" in run.stderr


def test_a_server_without_conditional_writes_gets_plain_writes_and_a_warning(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    bucket.server.add_fault("PUT", MANIFEST, status=501, code="NotImplemented", times=1)

    run = collectstatic()
    assert re.search("ignores conditional writes", run.stderr)

    assert bucket.counts() == {"GET": 1, "PUT": 5 + 2}
    assert stored_manifest(bucket).conditional_writes == WRITES_IGNORED
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


def test_clear_deletes_the_manifest_and_starts_from_nothing(manifest_settings, bucket, static_tree):
    write_site(static_tree)
    collectstatic()
    bucket.client.put_object(Bucket=bucket.name, Key="stale.txt", Body=b"stale")
    bucket.server.reset()

    run = collectstatic("--clear", verbosity=2)

    assert f"Deleting '{MANIFEST}'" in run.stdout
    # One LIST and one batched DELETE for the clear; no read of the manifest it just deleted.
    assert bucket.counts() == {"LIST": 1, "POST": 1, "PUT": 5 + 2}
    assert site_objects(bucket) == static_tree.files()
    assert set(assert_consistent(bucket).entries) == set(static_tree.files())


def test_the_manifest_lives_under_the_storage_location(settings, bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = STRATEGY
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, location="assets/v1")}
    write_site(static_tree)
    collectstatic()
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": 1}
    assert f"assets/v1/{MANIFEST}" in bucket.list_keys()
    assert set(assert_consistent(bucket, "assets/v1/").entries) == set(static_tree.files())


def test_a_static_file_at_the_manifest_key_is_refused(manifest_settings, bucket, static_tree):
    static_tree.write(MANIFEST, "{}")

    with pytest.raises(CommandError, match="COLLECTFAST_MANIFEST"):
        collectstatic()

    assert bucket.list_keys() == []


# Concurrent deploys.


def deploy_command(bucket: Bucket, static: Path, *extra: str) -> list[str]:
    args = ["--endpoint", bucket.server.endpoint_url, "--bucket", bucket.name, "--static", str(static)]
    return [sys.executable, "-m", "tests.deploy_process", *args, *extra]


def run_deploy(bucket: Bucket, static: Path) -> str:
    result = subprocess.run(deploy_command(bucket, static), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


class RacingStrategy(S3ManifestStrategy):
    """Another deploy runs to completion after this one read the manifest and before it writes."""

    rival: Path
    when: str

    def start(self, prefixed_paths, *, dry_run=False, cleared=False):
        super().start(prefixed_paths, dry_run=dry_run, cleared=cleared)
        if self.when == "before-uploads":
            run_deploy(self.target, self.rival)

    def finish(self, *, succeeded, dry_run=False):
        if self.when == "after-uploads":
            run_deploy(self.target, self.rival)
        super().finish(succeeded=succeeded, dry_run=dry_run)


@pytest.mark.parametrize(("when", "winner"), [("before-uploads", "mine"), ("after-uploads", "theirs")])
def test_a_deploy_that_lost_the_race_merges_and_keeps_the_upload_s3_holds(
    manifest_settings, bucket, static_tree, tmp_path, when, winner
):
    static_tree.write("shared.css", "shared")
    collectstatic()
    rival = StaticTree(tmp_path / "rival")
    rival.write("shared.css", "shared")
    rival.write("theirs.css", "only theirs")
    rival.write("clash.js", "theirs")
    static_tree.write("mine.css", "only mine")
    static_tree.write("clash.js", "mine")
    RacingStrategy.rival, RacingStrategy.when, RacingStrategy.target = rival.root, when, bucket
    manifest_settings.COLLECTFAST_STRATEGY = "tests.test_manifest.RacingStrategy"

    run = collectstatic()

    assert "merged with a concurrent deploy" in run.stdout
    manifest = assert_consistent(bucket)
    assert set(manifest.entries) == {"shared.css", "mine.css", "theirs.css", "clash.js"}
    assert site_objects(bucket)["clash.js"] == winner.encode()


def test_two_deploys_started_together_leave_a_manifest_matching_the_bucket(bucket, tmp_path):
    trees = [StaticTree(tmp_path / name) for name in ("one", "two")]
    for i, tree in enumerate(trees):
        for j in range(12):
            tree.write(f"shared/{j}.css", f".shared-{j} {{}}")
            tree.write(f"own-{i}/{j}.js", f"var own = {i * 100 + j};")
        tree.write("clash.js", f"deploy {i}")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Slow requests down so that both deploys read the manifest long before either writes it.
    bucket.server.configure(delay_ms=50)
    try:
        processes = [
            subprocess.Popen(
                deploy_command(bucket, tree.root, "--threads", "2", "--barrier", str(barrier), "--parties", "2"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tree in trees
        ]
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        bucket.server.configure(delay_ms=0)

    assert [process.returncode for process in processes] == [0, 0], outputs
    assert any("merged with a concurrent deploy" in out for out, _ in outputs), outputs
    manifest = assert_consistent(bucket)
    expected = {"clash.js"} | {name for tree in trees for name in tree.files()}
    assert set(manifest.entries) == expected


@pytest.fixture
def careless_server(bucket):
    bucket.server.configure(ignore_preconditions=True)
    yield bucket
    bucket.server.configure(ignore_preconditions=False)


def test_a_server_that_ignores_preconditions_is_reported(manifest_settings, careless_server, static_tree):
    write_site(static_tree)

    first = collectstatic()

    assert stored_manifest(careless_server).conditional_writes == WRITES_IGNORED
    assert first.stderr.count("ignores conditional writes") == 1
    static_tree.write("css/app.css", "changed")
    second = collectstatic()
    assert second.stderr.count("ignores conditional writes") == 1
    assert_consistent(careless_server)


# The upload-everything strategy.


def test_upload_all_makes_no_lookup(s3_settings, bucket, static_tree):
    s3_settings.COLLECTFAST_STRATEGY = "collectfast.strategies.upload_all.UploadAllStrategy"
    write_site(static_tree)
    collectstatic()
    bucket.server.reset()

    run = collectstatic()

    assert bucket.counts() == {"PUT": 5}
    assert "5 static files copied. 5 PUT." in run.stdout
    assert bucket.objects() == static_tree.files()


def test_upload_all_overwrites_s3_objects_in_place_without_file_overwrite(settings, bucket, static_tree):
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.upload_all.UploadAllStrategy"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, file_overwrite=False)}
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")
    bucket.server.reset()

    collectstatic()

    # One PUT per file: no DELETE first (no window where an asset 404s), no renamed copy.
    assert bucket.counts() == {"PUT": 5}
    assert bucket.objects() == static_tree.files()


def test_upload_all_overwrites_in_place_on_a_storage_that_keeps_files(settings, static_tree, tmp_path):
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.upload_all.UploadAllStrategy"
    settings.STATIC_ROOT = str(tmp_path / "root")
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")

    collectstatic()

    assert StaticTree(tmp_path / "root").files() == static_tree.files()


def test_a_key_listed_twice_does_not_stand_for_one_left_out(manifest_settings, bucket):
    # A unit test: the listing is stubbed to show what no real server here would list.
    from django.contrib.staticfiles.storage import staticfiles_storage

    from collectfast.backends.base import RemoteObject
    from collectfast.manifest import Entry, Manifest

    strategy = S3ManifestStrategy(staticfiles_storage)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    strategy._base = Manifest(entries={name: Entry("0" * 32, 1, "0" * 32, "", at) for name in ("a.css", "b.css")})
    listed = RemoteObject("a.css", "0" * 32, 1)
    strategy.backend.list_pages = lambda names: iter([[listed], [listed]])  # type: ignore[method-assign]

    assert strategy.unconfirmed(["a.css", "b.css"]) == {"b.css"}
    strategy.backend.list_pages = lambda names: iter([[listed, RemoteObject("b.css", "0" * 32, 1)]])  # type: ignore[method-assign]
    assert strategy.unconfirmed(["a.css", "b.css"]) == set()
    strategy.backend.list_pages = lambda names: iter([[RemoteObject("b.css", "1" * 32, 1)]])  # type: ignore[method-assign]
    assert strategy.unconfirmed(["a.css", "b.css"]) == {"a.css", "b.css"}
