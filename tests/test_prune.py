"""Pruning (collectstatic --prune, collectfast_prune) against the real S3 and GCS test servers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from io import StringIO
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError

from collectfast import prune
from collectfast.conf import setting_error
from collectfast.manifest import (
    Changes,
    Entry,
    Manifest,
    dumps,
    history_differs,
    loads,
    merge,
    produced_again,
    record_deploy,
)
from tests.fixtures import Bucket, Run, StaticTree, collectstatic, s3_storage

try:
    from tests.test_gcloud import GCSBucket, gcs_bucket, gcs_storage  # noqa: F401
except pytest.skip.Exception:
    GCSBucket = None  # type: ignore[assignment,misc]

MANIFEST_STRATEGY = "collectfast.strategies.manifest.S3ManifestStrategy"
LATER = timedelta(days=8)


def write_files(tree: StaticTree, n: int, folder: str = "f") -> None:
    for i in range(n):
        tree.write(f"{folder}/{i:03d}.js", f"var x = {i};")


def remove(tree: StaticTree, *paths: str) -> None:
    for path in paths:
        (tree.root / path).unlink()


def prune_command(*args: str, verbosity: int = 1) -> Run:
    stdout, stderr = StringIO(), StringIO()
    call_command("collectfast_prune", *args, verbosity=verbosity, stdout=stdout, stderr=stderr)
    return Run(stdout.getvalue(), stderr.getvalue())


def redeploy(bucket: Any, *args: str, **options: Any) -> Run:
    caches["default"].clear()
    bucket.server.reset()
    return collectstatic(*args, **options)


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning's clock, eight days ahead: every object is older than the default grace."""
    monkeypatch.setattr(prune, "now", lambda: datetime.now(timezone.utc) + LATER)


@pytest.fixture
def site(s3_settings: Any, static_tree: StaticTree, bucket: Bucket) -> StaticTree:
    """100 files deployed; the test deletes one locally (1%)."""
    write_files(static_tree, 100)
    collectstatic()
    remove(static_tree, "f/007.js")
    return static_tree


# The 1%-deleted scenario.


def test_prune_with_zero_grace_leaves_no_stale_object(site, bucket: Bucket, settings):
    settings.COLLECTFAST_PRUNE_GRACE = 0

    run = redeploy(bucket, "--prune")

    # The deploy's LIST, then the prune's LIST and one DeleteObjects.
    assert bucket.counts() == {"LIST": 2, "POST": 1}
    assert "0 static files copied, 99 unmodified. 1 LIST.\nPruned 1 object (10 bytes) under s3://" in run.stdout
    assert run.stdout.rstrip().endswith("/. 1 LIST, 1 POST.")
    assert bucket.list_keys() == sorted(site.files())


def test_default_grace_keeps_every_stale_object_until_it_is_a_week_old(site, bucket: Bucket, monkeypatch):
    run = redeploy(bucket, "--prune")

    assert bucket.counts() == {"LIST": 2}
    assert "Pruned 0 objects (0 bytes)" in run.stdout
    assert "f/007.js" in bucket.list_keys()

    # A week later, a scheduled collectfast_prune removes it.
    monkeypatch.setattr(prune, "now", lambda: datetime.now(timezone.utc) + LATER)
    bucket.server.reset()
    run = prune_command()

    assert bucket.counts() == {"LIST": 1, "POST": 1}
    assert run.stdout.startswith("Pruned 1 object (10 bytes) under s3://")
    assert bucket.list_keys() == sorted(site.files())


def test_grace_may_be_a_timedelta(site, bucket: Bucket, settings):
    settings.COLLECTFAST_PRUNE_GRACE = timedelta(0)

    redeploy(bucket, "--prune")

    assert "f/007.js" not in bucket.list_keys()


def test_dry_run_prints_the_plan_and_changes_nothing(site, bucket: Bucket, later):
    before = bucket.list_keys()
    bucket.server.reset()

    run = prune_command("--dry-run")

    assert bucket.counts() == {"LIST": 1}
    assert bucket.list_keys() == before
    lines = run.stdout.splitlines()
    assert lines[0] == "Would delete 'f/007.js' (10 bytes, last modified 8 days ago)"
    assert lines[1] == "Keeping 99 objects: 99 produced by the local tree."
    assert lines[2].startswith("Dry run: would prune 1 of 100 objects (10 bytes) under s3://")
    assert lines[2].endswith(". 1 LIST.")


