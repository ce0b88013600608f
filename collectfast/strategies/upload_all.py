"""Upload every file without asking the storage anything: fastest when nearly everything changed."""

from __future__ import annotations

from django.core.files.storage import Storage

from collectfast.strategies.base import Strategy


class UploadAllStrategy(Strategy[Storage]):
    """collectstupid's "stupid" strategy: no lookup, no manifest, every file uploaded through the pool.

    Works with any storage. Nothing is ever skipped, so it is also the
    strategy to use when the remote copy cannot be trusted at all.
    """

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        return True

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        # A storage that never overwrites (FileSystemStorage by default) would save under a new name.
        # S3 and most remote storages overwrite, and then answer without a request.
        if remote_storage.get_available_name(prefixed_path) != prefixed_path:
            remote_storage.delete(prefixed_path)
        super().copy_file(path, prefixed_path, local_storage, remote_storage)
