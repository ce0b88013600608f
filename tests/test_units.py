"""Unit tests of the small parts; the S3 behaviour itself is proven in test_s3.py."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from collectfast.conf import settings as collectfast_settings
from collectfast.counting import RequestCounter, request_kind
from collectfast.errors import is_transient
from collectfast.hashing import stream_fingerprint
from collectfast.pool import WorkerPool
from collectfast.strategies import boto3 as _s3_backend  # noqa: F401  (registers the S3 error classifier)
from tests.fixtures import Bucket

MIB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 5 * MIB, 8 * MIB - 1, 8 * MIB, 8 * MIB + 1, 17 * MIB])
def test_fingerprint_etag_equals_the_servers(bucket: Bucket, size: int):
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(size)
    bucket.client.upload_fileobj(io.BytesIO(data), bucket.name, "k", Config=TransferConfig())
    fingerprint = stream_fingerprint(io.BytesIO(data), 8 * MIB, 8 * MIB)
    assert fingerprint.etag == bucket.etag("k")
    assert fingerprint.size == size
    assert fingerprint.md5 == hashlib.md5(data).hexdigest()


class Trickle(io.RawIOBase):
    """A raw stream that returns short reads, as django-storages' gzip wrapper does."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self.data.read(min(len(buffer), 777))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_fingerprint_is_the_same_for_short_reads_and_odd_part_sizes():
    data = os.urandom(2 * MIB + 12345)
    part_size = MIB + 3
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    combined = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()

    for stream in (io.BytesIO(data), Trickle(data)):
        fingerprint = stream_fingerprint(stream, MIB, part_size)
        assert fingerprint.etag == f"{combined}-3"
        assert fingerprint.size == len(data)


