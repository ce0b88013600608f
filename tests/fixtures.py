"""Fixtures: a real S3-compatible server over HTTP, a fresh bucket per test, a static tree."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command

from tests.s3server import S3Server

if TYPE_CHECKING:
    from botocore.config import Config

ACCESS_KEY = "collectfast-test"
SECRET_KEY = "collectfast-test-secret"
REGION = "us-east-1"

__all__ = [
    "_skip_moto_only",
    "Bucket",
    "Run",
    "StaticTree",
    "bucket",
    "collectstatic",
    "lists_for",
    "s3_server",
    "s3_settings",
    "static_tree",
]


def lists_for(n_files: int) -> int:
    return max(1, math.ceil(n_files / 1000))


def s3_server_name() -> str:
    """The S3 implementation the tests run against: COLLECTFAST_S3_SERVER, moto by default."""
    name = os.environ.get("COLLECTFAST_S3_SERVER") or "moto"
    if name not in ("moto", "localstack"):
        raise ValueError(f"COLLECTFAST_S3_SERVER={name!r}: expected moto or localstack")
    return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    if s3_server_name() == "localstack":
        # LocalStack's S3 behind a counting proxy, from its own virtualenv (make test-s3-compat).
        from tests.localstack_server import LocalStackServer

        server: S3Server = LocalStackServer()
    else:
        server = S3Server()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _skip_moto_only(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.moto_only("why")``: the test relies on moto's behaviour; skipped on another server."""
    marker = request.node.get_closest_marker("moto_only")
    if marker is not None and s3_server_name() != "moto":
        pytest.skip(f"moto only: {marker.args[0] if marker.args else 'relies on moto'}")


@dataclass
class Bucket:
    name: str
    server: S3Server
    client: Any

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object's bytes (reads them: call after taking request counts)."""
        return {key: self.client.get_object(Bucket=self.name, Key=key)["Body"].read() for key in self.list_keys(prefix)}

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))

    def etag(self, key: str) -> str:
        return str(self.client.head_object(Bucket=self.name, Key=key)["ETag"].strip('"'))

    def counts(self) -> dict[str, int]:
        return self.server.counts()


def make_client(endpoint_url: str, config: Config | None = None) -> Any:
    """A client of the test server; by default without botocore's retries, so requests count exactly."""
    # Imported here so that the core tests (no boto3 installed) can use the other fixtures.
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=config or Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    name = f"test-{uuid.uuid4().hex[:20]}"
    client = make_client(s3_server.endpoint_url)
    client.create_bucket(Bucket=name)
    s3_server.clear_faults()
    s3_server.reset()
    yield Bucket(name, s3_server, client)
    s3_server.clear_faults()


class StaticTree:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, path: str, content: bytes | str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def files(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.root).as_posix()): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def static_tree(tmp_path: Path, settings: Any) -> StaticTree:
    tree = StaticTree(tmp_path / "static")
    settings.STATICFILES_DIRS = [str(tree.root)]
    return tree


def s3_storage(bucket: Bucket, **options: Any) -> dict[str, Any]:
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket.name,
            "endpoint_url": bucket.server.endpoint_url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region_name": REGION,
            # Requests are counted exactly: botocore's own retries are tested separately.
            "client_config": Config(retries={"total_max_attempts": 1}),
            **options,
        },
    }


@pytest.fixture
def s3_settings(settings: Any, bucket: Bucket, static_tree: StaticTree) -> Any:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    return settings


@dataclass
class Run:
    stdout: str
    stderr: str


def collectstatic(*args: str, verbosity: int = 1, **options: Any) -> Run:
    stdout, stderr = StringIO(), StringIO()
    call_command(
        "collectstatic", *args, interactive=False, verbosity=verbosity, stdout=stdout, stderr=stderr, **options
    )
    return Run(stdout.getvalue(), stderr.getvalue())
