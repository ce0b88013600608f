"""The strategy API: an object that decides, per file, whether to upload it."""

from __future__ import annotations

import abc
import copy
import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from django.core.cache import caches
from django.core.files.storage import Storage

from collectfast.conf import settings
from collectfast.hashing import file_md5

logger = logging.getLogger(__name__)

_RemoteStorage = TypeVar("_RemoteStorage", bound=Storage)
# One for every strategy: workers of any run may write to the same stream.
_warn_lock = threading.Lock()


def storage_identity(storage: Storage) -> str:
    """Tell storages apart: two sites sharing a cache must never read each other's checksums."""
    storage_class = storage.__class__
    # GCS clients go to STORAGE_EMULATOR_HOST when it is set, whatever the storage's options say.
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "") if "gcloud" in storage_class.__module__ else ""
    parts = [
        f"{storage_class.__module__}.{storage_class.__qualname__}",
        str(getattr(storage, "endpoint_url", None) or getattr(storage, "custom_endpoint", None) or emulator),
        str(getattr(storage, "bucket_name", None) or ""),
        str(getattr(storage, "location", None) or ""),
    ]
    return "|".join(parts)


class Strategy(abc.ABC, Generic[_RemoteStorage]):
    """Decides whether each collected file must be copied to the remote storage.

    The command calls, in order: :meth:`start` once with every destination path,
    then for each file :meth:`pre_should_copy_hook` and :meth:`should_copy_file`
    (in worker threads when ``COLLECTFAST_THREADS`` > 1, on the main thread when
    ``decides_locally``), :meth:`copy_file` for
    the files to copy (in worker threads), :meth:`post_copy_hook` or
    :meth:`on_skip_hook` (main thread), and :meth:`finish` once at the end, also
    when the run fails.
    """

    #: Exceptions the storage raises when deleting a file that does not exist.
    delete_not_found_exception: ClassVar[tuple[type[Exception], ...]] = ()
    #: Whether the strategy keeps remote checksums in ``COLLECTFAST_CACHE``.
    uses_cache: ClassVar[bool] = False
    #: Whether it still works well when that cache forgets everything between runs.
    cache_optional: ClassVar[bool] = True
    #: Whether :meth:`should_copy_file` makes no request once :meth:`start` is done (it reads local files and
    #: what start() learned): the main thread then decides every file, and workers only upload.
    decides_locally: ClassVar[bool] = False
    #: Where :meth:`warn` sends its messages; collectstatic sets it to write on its stderr.
    warning_handler: Callable[[str], None] | None = None

    def __init__(self, remote_storage: _RemoteStorage) -> None:
        self.remote_storage = remote_storage

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        """Whether this strategy understands storages of ``storage_class``; the system checks ask this."""
        return True

    @classmethod
    def fits(cls, storage: Storage) -> bool:
        """Whether this strategy understands ``storage``; collectstatic asks this. Derived from the class."""
        # __class__, not type(): staticfiles_storage is a LazyObject that proxies __class__.
        return cls.fits_class(storage.__class__)

    @abc.abstractmethod
    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        """Return True if the local file at ``path`` must be copied to ``prefixed_path``."""

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        """Called once, before any decision, with every destination path of the run."""

    def clear_remote(self, *, dry_run: bool = False) -> list[str] | None:
        """Delete everything under the storage's location for ``--clear``; return the deleted paths.

        None (the default) lets Django's ``clear_dir`` do it, one request per file.
        """
        return None

    def pre_should_copy_hook(self) -> None:
        """Called before each call to :meth:`should_copy_file`."""

    def forget(self, prefixed_path: str) -> None:
        """Called in the worker just before ``prefixed_path`` is uploaded.

        State kept between runs that describes the old remote bytes must go now:
        a run killed mid-upload never reaches :meth:`finish`.
        """

    def worker_storage(self, storage: Storage) -> Storage:
        """The copy of the storage one worker thread uploads with; called once, on that thread."""
        return copy.copy(storage)

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        """Upload one file. ``remote_storage`` is the calling worker's own copy of the storage."""
        with local_storage.open(path) as source_file:
            remote_storage.save(prefixed_path, source_file)

    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        """Called after a file was copied successfully."""

    def on_skip_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        """Called when a file copy is skipped."""

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        """Called once after the last upload, also when the run failed or was interrupted."""

    def requests_summary(self) -> str | None:
        """Anything the strategy wants added to the command's summary line."""
        return None

    def warn(self, message: str, category: type[Warning] = UserWarning) -> None:
        """Report a problem the run survives: on the command's stderr, else as a Python warning.

        Worker threads call this: one message is written at a time, never interleaved.
        """
        with _warn_lock:
            if self.warning_handler is not None:
                self.warning_handler(message)
            else:
                warnings.warn(message, category, stacklevel=2)


