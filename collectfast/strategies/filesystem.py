"""Strategies for a local ``STATIC_ROOT`` (``FileSystemStorage``); the I/O is in collectfast.backends.filesystem."""

from __future__ import annotations

import os
from typing import cast

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.backends.filesystem import replace_file
from collectfast.strategies.base import CachingHashStrategy, HashStrategy

__all__ = ["CachingFileSystemStrategy", "FileSystemStrategy", "replace_file"]


class FileSystemStrategy(HashStrategy[FileSystemStorage]):
    """Compare each file's md5 with the copy already in ``STATIC_ROOT``."""

    # Both copies are on local disks.
    decides_locally = True

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, FileSystemStorage)

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        return self.is_link(prefixed_path) or super().should_copy_file(path, prefixed_path, local_storage)

    def is_link(self, prefixed_path: str) -> bool:
        """A symlink left by ``--link``: it hashes as its target, but stock replaces it with a file."""
        return os.path.islink(self.remote_storage.path(prefixed_path))

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        try:
            return self.get_local_file_hash(prefixed_path, self.remote_storage)
        except FileNotFoundError:
            return None

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        replace_file(path, prefixed_path, local_storage, cast(FileSystemStorage, remote_storage))


class CachingFileSystemStrategy(CachingHashStrategy[FileSystemStorage], FileSystemStrategy):
    """FileSystemStrategy that remembers the destination's md5s in ``COLLECTFAST_CACHE``."""

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        # Before the cache: it may hold the md5 of the file a --link run replaced with a link.
        return self.is_link(prefixed_path) or super().should_copy_file(path, prefixed_path, local_storage)
