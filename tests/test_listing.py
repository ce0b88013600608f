"""Listing a bucket in key ranges at once: the same answer as one sequential listing, for about as many requests."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.core.cache import caches
from django.core.files.storage import storages

from collectfast.backends import s3
from collectfast.backends.s3 import range_bounds
from collectfast.strategies.boto3 import Boto3Strategy
from tests.fixtures import Bucket, StaticTree, collectstatic

# Pages of 10 keys and ranges of at least 25 keys, so that a few hundred objects make many ranges of many pages.
PAGE = 10
RANGE = 25

# Keys that sort oddly: unicode, spaces, prefixes of one another, a slash right after a prefix.
ODD = [
    "a",
    "a b",
    "a-",
    "a/",
    "a/b",
    "a/b/c",
    "ab",
    "b ",
    "b",
    "café.css",
    "cafe.css",
    "caf\u00e9/x.css",
    "z/日本語.js",
    "z/Ωmega.js",
    "z/emoji-\u2713.svg",
    "Zürich/ä.css",
    "Z",
    "~tilde",
]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setattr(s3, "PAGE_KEYS", PAGE)
    monkeypatch.setattr(s3, "RANGE_KEYS", RANGE)
    settings.COLLECTFAST_THREADS = 6


@pytest.fixture
def ranges_listed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, str | None]]:
    """Every ``(after, last)`` range listed, as list_range was called."""
    calls: list[tuple[str | None, str | None]] = []
    original = s3.list_range

    def spy(client: Any, bucket: str, prefix: str, after: str | None, last: str | None) -> Any:
        calls.append((after, last))
        return original(client, bucket, prefix, after, last)

    monkeypatch.setattr(s3, "list_range", spy)
    return calls


def put(bucket: Bucket, keys: list[str]) -> None:
    for key in keys:
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=f"body of {key}".encode())


def many(n: int, prefix: str = "") -> list[str]:
    return [f"{prefix}dir{i % 7}/file {i:04d}.txt" for i in range(n)]


def test_range_bounds_cut_whole_pages_at_most_one_range_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "PAGE_KEYS", PAGE)
    monkeypatch.setattr(s3, "RANGE_KEYS", RANGE)
    keys = [f"k{i:03d}" for i in range(200)]
    assert range_bounds(keys[:25], threads=8) == []  # one range's worth: listed sequentially
    assert range_bounds(keys, threads=1) == []
    bounds = range_bounds(keys, threads=4)
    # 20 pages over 4 ranges: 5 pages (50 keys) each, each range ending on a key of its own.
    assert bounds == ["k049", "k099", "k149"]
    bounds = range_bounds(keys, threads=100)
    # At least RANGE keys per range (8 ranges at most), in whole pages: 3 pages each, 7 ranges.
    assert bounds == ["k029", "k059", "k089", "k119", "k149", "k179"]
    # However many threads, at most RANGES_AT_ONCE ranges: a small server is not sent a page per thread at once.
    monkeypatch.setattr(s3, "RANGES_AT_ONCE", 3)
    assert range_bounds(keys, threads=100) == ["k069", "k139"]


def test_ranges_list_the_same_objects_as_one_sequential_listing(
    s3_settings: Any, small_pages: None, bucket: Bucket, ranges_listed: list[Any]
) -> None:
    local = [*ODD, *many(150)]
    # Remote: most local keys, keys no local file has (around and between the bounds), not every local key.
    remote = [*local[::2], *local[1::4], *many(60, prefix="old/"), "0first", "\uffffast", "dir3/file 0100.txt~"]
    put(bucket, remote)
    strategy = Boto3Strategy(storages["staticfiles"])
    sequential = strategy.list_remote()

    bucket.server.reset()
    ranged = strategy.list_for(local)

    assert ranged == sequential
    assert set(ranged) == set(remote)
    assert list(ranged.values()) == [sequential[key] for key in ranged]
    ranges = len(ranges_listed) - 1  # the first call was the sequential listing's
    assert ranges == 6  # 168 local keys: 17 pages over 6 threads, 3 pages each
    # Each range starts where the one before it stops.
    edges = sorted(ranges_listed[1:], key=lambda edge: edge[0] or "")
    assert edges[0][0] is None and edges[-1][1] is None
    assert all(edges[i][1] == edges[i + 1][0] for i in range(ranges - 1))
    assert bucket.counts()["LIST"] <= math.ceil(len(remote) / PAGE) + ranges


def test_a_bucket_holding_exactly_the_local_files_costs_no_extra_request(
    s3_settings: Any, small_pages: None, bucket: Bucket, ranges_listed: list[Any]
) -> None:
    keys = sorted({*ODD, *many(300)})
    put(bucket, keys)
    bucket.server.reset()

    listed = Boto3Strategy(storages["staticfiles"]).list_for(keys)

    assert set(listed) == set(keys)
    assert len(ranges_listed) == 6  # 318 keys: 32 pages over 6 threads
    assert bucket.counts() == {"LIST": math.ceil(len(keys) / PAGE)}  # 32, as one sequential listing


def test_a_redeploy_lists_in_ranges(
    s3_settings: Any, small_pages: None, bucket: Bucket, static_tree: StaticTree, ranges_listed: list[Any]
) -> None:
    n = 120
    for i in range(n):
        static_tree.write(f"many/{i % 9}/file {i}.txt", f"file {i}")
    static_tree.write("many/caf\u00e9.css", "body {}")
    collectstatic()
    bucket.server.reset()
    caches["default"].clear()
    ranges_listed.clear()

    run = collectstatic()

    assert len(ranges_listed) == 5  # 121 files: 13 pages over at most 5 ranges of 25 keys or more: 3 pages each
    assert bucket.counts() == {"LIST": math.ceil((n + 1) / PAGE)}
    assert f"0 static files copied, {n + 1} unmodified." in run.stdout


def test_a_verified_manifest_redeploy_lists_in_ranges_the_manifest_included(
    s3_settings: Any, small_pages: None, bucket: Bucket, static_tree: StaticTree, ranges_listed: list[Any]
) -> None:
    s3_settings.COLLECTFAST_STRATEGY = "collectfast.strategies.manifest.S3ManifestStrategy"
    n = 130
    for i in range(n):
        static_tree.write(f"many/{i % 9}/file {i}.txt", f"file {i}")
    collectstatic()
    bucket.client.delete_object(Bucket=bucket.name, Key="many/3/file 3.txt")  # deleted by hand: uploaded again
    bucket.server.reset()
    ranges_listed.clear()

    run = collectstatic()

    assert len(ranges_listed) == 5  # 131 keys (the manifest's too): 14 pages, 3 pages per range
    counts = bucket.counts()
    # The manifest is listed too (n + 1 keys, one of them deleted), and read, and written once more.
    assert counts["LIST"] <= math.ceil((n + 1) / PAGE) + len(ranges_listed)
    assert counts["GET"] == 1 and counts["PUT"] == 2
    assert f"1 static file copied, {n - 1} unmodified." in run.stdout
    bucket.server.reset()
    ranges_listed.clear()

    run = collectstatic()

    assert bucket.counts() == {"GET": 1, "LIST": math.ceil((n + 1) / PAGE)}
    assert f"0 static files copied, {n} unmodified." in run.stdout
