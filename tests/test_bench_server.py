"""The benchmark's S3 server answers listings as moto does, byte for byte, only cheaper (benchmarks/s3server.py)."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from tests.fixtures import make_client
from tests.s3server import S3Server

# The benchmarks are a tool of the checkout: neither the sdist nor tox's copy (tests against the wheel) has them.
bench_server = pytest.importorskip("benchmarks.s3server", reason="benchmarks/ is not here (an sdist or tox's copy)")
BenchS3Server = bench_server.BenchS3Server
RENDERED_HERE = bench_server.RENDERED_HERE

KEYS = [
    "a",
    "a b",
    "a&b<c>.css",
    "a/",
    "a/b/c",
    "q'\"x",
    "café.css",
    "z/日本語.js",
    "Zürich/ä.css",
    "~tilde",
    *(f"dir{i % 3}/file {i:03d}.txt" for i in range(40)),
]
BUCKET = "listing-alike"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[S3Server, S3Server]]:
    moto, bench = S3Server(), BenchS3Server()
    try:
        for server in (moto, bench):
            client = make_client(server.endpoint_url)
            client.create_bucket(Bucket=BUCKET)
            for i, key in enumerate(KEYS):
                client.put_object(Bucket=BUCKET, Key=key, Body=b"x" * i)
            client.put_object(Bucket=BUCKET, Key="dir1/checked.txt", Body=b"sum", ChecksumAlgorithm="SHA256")
            client.put_object(Bucket=BUCKET, Key="a", Body=b"overwritten")  # a new object under a listed key
        yield moto, bench
    finally:
        moto.stop()
        bench.stop()


def page(server: S3Server, **query: str) -> str:
    url = f"{server.endpoint_url}/{BUCKET}?{urllib.parse.urlencode({'list-type': '2', **query})}"
    with urllib.request.urlopen(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/xml"
        # Rendered by the benchmark's own code wherever it can be, never by moto's (which it must equal).
        plain = "delimiter" not in query and isinstance(server, BenchS3Server)
        assert (response.headers.get(RENDERED_HERE) == "plain") == plain
        body = response.read().decode()
    # The two servers stored the objects at different times.
    return re.sub(r"<LastModified>[^<]*</LastModified>", "<LastModified/>", body)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"max-keys": "7"},
        {"max-keys": "7", "start-after": "a b"},
        {"max-keys": "5", "prefix": "dir1/"},
        {"prefix": "dir1/", "start-after": "dir1/file 010.txt"},
        {"prefix": "nothing/"},
        {"max-keys": "0"},
        {"encoding-type": "url", "prefix": "Zürich/", "start-after": "Zürich/"},  # as botocore asks
        {"encoding-type": "url", "max-keys": "9", "start-after": "a&b<c>.css"},
        {"delimiter": "/"},  # moto's own code
    ],
)
def test_a_page_is_moto_s_page(servers: tuple[S3Server, S3Server], query: dict[str, str]) -> None:
    moto, bench = servers
    assert page(bench, **query) == page(moto, **query)


def test_every_page_of_a_paginated_listing_is_moto_s(servers: tuple[S3Server, S3Server]) -> None:
    moto, bench = servers
    token: str | None = None
    pages = 0
    while True:
        query = {"max-keys": "6", "encoding-type": "url", **({"continuation-token": token} if token else {})}
        mine, theirs = page(bench, **query), page(moto, **query)
        assert mine == theirs
        pages += 1
        found = re.search(r"<NextContinuationToken>([^<]*)<", mine)
        if found is None:
            break
        token = found.group(1)
    assert pages == -(-(len(set(KEYS)) + 1) // 6)
