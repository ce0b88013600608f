"""The private parts of django-storages and botocore the S3 backend relies on, each behind one function.

Each test pins the behaviour collectfast depends on against the real stack and the
test S3 server, so an upgrade that changes it fails here, by name, first.
"""

from __future__ import annotations

import copy
import gzip
import io
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore import handlers, parsers
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp
from storages.backends.s3 import S3Storage

from collectfast.backends import s3
from collectfast.conf import settings
from tests.fixtures import Bucket, s3_storage


def make(bucket: Bucket, **options: Any) -> S3Storage:
    return S3Storage(**s3_storage(bucket, **options)["OPTIONS"])


def test_storage_key_is_where_save_stores_a_name(bucket: Bucket) -> None:
    storage = make(bucket, location="static/")

    saved = storage.save("css\\odd name.css", io.BytesIO(b"x"))

    assert s3.storage_key(storage, "css\\odd name.css") == "static/css/odd name.css"
    assert bucket.list_keys() == ["static/css/odd name.css"] and saved == "css/odd name.css"
    assert s3.storage_key(make(bucket), "/a/./b.css") == "a/b.css"


def test_write_parameters_are_what_an_upload_is_sent_with(bucket: Bucket) -> None:
    storage = make(bucket, object_parameters={"CacheControl": "max-age=60"}, default_acl="public-read")

    params = s3.write_parameters(storage, "app.css")

    assert params == {"ContentType": "text/css", "CacheControl": "max-age=60", "ACL": "public-read"}
    storage.save("app.css", io.BytesIO(b"body{}"))
    head = bucket.client.head_object(Bucket=bucket.name, Key="app.css")
    assert (head["ContentType"], head["CacheControl"]) == ("text/css", "max-age=60")


def test_compress_gives_the_bytes_a_gzip_storage_stores(bucket: Bucket) -> None:
    storage = make(bucket, gzip=True)
    body = b"body { color: red }\n" * 200

    compressed = s3.compress(storage, io.BytesIO(body)).read()
    storage.save("app.css", io.BytesIO(body))

    assert gzip.decompress(compressed) == body
    assert bucket.objects()["app.css"] == compressed
    assert s3.gzips(storage, s3.write_parameters(storage, "app.css"))
    assert not s3.gzips(storage, s3.write_parameters(storage, "logo.png"))  # not a gzip content type
    assert not s3.gzips(make(bucket), s3.write_parameters(storage, "app.css"))  # gzip off


def test_save_overwrites_in_place_even_where_save_would_pick_another_name(bucket: Bucket) -> None:
    storage = make(bucket, file_overwrite=False)
    storage.save("app.js", io.BytesIO(b"v1"))

    assert s3.save(storage, "app.js", io.BytesIO(b"v2")) == "app.js"

    assert bucket.objects() == {"app.js": b"v2"}
    assert s3.saves_as_stock(storage)

    class Custom(S3Storage):
        def _save(self, name: str, content: Any) -> str:
            return str(super()._save(name, content))

    assert not s3.saves_as_stock(Custom(**s3_storage(bucket)["OPTIONS"]))


def test_connect_gives_a_copy_its_own_resource(bucket: Bucket) -> None:
    storage = make(bucket, client_config=Config(read_timeout=7))
    storage.connection  # noqa: B018 - the user's storage has made its connection

    first, second = copy.copy(storage), copy.copy(storage)
    # django-storages drops its connections when copied: the copies share nothing with the user's storage.
    assert getattr(first._connections, "connection", None) is None
    s3.connect(first)
    s3.connect(second)
    made_on_another_thread: list[Any] = []
    thread = threading.Thread(
        target=lambda: made_on_another_thread.append(getattr(first._connections, "connection", None))
    )
    thread.start()
    thread.join()

    clients = {
        id(c) for c in (storage.connection.meta.client, first.connection.meta.client, second.connection.meta.client)
    }
    assert len(clients) == 3
    assert made_on_another_thread == [None]  # per thread: a worker must connect its own copy
    assert first.connection.meta.client.meta.config.read_timeout == 7  # the storage's config, kept
    first.connection.meta.client.put_object(Bucket=bucket.name, Key="k", Body=b"x")
    assert bucket.list_keys() == ["k"]


