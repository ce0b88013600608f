"""Upload every file without asking the storage anything: fastest when nearly everything changed."""

from __future__ import annotations

from typing import Any, cast

from django.core.files.storage import FileSystemStorage, Storage

from collectfast.strategies import GCS_STORAGE, S3_STORAGE, storage_is
from collectfast.strategies.base import Strategy
from collectfast.strategies.filesystem import replace_file


class UploadAllStrategy(Strategy[Storage]):
    """collectstupid's "stupid" strategy: no lookup, no manifest, every file uploaded through the pool.

    Works with any storage. Nothing is ever skipped, so it is also the
    strategy to use when the remote copy cannot be trusted at all.
    """

    def __init__(self, remote_storage: Storage) -> None:
        super().__init__(remote_storage)
        self._s3_workers: Any = None
        self.aborted: str | None = None
        if storage_is(remote_storage, S3_STORAGE):
            # Only imported for S3: boto3 is an optional dependency.
            from collectfast.strategies.boto3 import WorkerStorages, path_parameters

            self._s3_workers = WorkerStorages(path_parameters(remote_storage))

    #: On S3 (COLLECTFAST_OBJECT_PARAMETERS is applied by the S3 uploads only).
    applies_object_parameters = True

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        return True

    def learn_hashed_names(self, names: set[str]) -> None:
        if self._s3_workers is not None and self._s3_workers.layer is not None:
            self._s3_workers.layer.learn_hashed(names)

    def worker_storage(self, storage: Storage) -> Storage:
        if self._s3_workers is not None:
            return cast(Storage, self._s3_workers.for_this_thread(storage))
        if storage_is(storage, GCS_STORAGE):
            # A plain copy would share the storage's client once it exists; google-cloud-storage is optional.
            from collectfast.strategies.gcloud import worker_copy

            return cast(Storage, worker_copy(storage))
        return super().worker_storage(storage)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        if self._s3_workers is not None and not dry_run:
            self.aborted = self._s3_workers.finish(self.remote_storage, self.warn)

    def requests_summary(self) -> str | None:
        return self.aborted

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        if self._s3_workers is not None:
            from collectfast.strategies.boto3 import save_in_place

            save_in_place(path, prefixed_path, local_storage, cast(Any, remote_storage), self._s3_workers)
        elif isinstance(remote_storage, FileSystemStorage):
            replace_file(path, prefixed_path, local_storage, remote_storage)
        else:
            # A storage that never overwrites would save under a new name; most remote
            # storages overwrite, and then answer get_available_name() without a request.
            if remote_storage.get_available_name(prefixed_path) != prefixed_path:
                remote_storage.delete(prefixed_path)
            super().copy_file(path, prefixed_path, local_storage, remote_storage)