class DisabledStrategy(Strategy[Storage]):
    """Collectfast 2.2.0's strategy for "collectfast is off": never consulted.

    Naming it in ``COLLECTFAST_STRATEGY`` runs Django's stock collectstatic.
    """

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> NoReturn:
        raise NotImplementedError

    def pre_should_copy_hook(self) -> NoReturn:
        raise NotImplementedError


class HashStrategy(Strategy[_RemoteStorage], abc.ABC):
    """Copy a file when its local md5 differs from the remote one (Collectfast 2.2.0 API)."""

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        local_hash = self.get_local_file_hash(path, local_storage)
        remote_hash = self.get_remote_file_hash(prefixed_path)
        return local_hash != remote_hash

    def get_local_file_hash(self, path: str, local_storage: Storage) -> str:
        return file_md5(local_storage, path)

    @abc.abstractmethod
    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        """The md5 of the remote file, or None when it does not exist."""


class CachingHashStrategy(HashStrategy[_RemoteStorage], abc.ABC):
    """A HashStrategy that keeps remote hashes in ``COLLECTFAST_CACHE``."""

    uses_cache = True
    cache_optional = False
    # Each decision reads the cache, which may be a server: many are in flight at once on the workers.
    decides_locally = False
    #: False for ``collectstatic --no-cache``: look remote checksums up afresh, and cache them again.
    read_cache = True

    def __init__(self, remote_storage: _RemoteStorage) -> None:
        super().__init__(remote_storage)
        self._identity = storage_identity(remote_storage)
        self._invalidated: set[str] = set()

    @property
    def cache(self) -> Any:
        # Django hands each thread its own cache connection: look it up on every use.
        return caches[settings.cache]

    def get_cache_key(self, prefixed_path: str) -> str:
        digest = hashlib.md5(f"{self._identity}\0{prefixed_path}".encode(), usedforsecurity=False).hexdigest()
        return settings.cache_key_prefix + digest

    def invalidate_cached_hash(self, prefixed_path: str) -> None:
        self.cache.delete(self.get_cache_key(prefixed_path))

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        if cleared and not dry_run:
            self.cache.delete_many([self.get_cache_key(p) for p in prefixed_paths])

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        local_hash = self.get_local_file_hash(path, local_storage)
        remote_hash = self.get_cached_remote_file_hash(path, prefixed_path)
        return local_hash != remote_hash

    def forget(self, prefixed_path: str) -> None:
        self.invalidate_cached_hash(prefixed_path)

    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        super().post_copy_hook(path, prefixed_path, local_storage)
        # The new remote hash is learned on the next run; never trust a guess.
        self._invalidated.add(self.get_cache_key(prefixed_path))

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        if self._invalidated:
            self.cache.delete_many(sorted(self._invalidated))
            self._invalidated.clear()

    def get_cached_remote_file_hash(self, path: str, prefixed_path: str) -> str | None:
        """The remote md5 from the cache, looked up and cached on a miss (Collectfast 2.2.0's signature)."""
        cache_key = self.get_cache_key(prefixed_path)
        hash_: str | None | bool = self.cache.get(cache_key, False) if self.read_cache else False
        if hash_ is False:
            hash_ = self.get_remote_file_hash(prefixed_path)
            if hash_ is not None:
                self.cache.set(cache_key, hash_)
        return hash_ if isinstance(hash_, str) else None
