"""Upload every file without asking the storage anything: fastest when nearly everything changed."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.backends import Backend, backend_class_for
from collectfast.strategies.base import Strategy
from collectfast.strategies.filesystem import replace_file


class UploadAllStrategy(Strategy[Storage]):
    """collectstupid's "stupid" strategy: no lookup, no manifest, every file uploaded through the pool.

    Works with any storage. Nothing is ever skipped, so it is also the
    strategy to use when the remote copy cannot be trusted at all.
    """

    def __init__(self, remote_storage: Storage) -> None:
        super().__init__(remote_storage)
        backend_class = backend_class_for(remote_storage)
        #: The storage family's backend, when there is one: its uploads overwrite in place, with its own clients.
        self.backend: Backend[Any] | None = None if backend_class is None else backend_class(remote_storage)
        self._backend_summary: str | None = None

    #: On S3 (COLLECTFAST_OBJECT_PARAMETERS is applied by the S3 uploads only).
    applies_object_parameters = True
    decides_locally = True

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        return True

    def learn_hashed_names(self, names: set[str]) -> None:
        if self.backend is not None:
            self.backend.learn_hashed_names(names)

    def worker_storage(self, storage: Storage) -> Storage:
        if self.backend is not None:
            return self.backend.worker_storage(storage)
        return super().worker_storage(storage)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        if self.backend is not None:
            self._backend_summary = self.backend.finish(self.warn, dry_run=dry_run)

    def requests_summary(self) -> str | None:
        return self._backend_summary

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        if self.backend is not None:
            self.backend.upload(path, prefixed_path, local_storage, remote_storage)
        elif isinstance(remote_storage, FileSystemStorage):
            replace_file(path, prefixed_path, local_storage, remote_storage)
        else:
            # A storage that never overwrites would save under a new name; most remote
            # storages overwrite, and then answer get_available_name() without a request.
            if remote_storage.get_available_name(prefixed_path) != prefixed_path:
                remote_storage.delete(prefixed_path)
            super().copy_file(path, prefixed_path, local_storage, remote_storage)
