"""Strategies for a destination on the local file system (``FileSystemStorage``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import IO, cast

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.strategies.base import CachingHashStrategy, HashStrategy


def replace_file(path: str, prefixed_path: str, local_storage: Storage, remote_storage: FileSystemStorage) -> None:
    """Copy a local file to ``prefixed_path``, replacing any file already there atomically.

    Not save() over an existing file: it would pick another name. The replacement
    is never missing or partial, as it would be between a delete and a save.
    A symlink left by ``--link`` is deleted and saved over, as stock collectstatic
    does: the new file gets the storage's permissions, not its source's.
    """
    target = remote_storage.path(prefixed_path)
    if os.path.islink(target):
        os.unlink(target)
    if not remote_storage.exists(prefixed_path):
        with local_storage.open(path) as source:
            remote_storage.save(prefixed_path, source)
        return
    mode = os.stat(target).st_mode & 0o7777
    with local_storage.open(path, "rb") as source:
        _write_over(target, source, mode)


def _write_over(target: str, source: IO[bytes], mode: int) -> None:
    """Write ``source`` to a temporary file beside ``target``, then rename it over ``target``."""
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(target))
    try:
        with os.fdopen(descriptor, "wb") as stream:
            shutil.copyfileobj(source, stream)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        # Also on Ctrl-C: a failed copy must not leave a stray file in STATIC_ROOT.
        os.unlink(temporary)
        raise


class FileSystemStrategy(HashStrategy[FileSystemStorage]):
    """Compare each file's md5 with the copy already in ``STATIC_ROOT``."""

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
