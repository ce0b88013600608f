"""The floor: the least any tool must do to deploy a tree, measured in the same run.

List the bucket (one LIST per 1,000 keys), read and md5 every local file, and
PUT only the files whose ETag or size differ, through 20 workers; with ``--prune``,
then delete the keys the tree lacks (one DeleteObjects per 1,000). With
``--post-process`` the tree is first post-processed locally by Django's
ManifestStaticFilesStorage, the work a manifest deploy cannot avoid.
``--hash-only`` reads and md5s the files and touches no network. ``--list-only`` lists the bucket and
nothing else, one LIST after another: the sequential floor of a listing.

    python -m benchmarks.floor --root TREE [--bucket B --endpoint URL] [--post-process] [--prune]
                               [--hash-only | --list-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MIB = 1 << 20
THRESHOLD = PART = 8 * MIB  # boto3's TransferConfig defaults


def etag_of(path: Path) -> tuple[str, int]:
    """What S3 reports for this file uploaded with boto3's defaults: single-part md5 or multipart ETag."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(PART):
            whole.update(block)
            parts.append(hashlib.md5(block, usedforsecurity=False).digest())
            size += len(block)
    if size < THRESHOLD:
        return whole.hexdigest(), size
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}", size


def walk(root: Path) -> list[str]:
    return [
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/") for d, _, files in os.walk(root) for f in files
    ]


def post_process(root: Path, out: Path) -> None:
    from django.conf import settings

    settings.configure(
        USE_TZ=True,
        SECRET_KEY="collectfast-bench",
        INSTALLED_APPS=["django.contrib.staticfiles"],
        STATIC_URL="/static/",
        STATIC_ROOT=str(out),
        STATICFILES_DIRS=[str(root)],
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
        },
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)


def sync(root: Path, files: list[str], bucket: str, endpoint: str, threads: int, prune: bool = False) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    config = Config(max_pool_connections=threads)
    client = boto3.client("s3", endpoint_url=endpoint, config=config)
    remote = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            remote[obj["Key"]] = (obj["ETag"].strip('"'), int(obj["Size"]))
    transfer = TransferConfig(use_threads=False)
    local = threading.local()
    uploaded = []

    def one(rel: str) -> None:
        known = remote.get(rel)
        if known is not None and known == etag_of(root / rel):
            return
        own = getattr(local, "client", None)
        if own is None:
            own = local.client = boto3.client("s3", endpoint_url=endpoint, config=config)
        content_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        own.upload_file(str(root / rel), bucket, rel, ExtraArgs={"ContentType": content_type}, Config=transfer)
        uploaded.append(rel)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, files))
    stale = sorted(set(remote) - set(files)) if prune else []
    for start in range(0, len(stale), 1000):
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return {"listed": len(remote), "uploaded": len(uploaded), "deleted": len(stale)}


def list_sequentially(bucket: str, endpoint: str) -> dict[str, tuple[str, int]]:
    """The sequential listing floor: one LIST per 1,000 keys, back to back."""
    import boto3

    remote = {}
    client = boto3.client("s3", endpoint_url=endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            remote[obj["Key"]] = (obj["ETag"].strip('"'), int(obj["Size"]))
    return remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bucket")
    parser.add_argument("--endpoint")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--post-process", action="store_true")
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("--hash-only", action="store_true")
    parser.add_argument("--list-only", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as scratch:
        root = args.root
        if args.post_process:
            root = Path(scratch) / "out"
            post_process(args.root, root)
        files = walk(root)
        if args.list_only:
            result: dict[str, Any] = {"listed": len(list_sequentially(args.bucket, args.endpoint))}
        elif args.hash_only:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(lambda rel: etag_of(root / rel), files))
            result = {"hashed": len(files)}
        else:
            result = sync(root, files, args.bucket, args.endpoint, args.threads, args.prune)
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
