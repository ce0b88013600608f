"""Strategies for django-storages' ``GoogleCloudStorage``: policy only, all I/O in collectfast.backends.gcs."""

from __future__ import annotations

from django.core.files.storage import Storage
from storages.backends.gcloud import GoogleCloudStorage
from storages.utils import clean_name

from collectfast.backends.gcs import GCSBackend, worker_copy
from collectfast.manifest import Stored
from collectfast.strategies.listing import ListingStrategy
from collectfast.strategies.manifest_base import ManifestStrategy

__all__ = ["GoogleCloudManifestStrategy", "GoogleCloudStrategy", "gcs_error_message", "worker_copy"]


def gcs_error_message(storage: GoogleCloudStorage, action: str, error: Exception) -> str:
    """Explain a failed request against the bucket, naming the cause and the fix."""
    return GCSBackend(storage).explain(action, error)


class GoogleCloudStrategy(ListingStrategy[GoogleCloudStorage]):
    """Learn remote md5s and sizes in bulk (one list request per 1,000 objects) and upload what differs.

    A file is skipped only when the md5 and size of the bytes django-storages
    would upload (gzipped by its own compressor where it gzips) equal the
    listed ones. Objects without an md5 (composite objects, customer-supplied
    encryption keys) are always uploaded.
    """

    backend_class = GCSBackend
    backend: GCSBackend
    delete_not_found_exception = GCSBackend.not_found

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, GoogleCloudStorage)

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        entry = self._remote.get(self.remote_key(prefixed_path))
        return entry[0] if entry is not None and entry[0] else None


class GoogleCloudManifestStrategy(ManifestStrategy[GoogleCloudStorage]):
    """The deploy manifest (docs/manifest.rst) on Google Cloud Storage.

    Written with ``ifGenerationMatch`` (0: only if absent), the generation being
    the manifest's version token; entries hold each object's md5 and size as GCS reports them.
    """

    backend_class = GCSBackend
    backend: GCSBackend
    delete_not_found_exception = GCSBackend.not_found

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, GoogleCloudStorage)

    def name_for(self, prefixed_path: str) -> str:
        return str(clean_name(prefixed_path))

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage
    ) -> tuple[str, Stored | None]:
        saved, stored = super().upload(path, prefixed_path, local_storage, remote_storage)
        # Without an md5 nothing could later prove the object unchanged: leave it unrecorded.
        return saved, stored if stored is not None and stored.etag else None
