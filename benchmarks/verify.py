"""After a run: does every local file's object hold the same bytes? What is missing, what is stale?

Single-part objects are checked by ETag, which the server computes as the md5
of the bytes it stored; multipart objects (ETag "...-N") are downloaded and
hashed. A gzip Content-Encoding would be undone first (no contender gzips here).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
MANIFEST_JSON = "staticfiles.json"


@dataclass
class Correctness:
    objects: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "mismatched": len(self.mismatched),
            "missing": len(self.missing),
            "stale": len(self.stale),
            "extra": len(self.extra),
            "examples": {
                "mismatched": self.mismatched[:5],
                "missing": self.missing[:5],
                "stale": self.stale[:5],
                "extra": self.extra[:5],
            },
        }


_md5_cache: dict[tuple[int, int, int, int], str] = {}


def local_md5(path: Path) -> str:
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _md5_cache.get(key)
    if cached is None:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        cached = _md5_cache[key] = digest.hexdigest()
    return cached


def list_bucket(client: Any, bucket: str) -> dict[str, str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"]: obj["ETag"].strip('"') for page in pages for obj in page.get("Contents", ())}


def _remote_body(client: Any, bucket: str, key: str) -> bytes:
    response = client.get_object(Bucket=bucket, Key=key)
    body: bytes = response["Body"].read()
    if response.get("ContentEncoding") == "gzip":
        body = gzip.decompress(body)
    return body


def _remote_md5(client: Any, bucket: str, key: str, etag: str) -> str:
    if _PLAIN_MD5.match(etag):
        return etag
    return hashlib.md5(_remote_body(client, bucket, key), usedforsecurity=False).hexdigest()


def _same_manifest(client: Any, bucket: str, local: Path) -> bool:
    # Django writes the same mapping, but its key order follows the order files were processed in.
    remote = json.loads(_remote_body(client, bucket, MANIFEST_JSON))
    return bool(remote.get("paths") == json.loads(local.read_bytes()).get("paths"))


def check(client: Any, bucket: str, root: Path, files: Iterable[str], known_paths: set[str]) -> Correctness:
    """Compare the bucket with ``files`` under ``root``; keys in ``known_paths`` but not in files are stale."""
    remote = list_bucket(client, bucket)
    result = Correctness(objects=len(remote))
    expected = set()
    for rel in files:
        expected.add(rel)
        etag = remote.get(rel)
        if etag is None:
            result.missing.append(rel)
            continue
        if rel == MANIFEST_JSON:
            same = _same_manifest(client, bucket, root / rel)
        else:
            same = _remote_md5(client, bucket, rel, etag) == local_md5(root / rel)
        if not same:
            result.mismatched.append(rel)
    for key in sorted(set(remote) - expected):
        (result.stale if key in known_paths else result.extra).append(key)
    return result


def tree_files(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/") for d, _, fs in os.walk(root) for f in fs
    )
