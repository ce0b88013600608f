"""The file-system backend: a local ``STATIC_ROOT`` (``FileSystemStorage``), where I/O is the file system's.

Listings give sizes and times but no checksums (that would read every file):
the file-system strategies hash what they compare instead. Writes replace a
file atomically; the small-object writes honour their precondition under a
file lock, so two deploys on one machine cannot both replace the same version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from typing import IO, Any, cast

from django.core.files import locks
from django.core.files.storage import FileSystemStorage, Storage

from collectfast.backends.base import Backend, Body, Page, RemoteObject, Unavailable, WriteConflict, sized
from collectfast.hashing import file_md5


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


def _version(stat: os.stat_result) -> str:
    """A token that changes whenever the file is replaced or rewritten."""
    return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"


class FileSystemBackend(Backend[FileSystemStorage]):
    """A folder on this machine; keys are paths relative to its root, with forward slashes."""

    family = "filesystem"

    def __init__(self, storage: FileSystemStorage) -> None:
        super().__init__(storage)
        self.root = os.path.abspath(storage.location)

    @property
    def prefix(self) -> str:
        return ""  # the location is the root folder itself, not a prefix of keys

    @property
    def where(self) -> str:
        return self.root + os.sep

    def url(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def key(self, name: str) -> str:
        return os.path.relpath(self.storage.path(name), self.root).replace(os.sep, "/")

    def list_pages(self, names: Collection[str] = ()) -> Iterator[Page]:
        for folder, _, files in os.walk(self.root):
            page: Page = []
            for file in files:
                path = os.path.join(folder, file)
                stat = os.lstat(path)
                key = os.path.relpath(path, self.root).replace(os.sep, "/")
                page.append(RemoteObject(key, "", stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc)))
            yield page

    def stat(self, key: str) -> RemoteObject | None:
        try:
            stat = os.stat(self.url(key))
            checksum = file_md5(self.storage, key)
        except FileNotFoundError:
            return None
        return RemoteObject(key, checksum, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def write_options(self, key: str) -> dict[str, Any]:
        mode = self.storage.file_permissions_mode
        return {} if mode is None else {"mode": oct(mode)}

    def predict(self, path: str, local_storage: Storage, key: str) -> tuple[str, int] | None:
        return file_md5(local_storage, path), local_storage.size(path)

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, worker: Storage
    ) -> tuple[str, RemoteObject | None]:
        replace_file(path, prefixed_path, local_storage, cast(FileSystemStorage, worker))
        return prefixed_path, None

    def delete(self, keys: list[str]) -> dict[str, str]:
        failed = {}
        for key in keys:
            try:
                os.remove(self.url(key))
            except FileNotFoundError:
                pass
            except OSError as error:
                failed[key] = f"{type(error).__name__}: {error.strerror or error}"
        return failed

    def read_object(self, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self.url(key), "rb") as stream:
                return stream.read(), _version(os.fstat(stream.fileno()))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise Unavailable(self.explain(f"Reading {self.url(key)}", error)) from error

    def write_object(self, key: str, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        target = self.url(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if replaces is None or not conditional:
                return self._create(target, data, exclusive=conditional)
            return self._replace(target, data, replaces)
        except FileExistsError as error:
            raise WriteConflict(f"{target} exists") from error
        except FileNotFoundError as error:
            raise WriteConflict(f"{target} was deleted") from error
        except OSError as error:
            raise Unavailable(self.explain(f"Writing {target}", error)) from error

    def _create(self, target: str, data: Body, *, exclusive: bool) -> str:
        source = sized(data)[0]
        if not exclusive:
            _write_over(target, source, 0o644)
            return _version(os.stat(target))
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "wb") as stream:
            shutil.copyfileobj(source, stream)
            stream.flush()
            return _version(os.fstat(stream.fileno()))

    def _replace(self, target: str, data: Body, replaces: str) -> str:
        # Writers lock the file they are about to replace, then check that it is still the one
        # at the path: a writer that waited for the lock finds a newer file there and refuses.
        with open(target, "rb") as current:
            locks.lock(current, locks.LOCK_EX)
            try:
                if _version(os.stat(target)) != replaces:
                    raise WriteConflict(f"{target} changed")
                _write_over(target, sized(data)[0], os.fstat(current.fileno()).st_mode & 0o7777)
                return _version(os.stat(target))
            finally:
                locks.unlock(current)

    def explain(self, action: str, error: Exception) -> str:
        return f"{action} failed: {type(error).__name__}: {error}"