class ReadOnly:
    """A stream with ``read`` only: blocks come from it, not from the thread's buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.data.read(size)


def test_file_md5_reads_every_block_on_every_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from django.core.files.storage import FileSystemStorage

    from collectfast.hashing import BLOCK_SIZE, file_md5

    sizes = [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 17]
    contents = {f"f{i}": os.urandom(size) for i, size in enumerate(sizes * 4)}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    storage = FileSystemStorage(location=str(tmp_path))

    with ThreadPoolExecutor(4) as pool:  # one buffer per thread, reused by every file it hashes
        found = dict(zip(contents, pool.map(lambda name: file_md5(storage, name), contents), strict=True))
    assert found == {name: hashlib.md5(data).hexdigest() for name, data in contents.items()}
    data = os.urandom(2 * MIB + 5)
    assert stream_fingerprint(ReadOnly(data), 8 * MIB, 8 * MIB).md5 == hashlib.md5(data).hexdigest()


def test_fingerprint_of_a_single_part_upload_is_the_md5():
    assert stream_fingerprint(io.BytesIO(b"hello"), 8 * MIB, 8 * MIB).etag == hashlib.md5(b"hello").hexdigest()


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("GET", "http://h/b?list-type=2&prefix=x", "LIST"),
        ("GET", "http://h/b/key", "GET"),
        ("HEAD", "http://h/b/key", "HEAD"),
        ("PUT", "http://h/b/key", "PUT"),
        ("POST", "http://h/b?delete", "POST"),
    ],
)
def test_request_kind(method, url, kind):
    assert request_kind(method, url) == kind


@pytest.mark.parametrize(
    ("method", "path", "query", "kind"),
    [
        ("GET", "/b", "list-type=2&prefix=x", "LIST"),
        ("GET", "/b", "prefix=x&marker=y", "LIST"),  # ListObjects v1, as some peers use
        ("GET", "/b", "", "LIST"),
        ("GET", "/b", "location", "GET"),
        ("GET", "/b", "uploads", "GET"),
        ("GET", "/b/key", "", "GET"),
    ],
)
def test_the_test_server_counts_both_listing_versions_as_list(method, path, query, kind):
    from tests.s3server import request_kind as server_request_kind

    assert server_request_kind(method, path, query) == kind


def test_counter_summary_orders_kinds():
    counter = RequestCounter()
    assert counter.summary() == "No remote requests."
    for kind in ("PUT", "LIST", "PUT", "GET"):
        counter.add(kind)
    assert counter.summary() == "1 LIST, 1 GET, 2 PUT."


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error(503, "SlowDown"), True),
        (client_error(500, "InternalError"), True),
        (client_error(400, "RequestTimeout"), True),
        (client_error(403, "AccessDenied"), False),
        (client_error(404, "NoSuchBucket"), False),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (PermissionError("no"), False),
    ],
)
def test_is_transient(error, transient):
    assert is_transient(error) is transient


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_pool_retries_transient_errors_then_reports(threads):
    attempts: dict[int, int] = {}

    def work(task: int) -> int:
        attempts[task] = attempts.get(task, 0) + 1
        if task == 1 and attempts[task] < 3:
            raise client_error(503, "SlowDown")
        if task == 2:
            raise client_error(403, "AccessDenied")
        if task == 3:
            raise client_error(500, "InternalError")
        return task * 10

    pool = WorkerPool(threads, retries=2, backoff=0)
    outcomes = {o.task: o for o in pool.run(range(5), work)}

    assert {t: o.result for t, o in outcomes.items() if o.error is None} == {0: 0, 1: 10, 4: 40}
    assert attempts == {0: 1, 1: 3, 2: 1, 3: 3, 4: 1}
    assert "AccessDenied" in str(outcomes[2].error)


def test_pool_keeps_a_bounded_number_of_tasks_in_flight():
    submitted = []

    def tasks():
        for i in range(100):
            submitted.append(i)
            yield i

    pool = WorkerPool(2, retries=0)
    results = pool.run(tasks(), lambda task: task)
    first = next(results)
    assert len(submitted) <= 2 * 4 + 1
    assert sorted([first.task] + [o.task for o in results]) == list(range(100))


def test_settings_defaults(settings):
    del settings.COLLECTFAST_THREADS
    assert collectfast_settings.threads == 10
    assert collectfast_settings.enabled is True
    assert collectfast_settings.strategy is None
    assert collectfast_settings.cache == "default"
    assert collectfast_settings.manifest == "collectfast-manifest.json"
    settings.COLLECTFAST_THREADS = True
    assert collectfast_settings.threads == 10


def test_pool_threads_serve_every_batch_until_closed():
    import threading

    pool = WorkerPool(3, retries=0)
    first = {o.result for o in pool.run(range(30), lambda task: threading.current_thread())}
    second = {o.result for o in pool.run(range(30), lambda task: threading.current_thread())}
    pool.close()
    # The executor starts threads as it needs them, up to 3, and keeps them for the next batch.
    assert len(first | second) <= 3
    third = {o.result for o in pool.run(range(30), lambda task: threading.current_thread())}
    pool.close()
    assert not third & first


def test_storage_identity_tells_endpoints_buckets_and_locations_apart():
    from storages.backends.s3 import S3Storage

    from collectfast.strategies.base import storage_identity

    def identity(**options):
        return storage_identity(S3Storage(access_key="a", secret_key="b", **options))

    base = {"bucket_name": "site", "endpoint_url": "http://127.0.0.1:1", "location": "static"}
    assert identity(**base) == identity(**base)
    assert identity(**base) != identity(**{**base, "bucket_name": "other-site"})
    assert identity(**base) != identity(**{**base, "endpoint_url": "http://127.0.0.1:2"})
    assert identity(**base) != identity(**{**base, "location": "static/v2"})


def test_the_cached_listing_survives_a_round_trip_in_a_few_entries_and_a_torn_one_is_a_miss(settings):
    from django.core.cache import caches
    from storages.backends.s3 import S3Storage

    from collectfast.strategies.boto3 import Boto3Strategy

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "units"}}
    strategy = Boto3Strategy(S3Storage(bucket_name="units", access_key="a", secret_key="b"))
    listing = {f"static/{i}.css": (hashlib.md5(str(i).encode()).hexdigest(), i) for i in range(2500)}

    assert strategy.cached_listing() is None
    strategy.cache_listing(listing)

    assert strategy.cached_listing() == listing
    assert len(caches["default"]._cache) == 1 + 3
    caches["default"].delete(strategy.listing_cache_key(1))
    assert strategy.cached_listing() is None


@pytest.mark.parametrize(
    "name",
    [
        "a.css",
        "a/b/c.js",
        "a/../b.css",
        "../a.css",
        "a/..",
        "/abs.css",
        "//abs.css",
        "a\\..\\b.css",
        "\\abs.css",
        "a/./b.css",
        ".",
        "a/",
        "..a/b..css",
        "a/.../b.css",
    ],
)
def test_names_are_refused_as_django_refuses_them(name: str) -> None:
    from django.core.exceptions import SuspiciousFileOperation
    from django.core.files.utils import validate_file_name

    from collectfast.deploy import validate_name

    try:
        validate_file_name(name, allow_relative_path=True)
    except SuspiciousFileOperation as error:
        with pytest.raises(SuspiciousFileOperation) as ours:
            validate_name(name)
        assert str(ours.value) == str(error)
    else:
        validate_name(name)


def test_small_reads_send_every_byte_in_blocks_no_larger_than_the_bytes_left() -> None:
    from botocore.utils import determine_content_length

    from collectfast.backends.s3 import SmallReads
    from collectfast.hashing import BLOCK_SIZE

    data = os.urandom(3 * BLOCK_SIZE + 5)
    source = io.BufferedReader(io.BytesIO(data))
    body = SmallReads(source)
    assert determine_content_length(body) == len(data)
    blocks = list(iter(lambda: body.read(1 << 20), b""))
    assert [len(block) for block in blocks] == [BLOCK_SIZE] * 3 + [5]
    assert b"".join(blocks) == data
    body.seek(10)
    assert body.tell() == 10
    assert body.read() == data[10:]
    assert body.read(1) == b""