def test_a_cached_listing_never_outlives_a_pruned_object(site, bucket: Bucket, settings):
    settings.COLLECTFAST_PRUNE_GRACE = 0
    collectstatic()  # uploads nothing, so its listing stays cached
    bucket.server.reset()

    collectstatic("--prune")  # the deploy answers from the cached listing, which names f/007.js
    assert bucket.counts() == {"LIST": 1, "POST": 1}

    site.write("f/007.js", "var x = 7;")  # back, and the cache must not say it is in place
    bucket.server.reset()
    run = collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 1}
    assert "1 static file copied, 99 unmodified." in run.stdout
    assert "f/007.js" in bucket.list_keys()


def test_collectstatic_dry_run_with_prune_deletes_nothing(site, bucket: Bucket, settings):
    settings.COLLECTFAST_PRUNE_GRACE = 0

    run = redeploy(bucket, "--prune", "--dry-run")

    assert bucket.counts() == {"LIST": 2}
    assert "Would delete 'f/007.js' (10 bytes, last modified " in run.stdout
    assert "f/007.js" in bucket.list_keys()


# What is never deleted.


def test_a_failed_deploy_prunes_nothing(site, bucket: Bucket, settings):
    settings.COLLECTFAST_PRUNE_GRACE = 0
    site.write("f/001.js", "changed")
    bucket.server.add_fault("PUT", "f/001.js", status=500, code="InternalError")

    with pytest.raises(CommandError, match="f/001.js"):
        redeploy(bucket, "--prune")

    assert "POST" not in bucket.counts()
    assert "f/007.js" in bucket.list_keys()


def test_the_manifest_and_objects_outside_the_location_are_never_touched(
    settings, bucket: Bucket, static_tree: StaticTree, later
):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, location="static")}
    for key in ("other/x.css", "static-old/y.css", "staticz", "static/collectfast-manifest.json", "static/gone.css"):
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"old")
    write_files(static_tree, 3)
    collectstatic()
    bucket.server.reset()

    run = prune_command(verbosity=2)

    assert bucket.counts() == {"LIST": 1, "POST": 1}
    assert "Deleting 'static/gone.css'" in run.stdout
    assert bucket.list_keys() == [
        "other/x.css",
        "static-old/y.css",
        "static/collectfast-manifest.json",
        "static/f/000.js",
        "static/f/001.js",
        "static/f/002.js",
        "staticz",
    ]


def test_an_empty_local_tree_is_an_error_not_delete_everything(s3_settings, bucket: Bucket, static_tree, later):
    write_files(static_tree, 2)
    collectstatic()
    remove(static_tree, "f/000.js", "f/001.js")
    bucket.server.reset()

    with pytest.raises(CommandError, match="no static file was found locally"):
        prune_command()
    with pytest.raises(CommandError, match="The deploy succeeded; then Pruning refused: no static file"):
        redeploy(bucket, "--prune")

    assert "POST" not in bucket.counts()
    assert len(bucket.list_keys()) == 2


def test_prune_needs_collectfast(s3_settings, static_tree):
    write_files(static_tree, 1)
    with pytest.raises(CommandError, match="--prune needs collectfast"):
        collectstatic("--prune", "--disable-collectfast")


# The guard.


def test_the_guard_refuses_more_than_half_of_the_objects(s3_settings, bucket: Bucket, static_tree, later):
    write_files(static_tree, 10)
    collectstatic()
    remove(static_tree, *[f"f/{i:03d}.js" for i in range(6)])
    bucket.server.reset()

    with pytest.raises(CommandError) as refused:
        prune_command()

    message = str(refused.value)
    assert "Pruning refused, nothing was deleted: 6 of the 10 objects under s3://" in message
    assert "(60%) would be deleted, more than the default limit (half of the objects, and at most 1,000)" in message
    assert "run again with --max-delete 6 (or set COLLECTFAST_PRUNE_MAX_DELETE = 6)" in message
    assert bucket.counts() == {"LIST": 1}
    assert len(bucket.list_keys()) == 10

    with pytest.raises(CommandError, match="more than the 5 allowed by --max-delete"):
        prune_command("--max-delete", "5")

    run = prune_command("--max-delete", "6")
    assert run.stdout.startswith("Pruned 6 objects (60 bytes)")
    assert len(bucket.list_keys()) == 4


