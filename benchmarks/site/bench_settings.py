"""Django settings for every contender, configured by ``BENCH_*`` environment variables.

Kept importable by Django 4.2 (Collectfast 2.2.0's) up to the newest, and free of
any import of collectfast, so each contender's own package is the one that runs.
"""

from __future__ import annotations

import json
import os

_env = os.environ
APP = _env["BENCH_APP"]  # stock, collectfast, collectfast22 or collectfasta
STORAGE = _env.get("BENCH_STORAGE", "s3")  # s3, s3-manifest or local-manifest

SECRET_KEY = "collectfast-bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = {
    "stock": [],
    "collectfast": ["collectfast"],
    "collectfast22": ["collectfast"],
    "collectfasta": ["collectfasta"],
}[APP] + ["django.contrib.staticfiles"]
DATABASES: dict[str, dict[str, str]] = {}
STATIC_URL = "/static/"
STATIC_ROOT = _env.get("BENCH_STATIC_ROOT") or None
STATICFILES_DIRS = [_env["BENCH_STATIC_DIR"]]

_s3_options = {
    "bucket_name": _env.get("BENCH_BUCKET", ""),
    "endpoint_url": _env.get("BENCH_ENDPOINT", ""),
    "access_key": "collectfast-bench",
    "secret_key": "collectfast-bench-secret",
    "region_name": "us-east-1",
}
_staticfiles = {
    "s3": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options},
    "s3-manifest": {"BACKEND": "storages.backends.s3.S3ManifestStaticStorage", "OPTIONS": _s3_options},
    "local-manifest": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}[STORAGE]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": _staticfiles,
}

# The dedicated, thread-safe, non-expiring cache the packages' READMEs ask for; on a
# fresh CI runner its folder is empty ("cold"), kept between deploys it is "warm".
if _env.get("BENCH_CACHE_DIR"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": _env["BENCH_CACHE_DIR"],
            "TIMEOUT": None,
            "OPTIONS": {"MAX_ENTRIES": 10_000_000},
        }
    }

_threads = int(_env.get("BENCH_THREADS", "20"))
if APP in ("collectfast", "collectfast22"):
    COLLECTFAST_THREADS = _threads
if APP == "collectfasta":
    COLLECTFASTA_THREADS = _threads

# Contender-specific settings (strategy paths, modes), as JSON.
globals().update(json.loads(_env.get("BENCH_SETTINGS", "{}")))
