"""A copy of a remote hashing storage whose file I/O happens in a local directory.

Django's ``HashedFilesMixin.post_process`` runs unchanged on it, so hashed names,
rewritten contents and ``staticfiles.json`` are exactly the ones stock writes to the
bucket, but every read and write stays on this machine: files written during
post-processing go to the directory, and the collected originals are read from their
source storages, where stock reads back the copies it just uploaded.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from django.contrib.staticfiles.storage import HashedFilesMixin, ManifestFilesMixin
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from storages.utils import clean_name

from collectfast.backends import Backend, backend_class_for


@dataclass
class _Staging:
    files: FileSystemStorage
    originals: dict[str, tuple[Storage, str]]
    remote: Storage
    #: The remote storage's backend: where its keys are (collectfast.backends).
    backend: Backend[Any]
    deleted: set[str] = field(default_factory=set)

    def has_file(self, name: str) -> bool:
        # Files only: the remote has no directories, so stock never finds one.
        return os.path.isfile(self.files.path(name))

    def original(self, name: str) -> tuple[Storage, str] | None:
        return None if name in self.deleted else self.originals.get(name)

    def names(self) -> list[str]:
        root = str(self.files.location)
        return sorted(
            os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            for folder, _, names in os.walk(root)
            for name in names
        )


class StagedStorage(HashedFilesMixin):
    """Mixed in before the user's storage class; see :func:`stage`."""

    _staging: _Staging

    def staged_names(self) -> list[str]:
        """Every file post-processing left in place, as names in the storage."""
        return self._staging.names()

    @property
    def staged_files(self) -> FileSystemStorage:
        return self._staging.files

    def _save(self, name: str, content: File[Any]) -> str:
        key = self.stored_name_of(name)
        self._staging.deleted.discard(key)
        self._staging.files.save(key, content)
        return cast(str, clean_name(name))  # what S3Storage._save returns

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        name = self.stored_name_of(name)
        if self._staging.has_file(name):
            return self._staging.files.open(name, mode)
        storage, path = self._original(name)
        return storage.open(path, mode)

    def exists(self, name: str) -> bool:
        name = self.stored_name_of(name)
        return self._staging.has_file(name) or self._staging.original(name) is not None

    def delete(self, name: str) -> None:
        name = self.stored_name_of(name)
        self._staging.files.delete(name)
        self._staging.deleted.add(name)

    def size(self, name: str) -> int:
        name = self.stored_name_of(name)
        if self._staging.has_file(name):
            return self._staging.files.size(name)
        storage, path = self._original(name)
        return storage.size(path)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        prefix = self.stored_name_of(path).strip("/")
        prefix = f"{prefix}/" if prefix else ""
        live = {name for name in self._staging.originals if name not in self._staging.deleted}
        directories: set[str] = set()
        files: set[str] = set()
        for name in live.union(self._staging.names()):
            if name.startswith(prefix):
                head, separator, _ = name[len(prefix) :].partition("/")
                (directories if separator else files).add(head)
        return sorted(directories), sorted(files)

    def hashed_name(self, name: str, content: File[Any] | None = None, filename: str | None = None) -> str:
        if content is None:
            target = (filename and urlsplit(unquote(filename)).path.strip()) or urlsplit(unquote(name)).path.strip()
            remote = self._staging.remote
            # A reference to a file that was not collected: stock finds it in the bucket
            # if an earlier deploy left it there, and hashes the remote copy.
            if not self.exists(target) and remote.exists(target):
                with remote.open(target) as remote_file:
                    return super().hashed_name(name, remote_file, filename)
        return super().hashed_name(name, content, filename)

    def stored_name_of(self, name: str) -> str:
        """``name`` as the bucket would store it, relative to the location; the storage's own error if outside."""
        backend = self._staging.backend
        return backend.key(name).removeprefix(backend.prefix)

    def _original(self, name: str) -> tuple[Storage, str]:
        original = self._staging.original(name)
        if original is None:
            raise FileNotFoundError(f"File does not exist: {name}")
        return original


_classes: dict[type[Storage], type[StagedStorage]] = {}


def _staged_class(storage_class: type[Storage]) -> type[StagedStorage]:
    if storage_class not in _classes:
        # The user's class names, so that Django's error messages read exactly as with stock.
        namespace = {"__module__": storage_class.__module__, "__qualname__": storage_class.__qualname__}
        _classes[storage_class] = type(storage_class.__name__, (StagedStorage, storage_class), namespace)
    return _classes[storage_class]


def stage(storage: Storage, originals: Mapping[str, tuple[Storage, str]], directory: str) -> StagedStorage:
    """A copy of ``storage`` (same options and state) that reads and writes under ``directory``.

    ``originals`` is what collectstatic found, ``{prefixed_path: (source_storage, path)}``;
    ``storage`` itself is only read from, for files that were not collected.
    """
    staged: Any = copy.copy(storage)  # S3Storage drops its connections when copied
    staged.__class__ = _staged_class(type(storage))
    result: StagedStorage = staged
    backend_class = backend_class_for(storage)
    if backend_class is None:
        raise ValueError(f"No backend serves {type(storage).__qualname__}: it cannot be staged.")
    files = FileSystemStorage(location=directory, allow_overwrite=True)
    result._staging = _Staging(files=files, originals={}, remote=storage, backend=backend_class(storage))
    result._staging.originals = {result.stored_name_of(name): source for name, source in originals.items()}
    result.hashed_files = dict(result.hashed_files)
    if isinstance(result, ManifestFilesMixin):
        result.manifest_storage = cast(Storage, result)
    return result
