"""The strategies for django-storages' ``AzureStorage``: policy only, every request through :class:`AzureBackend`."""

from __future__ import annotations

from django.core.files.storage import Storage
from storages.backends.azure_storage import AzureStorage
from storages.utils import clean_name

from collectfast.backends.azure import AzureBackend
from collectfast.strategies.listing import ListingStrategy
from collectfast.strategies.manifest_base import ManifestStrategy

__all__ = ["AzureManifestStrategy", "AzureStrategy"]


class AzureStrategy(ListingStrategy[AzureStorage]):
    """Learn remote Content-MD5s and sizes in bulk (one List Blobs per 5,000 blobs) and upload what differs.

    A blob without a Content-MD5 (committed from blocks, over the SDK's
    single-put size) is always uploaded: nothing proves it unchanged.
    """

    backend_class = AzureBackend
    backend: AzureBackend
    delete_not_found_exception = AzureBackend.not_found

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, AzureStorage)

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        entry = self._remote.get(self.remote_key(prefixed_path))
        return entry[0] if entry is not None and entry[0] else None


class AzureManifestStrategy(ManifestStrategy[AzureStorage]):
    """The deploy manifest (docs/manifest.rst) on Azure: one GET decides a deploy, written with If-Match."""

    backend_class = AzureBackend
    backend: AzureBackend
    delete_not_found_exception = AzureBackend.not_found

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, AzureStorage)

    def name_for(self, prefixed_path: str) -> str:
        return str(clean_name(prefixed_path))
