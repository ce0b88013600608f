"""Untimed setup: put a tree into a bucket exactly as stock collectstatic's ``storage.save`` would, in parallel.

Stock collectstatic's first deploy leaves one object per file written by
django-storages' ``S3Storage.save`` (same content type, same multipart split).
This writes the same objects with 20 threads, so the serial stock row does not
spend minutes on setup before its timed redeploys.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.s3 import ACCESS_KEY, REGION, SECRET_KEY


def _configure_django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_TZ=True, SECRET_KEY="collectfast-bench", INSTALLED_APPS=[])


def upload_tree(endpoint_url: str, bucket: str, root: Path, files: list[str], threads: int = 20) -> None:
    _configure_django()
    from django.core.files import File
    from storages.backends.s3 import S3Storage

    storage = S3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region_name=REGION,
    )
    local = threading.local()

    def save(rel: str) -> None:
        own: Any = getattr(local, "storage", None)
        if own is None:
            # boto3 resources are not thread-safe; django-storages drops connections on copy.
            own = local.storage = copy.copy(storage)
        with open(root / rel, "rb") as handle:
            own.save(rel, File(handle, name=rel))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(save, files))
