"""Strategies for a destination on the local file system (``FileSystemStorage``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import cast

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.strategies.base import CachingHashStrategy, HashStrategy


def replace_file(path: str, prefixed_path: str, local_storage: Storage, remote_storage: FileSystemStorage) -> None:
    """Copy a local file to ``prefixed_path``, replacing any file already there atomically.

    Not save() over an existing file: it would pick another name. The replacement
    is never missing or partial, as it would be between a delete and a save.
    """
    if not remote_storage.exists(prefixed_path):
        with local_storage.open(path) as source:
            remote_storage.save(prefixed_path, source)
        return
    target = remote_storage.path(prefixed_path)
    mode = os.stat(target).st_mode & 0o7777
    with (
        local_storage.open(path, "rb") as source,
        tempfile.NamedTemporaryFile(dir=os.path.dirname(target), delete=False) as temporary,
    ):
        shutil.copyfileobj(source, temporary)
    os.chmod(temporary.name, mode)
    os.replace(temporary.name, target)


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

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        replace_file(path, prefixed_path, local_storage, cast(FileSystemStorage, remote_storage))


class CachingFileSystemStrategy(CachingHashStrategy[FileSystemStorage], FileSystemStrategy):
    """FileSystemStrategy that remembers the destination's md5s in ``COLLECTFAST_CACHE``."""
