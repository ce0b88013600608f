"""Strategies decide which files to upload. Built-ins keep Collectfast 2.2.0's dotted paths."""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage
from django.utils.module_loading import import_string

from collectfast.strategies.base import CachingHashStrategy, HashStrategy, Strategy
from collectfast.strategies.base import DisabledStrategy as DisabledStrategy

__all__ = [
    "CachingHashStrategy",
    "DisabledStrategy",
    "HashStrategy",
    "MissingExtra",
    "Strategy",
    "guess_strategy",
    "load_strategy",
    "missing_extra",
]

S3_STORAGE = "storages.backends.s3.S3Storage"
BOTO3_STRATEGY = "collectfast.strategies.boto3.Boto3Strategy"
GCS_STORAGE = "storages.backends.gcloud.GoogleCloudStorage"
GCLOUD_STRATEGY = "collectfast.strategies.gcloud.GoogleCloudStrategy"
AZURE_STORAGE = "storages.backends.azure_storage.AzureStorage"
AZURE_STRATEGY = "collectfast.strategies.azure.AzureStrategy"
FILESYSTEM_STRATEGY = "collectfast.strategies.filesystem.FileSystemStrategy"

# The pip extra that provides each module needing an optional package.
_EXTRAS = {
    "collectfast.strategies.boto3": "s3",
    "collectfast.strategies.manifest": "s3",
    "collectfast.strategies.gcloud": "gcloud",
    "storages.backends.s3": "s3",
    "storages.backends.s3boto3": "s3",
    "storages.backends.gcloud": "gcloud",
    "collectfast.strategies.azure": "azure",
    "storages.backends.azure_storage": "azure",
}


class MissingExtra(ImproperlyConfigured):
    """A class that cannot be imported because one of collectfast's extras is not installed."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra

    @property
    def install(self) -> str:
        return f'python -m pip install "collectfast[{self.extra}]"'


def missing_extra(path: str, error: BaseException) -> str | None:
    """The extra whose absence made importing ``path`` fail with ``error``, or None if that is not the cause."""
    # django-storages re-raises a missing boto3 or google-cloud-storage as ImproperlyConfigured.
    if isinstance(error, ImproperlyConfigured):
        error = error.__cause__ or error.__context__ or error
    if not isinstance(error, ModuleNotFoundError) or (error.name or "collectfast").startswith("collectfast"):
        return None
    return _EXTRAS.get(path.rpartition(".")[0])


def dotted_name(value: str | type[Any]) -> str:
    return value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}"


def load_strategy(path: str | type[Any]) -> type[Strategy[Storage]]:
    """The strategy class of ``COLLECTFAST_STRATEGY`` (a class or its dotted path), explaining what is wrong."""
    name = dotted_name(path)
    strategy = path
    if isinstance(path, str):
        try:
            strategy = import_string(path)
        except (ImportError, ImproperlyConfigured) as error:
            extra = missing_extra(path, error)
            if extra is not None:
                message = f"COLLECTFAST_STRATEGY {name!r} needs collectfast's {extra!r} extra: {error}"
                raise MissingExtra(message, extra) from error
            raise ImproperlyConfigured(f"COLLECTFAST_STRATEGY {name!r} could not be imported: {error}") from error
    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise ImproperlyConfigured(
            f"COLLECTFAST_STRATEGY {name!r} is not a subclass of collectfast.strategies.Strategy."
        )
    return strategy


def class_is(storage_class: type[Any], class_path: str) -> bool:
    """issubclass() against a class that is only imported if its module already is.

    Importing storages.backends.s3 or .gcloud without boto3 or google-cloud-storage
    raises ImproperlyConfigured; a storage class deriving from one implies the module is loaded.
    """
    module, _, name = class_path.rpartition(".")
    target = getattr(sys.modules.get(module), name, None)
    return isinstance(target, type) and issubclass(storage_class, target)


def storage_is(storage: Storage, class_path: str) -> bool:
    """isinstance() against a class that is only imported if its module already is (see class_is)."""
    return class_is(storage.__class__, class_path)


def guess_strategy(storage: Storage | type[Storage]) -> str | None:
    """The dotted path of the built-in strategy for a storage or storage class, or None if there is none."""
    storage_class = storage if isinstance(storage, type) else storage.__class__
    if class_is(storage_class, S3_STORAGE):
        return BOTO3_STRATEGY
    if class_is(storage_class, GCS_STORAGE):
        return GCLOUD_STRATEGY
    if class_is(storage_class, AZURE_STORAGE):
        return AZURE_STRATEGY
    if issubclass(storage_class, FileSystemStorage):
        return FILESYSTEM_STRATEGY
    return None