def test_connect_shares_the_model_of_the_user_s_client(bucket: Bucket) -> None:
    storage = make(bucket)
    users = storage.connection.meta.client

    copied = copy.copy(storage)
    s3.connect(copied, model_of=users)
    client = copied.connection.meta.client

    # botocore's loader holds S3's parsed model and endpoint data: one of them per process, not per session.
    assert client._loader is users._loader
    assert client is not users
    client.put_object(Bucket=bucket.name, Key="k", Body=b"x")
    assert [page["KeyCount"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)] == [1]


def test_connect_parses_times_as_botocore_does(bucket: Bucket) -> None:
    storage = make(bucket)
    copied = copy.copy(storage)
    s3.connect(copied, model_of=storage.connection.meta.client)
    users, ours = storage.connection.meta.client, copied.connection.meta.client
    users.put_object(Bucket=bucket.name, Key="k", Body=b"x")

    # A listing's ISO 8601 times (parsed by collectfast) and a HEAD's RFC 1123 date (by botocore) alike.
    listed = [client.list_objects_v2(Bucket=bucket.name)["Contents"][0]["LastModified"] for client in (users, ours)]
    headed = [client.head_object(Bucket=bucket.name, Key="k")["LastModified"] for client in (users, ours)]
    assert listed[0] == listed[1] and headed[0] == headed[1]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in [*listed, *headed])
    assert s3.parse_time("2026-12-03T18:18:18.000Z") == datetime(2026, 12, 3, 18, 18, 18, tzinfo=timezone.utc)
    for value in ("2026-12-03T18:18:18.250Z", "2026-12-03T18:18:18", "Thu, 03 Dec 2026 18:18:18 GMT", "1764785898"):
        assert s3.parse_time(value) == parse_timestamp(value)
        assert (s3.parse_time(value).tzinfo is None) == (parse_timestamp(value).tzinfo is None)


def test_worker_copies_share_the_model_of_the_user_s_storage(bucket: Bucket) -> None:
    storage = make(bucket)
    workers = s3.WorkerStorages(storage=storage)
    loaders: list[Any] = []

    def work() -> None:
        loaders.append(workers.for_this_thread(storage).connection.meta.client._loader)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaders) == 3
    assert all(loader is storage.connection.meta.client._loader for loader in loaders)


def test_worker_copies_have_a_resource_each_over_one_client(bucket: Bucket) -> None:
    storage = make(bucket, client_config=Config(read_timeout=7, max_pool_connections=4))
    watched: list[Any] = []
    workers = s3.WorkerStorages(storage=storage, watch=watched.append)
    resources: list[Any] = []

    def work(n: int) -> None:
        resource = workers.for_this_thread(storage).connection  # S3Storage.connection is per thread
        resource.meta.client.put_object(Bucket=bucket.name, Key=f"k{n}", Body=b"x")
        resources.append(resource)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # boto3's resources are not thread-safe, its clients are: a resource per thread, over one client.
    assert len({id(resource) for resource in resources}) == 6
    assert len({id(resource.meta.client) for resource in resources}) == 1
    client = resources[0].meta.client
    assert watched == [client] and workers.client(storage) is client
    assert client is not storage.connection.meta.client
    # Its pool holds a connection for every worker, listing range and s3transfer thread at once.
    wanted = settings.threads + s3.RANGES_AT_ONCE + s3.TRANSFER_THREADS
    assert (client.meta.config.max_pool_connections, client.meta.config.read_timeout) == (wanted, 7)
    assert bucket.list_keys() == [f"k{n}" for n in range(6)]