def test_the_setting_sets_the_limit(s3_settings, bucket: Bucket, static_tree, settings, later):
    write_files(static_tree, 10)
    collectstatic()
    remove(static_tree, "f/000.js", "f/001.js")
    settings.COLLECTFAST_PRUNE_MAX_DELETE = 1

    with pytest.raises(CommandError, match="2 of the 10 objects .* more than the 1 allowed"):
        prune_command()


def test_one_listing_and_one_delete_per_thousand_keys(s3_settings, bucket: Bucket, static_tree, later):
    static_tree.write("app.css", "body {}")
    collectstatic()
    keys = [f"old/{i:04d}.js" for i in range(2100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"x"), keys))
    bucket.server.reset()

    with pytest.raises(CommandError, match="2,100 of the 2,101 objects .* at most 1,000"):
        prune_command()
    assert bucket.counts() == {"LIST": 3}
    bucket.server.reset()

    run = prune_command("--max-delete", "2100")

    assert bucket.counts() == {"LIST": 3, "POST": 3}
    assert run.stdout.startswith("Pruned 2,100 objects (2.1 kB) under s3://")
    assert bucket.list_keys() == ["app.css"]


def test_a_failed_delete_request_is_reported_once(site, bucket: Bucket, later):
    bucket.server.add_fault("POST", "", status=403, code="AccessDenied")

    with pytest.raises(CommandError) as failed:
        prune_command()

    message = str(failed.value)
    assert message.count("AccessDenied") == 1
    assert message.startswith("Pruning stopped: Deleting objects in bucket")
    assert message.endswith("Pruned 0 of 1 objects (0 bytes); 1 are still there.")
    assert "f/007.js" in bucket.list_keys()


def test_failures_of_single_keys_are_grouped_by_reason():
    text = prune.describe_failures({f"k{i:02d}": "AccessDenied: Access Denied" for i in range(12)} | {"x": "Boom"})
    assert text.splitlines() == [
        "13 objects could not be deleted:",
        "  AccessDenied: Access Denied (12): k00, k01, k02, k03, k04, k05, k06, k07, k08, k09 and 2 more",
        "  Boom (1): x",
        "Fix the cause and prune again.",
    ]


# Hashing storages: hashed names and staticfiles.json count as produced.


def test_hashed_names_of_the_current_tree_survive_and_old_ones_go(settings, bucket: Bucket, static_tree, later):
    storage = s3_storage(bucket, location="static")
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {**storage, "BACKEND": "storages.backends.s3.S3ManifestStaticStorage"},
    }
    static_tree.write("css/app.css", "body { color: red }")
    static_tree.write("img/a.svg", "<svg/>")
    collectstatic()
    static_tree.write("css/app.css", "body { color: blue }")
    collectstatic()
    manifest = json.loads(bucket.client.get_object(Bucket=bucket.name, Key="static/staticfiles.json")["Body"].read())
    produced = {"static/css/app.css", "static/img/a.svg", "static/staticfiles.json"}
    produced |= {f"static/{name}" for name in manifest["paths"].values()}
    stale = set(bucket.list_keys()) - produced
    assert len(stale) == 1 and stale.pop().startswith("static/css/app.")
    bucket.server.reset()

    run = prune_command("--dry-run")
    assert "POST" not in bucket.counts()
    assert run.stdout.count("Would delete 'static/css/app.") == 1
    run = prune_command()

    assert set(bucket.list_keys()) == produced
    assert run.stdout.startswith("Pruned 1 object")


def test_collectstatic_prune_keeps_the_hashed_names_it_just_uploaded(settings, bucket: Bucket, static_tree):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {**s3_storage(bucket), "BACKEND": "storages.backends.s3.S3ManifestStaticStorage"},
    }
    settings.COLLECTFAST_PRUNE_GRACE = 0
    static_tree.write("css/app.css", "body { color: red }")
    collectstatic()
    old = set(bucket.list_keys())
    static_tree.write("css/app.css", "body { color: blue }")
    bucket.server.reset()

    run = collectstatic("--prune")

    # The deploy: LIST, the original, the new hashed name, staticfiles.json; the prune: LIST, DeleteObjects.
    assert bucket.counts() == {"LIST": 2, "PUT": 3, "POST": 1}
    assert "Pruned 1 object (19 bytes)" in run.stdout
    keys = set(bucket.list_keys())
    assert len(keys) == 3 and "staticfiles.json" in keys and len(old - keys) == 1


