from __future__ import annotations

import os
import tempfile

SECRET_KEY = "collectfast-tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["collectfast", "django.contrib.staticfiles"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(tempfile.gettempdir(), "collectfast-tests-static-root")
STATICFILES_DIRS: list[str] = []
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "TIMEOUT": None}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
COLLECTFAST_THREADS = 4