def test_user_provided_tells_the_options_a_config_was_given() -> None:
    assert s3.user_provided(Config(read_timeout=5, retries={"mode": "standard"})) == {"read_timeout", "retries"}
    assert s3.user_provided(Config()) == set()
    merged = s3.deploy_config(Config(read_timeout=5))
    assert (merged.read_timeout, merged.connect_timeout) == (5, 5)


def test_the_listing_parser_gives_botocore_s_answer(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    generic = parsers.BaseXMLResponseParser._handle_structure
    objects_parsed_by_botocore: list[str] = []

    def spy(self: Any, shape: Any, node: Any) -> Any:
        if shape.name == "Object":
            objects_parsed_by_botocore.append(self.__class__.__name__)
        return generic(self, shape, node)

    monkeypatch.setattr(parsers.BaseXMLResponseParser, "_handle_structure", spy)
    storage = make(bucket)
    users = storage.connection.meta.client
    for key in ("a.css", "dir/b &amp; c.js", "é/ü.txt", "empty"):
        users.put_object(Bucket=bucket.name, Key=key, Body=b"" if key == "empty" else key.encode())
    copied = copy.copy(storage)
    s3.connect(copied, model_of=users)
    ours = copied.connection.meta.client
    assert isinstance(ours._endpoint._response_parser_factory, s3.ParserFactory)

    for options in ({}, {"MaxKeys": 2}, {"FetchOwner": True}):
        mine, theirs = (client.list_objects_v2(Bucket=bucket.name, **options) for client in (ours, users))
        assert mine["Contents"] == theirs["Contents"] and len(mine["Contents"]) == options.get("MaxKeys", 4)
        assert (mine["IsTruncated"], mine.get("NextContinuationToken")) == (
            theirs["IsTruncated"],
            theirs.get("NextContinuationToken"),
        )
    # The objects with an owner took botocore's way; the plain ones did not.
    assert objects_parsed_by_botocore.count("ListingParser") == 4
    assert objects_parsed_by_botocore.count("RestXMLParser") == 4 + 2 + 4
    assert "Owner" in ours.list_objects_v2(Bucket=bucket.name, FetchOwner=True)["Contents"][0]
    with pytest.raises(ClientError):
        ours.list_objects_v2(Bucket=bucket.name + "-missing")


def test_a_listing_page_is_parsed_once_and_s3_errors_in_a_200_are_still_found(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make(bucket)
    users = storage.connection.meta.client
    for i in range(3):
        users.put_object(Bucket=bucket.name, Key=f"k{i}", Body=b"x")
    copied = copy.copy(storage)
    s3.connect(copied, model_of=users)
    ours = copied.connection.meta.client
    checked: list[bytes] = []
    stock_check = handlers._looks_like_special_case_error

    def counting_check(status_code: int, body: bytes) -> bool:
        checked.append(body)
        return stock_check(status_code, body)

    monkeypatch.setattr(handlers, "_looks_like_special_case_error", counting_check)

    assert [o["Key"] for o in ours.list_objects_v2(Bucket=bucket.name)["Contents"]] == ["k0", "k1", "k2"]
    assert checked == []  # botocore's client parses the same page twice:
    users.list_objects_v2(Bucket=bucket.name)
    assert len(checked) == 1 and checked[0].rstrip().endswith(b"</ListBucketResult>")
    ours.head_object(Bucket=bucket.name, Key="k0")  # other answers still take botocore's check
    assert len(checked) == 2

    page = checked[0]
    operation = ours.meta.service_model.operation_model("ListObjectsV2")
    for body, status in (
        (page, 200),
        (page[: len(page) // 2], 500),  # cut short: retried as botocore retries it
        (b'<?xml version="1.0"?>\n<Error><Code>InternalError</Code><Message>x</Message></Error>', 500),
    ):
        answer = {"status_code": 200, "body": body, "headers": {}}
        ours.meta.events.emit(
            "before-parse.s3.ListObjectsV2",
            operation_model=operation,
            response_dict=answer,
            customized_response_dict={},
        )
        assert answer["status_code"] == status, body
