"""Backends: one module per storage family, holding all of its I/O (see :mod:`collectfast.backends.base`).

To add a family, write ``collectfast/backends/<family>.py`` with a :class:`Backend`
subclass, name its storage class below, and compose it into the strategies
(``collectfast/strategies/<family>.py``); docs/contributing.rst walks through it.
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import Storage
from django.utils.module_loading import import_string

from collectfast.backends.base import Backend, ConditionsUnsupported, Page, RemoteObject, Unavailable, WriteConflict

__all__ = [
    "BACKENDS",
    "Backend",
    "ConditionsUnsupported",
    "Page",
    "RemoteObject",
    "Unavailable",
    "WriteConflict",
    "backend_class_for",
]

#: The storage class each backend serves (subclasses included), by dotted path, most specific first.
BACKENDS: dict[str, str] = {
    "storages.backends.s3.S3Storage": "collectfast.backends.s3.S3Backend",
    "storages.backends.gcloud.GoogleCloudStorage": "collectfast.backends.gcs.GCSBackend",
    "storages.backends.azure_storage.AzureStorage": "collectfast.backends.azure.AzureBackend",
}


def backend_class_for(storage: Storage | type[Storage]) -> type[Backend[Any]] | None:
    """The backend for a storage or storage class, None when no backend serves it.

    Only storage modules already imported are looked at: a storage deriving from
    one implies its module (and so its SDK) is loaded.
    """
    from collectfast.strategies import class_is

    storage_class = storage if isinstance(storage, type) else storage.__class__
    for storage_path, backend_path in BACKENDS.items():
        if class_is(storage_class, storage_path):
            return import_string(backend_path)  # type: ignore[no-any-return]
    return None
