"""The local S3-compatible server (the tests' own, with a per-request delay) and bucket chores."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.config import Config

from benchmarks.s3server import BenchS3Server
from tests import fixtures

ACCESS_KEY = "collectfast-bench"
SECRET_KEY = "collectfast-bench-secret"
REGION = "us-east-1"

_bucket_numbers = itertools.count(1)


class Server:
    """The tests' S3 server, listing at a real S3's cost (benchmarks.s3server); slowed while a contender is timed."""

    def __init__(self, delay_ms: float) -> None:
        self.delay_ms = delay_ms
        self.s3 = BenchS3Server(delay_ms=0)
        self.endpoint_url = self.s3.endpoint_url
        self.client = make_client(self.endpoint_url)

    @contextmanager
    def timed(self) -> Iterator[None]:
        self.s3.reset()
        self.s3.configure(delay_ms=self.delay_ms)
        try:
            yield
        finally:
            self.s3.configure(delay_ms=0)

    def traffic(self) -> tuple[dict[str, int], int]:
        return self.s3.counts(), self.s3.bytes_in()

    def new_bucket(self, label: str) -> str:
        name = f"bench-{next(_bucket_numbers)}-{label}"[:63].rstrip("-").lower()
        self.client.create_bucket(Bucket=name)
        return name

    def drop_bucket(self, name: str) -> None:
        # moto keeps objects in memory: free them before the next scenario.
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=name)
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys})
        uploads = self.client.list_multipart_uploads(Bucket=name).get("Uploads", ())
        for upload in uploads:
            self.client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        self.client.delete_bucket(Bucket=name)

    def stop(self) -> None:
        self.s3.stop()


def make_client(endpoint_url: str) -> Any:
    # The tests' client, with a pool as large as the benchmark's thread count.
    return fixtures.make_client(endpoint_url, Config(max_pool_connections=20))


def child_env(endpoint_url: str) -> dict[str, str]:
    """The environment every contender runs with: no real AWS configuration can leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BENCH_", "DJANGO_", "PYTHON"))}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_ENDPOINT_URL=endpoint_url,
    )
    return env
