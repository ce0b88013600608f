"""The listing strategy for django-storages' ``S3Storage``: compare predicted ETags with listed ones."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import Storage
from storages.backends.s3 import S3Storage

from collectfast.backends.s3 import S3Backend, is_plain_md5
from collectfast.strategies.listing import ListingStrategy

__all__ = ["Boto3Strategy"]


class Boto3Strategy(ListingStrategy[S3Storage]):
    """Learn remote ETags and sizes in bulk (one LIST per 1,000 keys) and upload what differs.

    A file is skipped only when the ETag and size S3 would give an upload of its
    bytes (gzipped as django-storages would, split into parts as its transfer
    configuration would) equal the listed ones. Listings may be kept in
    ``COLLECTFAST_CACHE`` so that a warm redeploy makes no request at all.
    """

    backend_class = S3Backend
    backend: S3Backend
    delete_not_found_exception = S3Backend.not_found_errors
    applies_object_parameters = True

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, S3Storage)

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        entry = self._remote.get(self.remote_key(prefixed_path))
        if entry is None or not is_plain_md5(entry[0]):
            return None
        return entry[0]

    @property
    def workers(self) -> Any:
        """The backend's worker storages (Collectfast 3.0 attribute)."""
        return self.backend.workers
