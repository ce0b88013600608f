"""Strategies for a destination on the local file system (``FileSystemStorage``)."""

from __future__ import annotations

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.strategies.base import CachingHashStrategy, HashStrategy


class FileSystemStrategy(HashStrategy[FileSystemStorage]):
    """Compare each file's md5 with the copy already in ``STATIC_ROOT``."""

    @classmethod
    def fits(cls, storage: Storage) -> bool:
        return isinstance(storage, FileSystemStorage)

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        try:
            return self.get_local_file_hash(prefixed_path, self.remote_storage)
        except FileNotFoundError:
            return None


class CachingFileSystemStrategy(CachingHashStrategy[FileSystemStorage], FileSystemStrategy):
    """FileSystemStrategy that remembers the destination's md5s in ``COLLECTFAST_CACHE``."""
