"""A minimal project deploying its static files to S3 with collectfast.

The demo points it at a local S3-compatible server through the environment;
a real project puts its bucket and credentials here instead.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "collectfast-example"
DEBUG = False

INSTALLED_APPS = [
    "collectfast",  # before django.contrib.staticfiles, so collectstatic is collectfast's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("EXAMPLE_BUCKET", "example-static"),
            "endpoint_url": os.environ.get("EXAMPLE_S3_ENDPOINT"),
            "access_key": os.environ.get("EXAMPLE_ACCESS_KEY"),
            "secret_key": os.environ.get("EXAMPLE_SECRET_KEY"),
            "location": "static",
        },
    },
}
COLLECTFAST_THREADS = 10