# The deploy manifest keeps the history of recent deploys.


def test_keys_from_the_last_k_deploys_survive(s3_settings, bucket: Bucket, static_tree, settings):
    settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    settings.COLLECTFAST_PRUNE_GRACE = 0
    settings.COLLECTFAST_PRUNE_KEEP_DEPLOYS = 2
    write_files(static_tree, 4)
    collectstatic("--prune")
    remove(static_tree, "f/000.js")

    # Deploy 2 no longer produces f/000.js, but deploy 1 (one of the last two) did.
    run = redeploy(bucket, "--prune")
    # GET and LIST of the manifest strategy; the prune's LIST and one PUT recording the deploy in the history.
    assert bucket.counts() == {"GET": 1, "LIST": 2, "PUT": 1}
    assert "f/000.js" in bucket.list_keys()
    assert "Pruned 0 objects" in run.stdout

    # Deploy 3 lacks f/001.js too: f/000.js is now two deploys gone, f/001.js one.
    remove(static_tree, "f/001.js")
    run = redeploy(bucket, "--prune")

    # The prune: LIST, one PUT recording the deploy and dropping f/000.js's entry first, one DeleteObjects.
    assert bucket.counts() == {"GET": 1, "LIST": 2, "PUT": 1, "POST": 1}
    keys = bucket.list_keys()
    assert "f/000.js" not in keys and "f/001.js" in keys
    assert "Pruned 1 object (10 bytes)" in run.stdout
    document = loads(bucket.client.get_object(Bucket=bucket.name, Key="collectfast-manifest.json")["Body"].read())
    assert "f/000.js" not in document.entries
    assert document.entries["f/001.js"].gone_since == document.deploys[0]
    assert len(document.deploys) == 3

    # A deploy that changes nothing records nothing and writes nothing.
    run = redeploy(bucket)
    assert bucket.counts() == {"GET": 1, "LIST": 1}


def test_collectfast_prune_reads_the_history_from_the_manifest(s3_settings, bucket: Bucket, static_tree, settings):
    settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    settings.COLLECTFAST_PRUNE_GRACE = 0
    write_files(static_tree, 4)
    collectstatic()
    remove(static_tree, "f/000.js")
    redeploy(bucket, "--prune")
    bucket.server.reset()

    prune_command()
    assert bucket.counts() == {"GET": 1, "LIST": 1}
    assert "f/000.js" in bucket.list_keys()  # gone for one deploy of the last 3

    settings.COLLECTFAST_PRUNE_KEEP_DEPLOYS = 1
    bucket.server.reset()
    run = prune_command()

    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 1, "POST": 1}
    assert "f/000.js" not in bucket.list_keys()
    assert run.stdout.startswith("Pruned 1 object")
    # The deploy manifest itself is never a candidate.
    assert "collectfast-manifest.json" in bucket.list_keys()


def test_history_is_bounded_and_survives_a_round_trip():
    t0 = datetime(2025, 5, 1, tzinfo=timezone.utc)
    entry = Entry("0" * 32, 1, "0" * 32, "o", t0)
    manifest = Manifest({"a": entry, "b": entry})
    for i in range(60):
        record_deploy(manifest, frozenset({"a"}), t0 + timedelta(hours=i))
    assert len(manifest.deploys) == 50
    assert manifest.entries["b"].gone_since == t0
    assert manifest.entries["a"].gone_since is None
    assert not history_differs(manifest, frozenset({"a"}))
    assert history_differs(manifest, frozenset({"a", "b"}))
    parsed = loads(dumps(manifest))
    assert parsed.deploys == manifest.deploys
    assert parsed.entries["b"].gone_since == t0
    # Older releases read the same document and ignore the history.
    assert parsed.entries == manifest.entries


