"""Strategies decide which files to upload. Built-ins keep Collectfast 2.2.0's dotted paths."""

from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage
from django.utils.module_loading import import_string

from collectfast.strategies.base import CachingHashStrategy, HashStrategy, Strategy
from collectfast.strategies.base import DisabledStrategy as DisabledStrategy

__all__ = ["CachingHashStrategy", "DisabledStrategy", "HashStrategy", "Strategy", "guess_strategy", "load_strategy"]

S3_STORAGE = "storages.backends.s3.S3Storage"
BOTO3_STRATEGY = "collectfast.strategies.boto3.Boto3Strategy"
GCS_STORAGE = "storages.backends.gcloud.GoogleCloudStorage"
GCLOUD_STRATEGY = "collectfast.strategies.gcloud.GoogleCloudStrategy"
FILESYSTEM_STRATEGY = "collectfast.strategies.filesystem.FileSystemStrategy"


def load_strategy(path: str) -> type[Strategy[Storage]]:
    """Import a strategy class, explaining what is wrong when it cannot be used."""
    try:
        strategy = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"COLLECTFAST_STRATEGY {path!r} could not be imported: {error}") from error
    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise ImproperlyConfigured(
            f"COLLECTFAST_STRATEGY {path!r} is not a subclass of collectfast.strategies.Strategy."
        )
    return strategy


def storage_is(storage: Storage, class_path: str) -> bool:
    """isinstance() against a class that is only imported if its module already is.

    Importing storages.backends.gcloud without google-cloud-storage raises
    ImproperlyConfigured; a storage of that class implies the module is loaded.
    """
    module, _, name = class_path.rpartition(".")
    storage_class = getattr(sys.modules.get(module), name, None)
    return isinstance(storage_class, type) and isinstance(storage, storage_class)


def guess_strategy(storage: Storage) -> str | None:
    """The dotted path of the built-in strategy for ``storage``, or None if there is none."""
    try:
        s3_storage = import_string(S3_STORAGE)
    except ImportError:
        s3_storage = None
    if s3_storage is not None and isinstance(storage, s3_storage):
        return BOTO3_STRATEGY
    if storage_is(storage, GCS_STORAGE):
        return GCLOUD_STRATEGY
    if isinstance(storage, FileSystemStorage):
        return FILESYSTEM_STRATEGY
    return None