def test_only_a_name_produced_again_forces_a_write():
    t0 = datetime(2025, 5, 1, tzinfo=timezone.utc)
    entry = Entry("0" * 32, 1, "0" * 32, "o", t0)
    manifest = Manifest({"a": entry, "b": entry})
    # b dropped: recorded with the next write, which only keeps it longer.
    assert not produced_again(manifest, frozenset({"a"}))
    record_deploy(manifest, frozenset({"a"}), t0)
    assert produced_again(manifest, frozenset({"a", "b"}))


def test_merge_records_the_deploy_on_the_newer_copy():
    t0 = datetime(2025, 5, 1, tzinfo=timezone.utc)
    entry = Entry("0" * 32, 1, "0" * 32, "o", t0)
    theirs = Manifest({"a": entry, "b": entry}, deploys=[t0])
    changes = Changes(produced=frozenset({"b"}), deployed_at=t0 + timedelta(hours=1))
    merged, _ = merge(theirs, changes)
    assert merged.deploys == [t0 + timedelta(hours=1), t0]
    assert merged.entries["a"].gone_since == t0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("COLLECTFAST_PRUNE_GRACE", -1, False),
        ("COLLECTFAST_PRUNE_GRACE", timedelta(hours=1), True),
        ("COLLECTFAST_PRUNE_GRACE", 3600.5, True),
        ("COLLECTFAST_PRUNE_GRACE", True, False),
        ("COLLECTFAST_PRUNE_KEEP_DEPLOYS", 0, True),
        ("COLLECTFAST_PRUNE_KEEP_DEPLOYS", 51, False),
        ("COLLECTFAST_PRUNE_MAX_DELETE", None, True),
        ("COLLECTFAST_PRUNE_MAX_DELETE", -1, False),
        ("COLLECTFAST_PRUNE_MAX_DELETE", "10", False),
    ],
)
def test_settings_are_validated(settings, name, value, ok):
    setattr(settings, name, value)
    assert (setting_error(name) is None) == ok


def test_a_local_static_root_is_pruned_too(settings, static_tree: StaticTree, tmp_path):
    root = tmp_path / "root"
    settings.STATIC_ROOT = str(root)
    settings.COLLECTFAST_PRUNE_GRACE = 0
    write_files(static_tree, 3)
    collectstatic()
    remove(static_tree, "f/000.js")

    run = collectstatic("--prune")

    assert f"Pruned 1 object (10 bytes) under {root}" in run.stdout
    assert sorted(p.name for p in (root / "f").iterdir()) == ["001.js", "002.js"]


# Google Cloud Storage.

gcs = pytest.mark.skipif(GCSBucket is None, reason="needs google-cloud-storage and gcp-storage-emulator")


@gcs
def test_gcs_prune_with_zero_grace_leaves_no_stale_object(settings, gcs_bucket, static_tree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": gcs_storage(gcs_bucket)}
    settings.COLLECTFAST_PRUNE_GRACE = 0
    write_files(static_tree, 100)
    collectstatic()
    remove(static_tree, "f/007.js")

    run = redeploy(gcs_bucket, "--prune")

    # The deploy's listing, then the prune's listing and one batch request.
    assert gcs_bucket.counts() == {"LIST": 2, "BATCH": 1}
    assert "Pruned 1 object (10 bytes) under gs://" in run.stdout
    assert gcs_bucket.list_keys() == sorted(static_tree.files())


@gcs
def test_gcs_collectfast_prune_deletes_in_batches(settings, gcs_bucket, static_tree, later):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": gcs_storage(gcs_bucket, location="static")}
    write_files(static_tree, 250)
    collectstatic()
    gcs_bucket.put("outside/x.js", b"x")
    remove(static_tree, *[f"f/{i:03d}.js" for i in range(150)])
    gcs_bucket.server.reset()

    with pytest.raises(CommandError, match="150 of the 250 objects under gs://"):
        prune_command()
    run = prune_command("--max-delete", "150")

    # GCS takes at most 100 calls per batch request.
    assert gcs_bucket.counts() == {"LIST": 2, "BATCH": 2}
    assert run.stdout.startswith("Pruned 150 objects (1.7 kB) under gs://")
    assert "outside/x.js" in gcs_bucket.list_keys()
    assert gcs_bucket.list_keys("static/") == [f"static/{name}" for name in sorted(static_tree.files())]
