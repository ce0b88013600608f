"""Strategies for object stores that report every object's checksum and size in one listing."""

from __future__ import annotations

import abc
import threading
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from django.core.files.storage import Storage

from collectfast.backends.base import Backend
from collectfast.strategies.base import CachingHashStrategy

_Storage = TypeVar("_Storage", bound=Storage)
_LISTING_CHUNK = 1000


class ListingStrategy(CachingHashStrategy[_Storage], abc.ABC):
    """Learn the remote checksum and size of every file from a listing of the location, a page at a time.

    ``self._remote`` maps each remote key to ``(checksum, size)``. It comes from
    the last listing kept in ``COLLECTFAST_CACHE``, else from :meth:`list_remote`,
    whose answer is then cached. A file missing from it is uploaded. A run that
    uploads anything drops the cached listing: the next run lists again.
    """

    # A cache miss costs one listing request per page, not one request per file.
    cache_optional = True
    # After start() the listing is in memory: deciding reads only local files.
    decides_locally = True
    #: The backend every request goes through (collectfast.backends).
    backend_class: ClassVar[type[Backend[Any]] | None] = None
    backend: Backend[Any]

    def __init__(self, remote_storage: _Storage) -> None:
        super().__init__(remote_storage)
        if self.backend_class is not None:
            self.backend = self.backend_class(remote_storage)
            # The backend's location names the bucket or container and the prefix, whatever the storage calls them:
            # two sites sharing a cache must never read each other's listings.
            self._identity = f"{self._identity}|{self.backend.where}"
        self._remote: dict[str, tuple[str, int]] = {}
        self.listed_keys = 0
        self._forget_lock = threading.Lock()
        self._listing_forgotten = False
        self._backend_summary: str | None = None
        #: What the storage would report for local files hashed while the listing was under way, by key.
        self._predicted: dict[str, tuple[str, int] | None] = {}
        self._uploaded = False

    def list_remote(self) -> dict[str, tuple[str, int]]:
        """``(checksum, size)`` of every object under the storage's location, by key; sets ``listed_keys``."""
        return self.list_for(())

    def list_for(self, prefixed_paths: Sequence[str]) -> dict[str, tuple[str, int]]:
        """:meth:`list_remote` for a run of these paths, which a backend may use to list key ranges at once."""
        remote: dict[str, tuple[str, int]] = {}
        for page in self.backend.list_pages(prefixed_paths):
            remote.update((listed.key, (listed.checksum, listed.size)) for listed in page)
        self.listed_keys = len(remote)
        return remote

    def remote_key(self, prefixed_path: str) -> str:
        return self.backend.key(prefixed_path)

    def remote_size(self, prefixed_path: str) -> int | None:
        """The listed (or cached) size of the object; None when it is not known to exist.

        Paths not given to start() are unknown when the cache answered instead of a listing:
        callers must then upload or decide with should_copy_file, which uploads them.
        """
        entry = self._remote.get(self.remote_key(prefixed_path))
        return None if entry is None else entry[1]

    @property
    def prefix(self) -> str:
        return self.backend.prefix

    def prefetch(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        """Hash a local file while start() lists (collectfast.deploy.Deploy.look_up); decided later."""
        key = self.remote_key(prefixed_path)
        self._predicted[key] = self.backend.predict(path, local_storage, key)

    def unchanged_now(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        """Whether a prefetched file is proven unchanged without reading it again; False: ask should_copy_file."""
        key = self.remote_key(prefixed_path)
        predicted = self._predicted.get(key)
        remote = self._remote.get(key)
        if predicted is None or remote is None or not remote[0] or predicted != remote:
            return False
        self._predicted.pop(key, None)
        return True

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        key = self.remote_key(prefixed_path)
        remote = self._remote.get(key)
        predicted = self._predicted.pop(key, False) if self._predicted else False
        if remote is None or not remote[0]:
            return True  # absent, or stored without a checksum: nothing proves it unchanged
        if predicted is False:
            predicted = self.backend.predict(path, local_storage, key)
        return predicted != remote

    def stores_as_is(self, prefixed_path: str) -> bool:
        return self.backend.stores_as_is(self.remote_key(prefixed_path))

    def learn_hashed_names(self, names: set[str]) -> None:
        """Names post-processing hashed in this run (collectfast.deploy.Deploy.learn_hashed_names)."""
        self.backend.learn_hashed_names(names)

    def worker_storage(self, storage: Storage) -> Storage:
        return self.backend.worker_storage(storage)

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        self.backend.upload(path, prefixed_path, local_storage, remote_storage)

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        if cleared:
            self._remote = {}  # clear_remote() just emptied the location, or pretended to
            if not dry_run:
                self.cache.delete(self.listing_cache_key())
            return
        cached = self.cached_listing() if self.read_cache else None
        if cached is not None:
            self._remote = cached
            return
        self._remote = self.list_for(prefixed_paths)
        if not dry_run:
            self.cache_listing(self._remote)

    def forget(self, prefixed_path: str) -> None:
        # Once, before the first upload: after it the cached listing no longer describes the bucket.
        with self._forget_lock:
            if not self._listing_forgotten:
                self.cache.delete(self.listing_cache_key())
                self._listing_forgotten = True

    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        # The listing is cached and dropped as a whole: no cache key per uploaded file to remember (megabytes
        # at 100,000), so CachingHashStrategy's hook is skipped; hooks further along the MRO still run.
        self._uploaded = True
        super(CachingHashStrategy, self).post_copy_hook(path, prefixed_path, local_storage)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        if self._invalidated or self._uploaded:
            self._uploaded = False
            # The listing no longer describes what this run uploaded; the next run lists again.
            self.cache.delete(self.listing_cache_key())
            self._invalidated.clear()
        if self.backend_class is not None:
            self._backend_summary = self.backend.finish(self.warn, dry_run=dry_run)

    def requests_summary(self) -> str | None:
        return self._backend_summary

    def listing_cache_key(self, part: int | None = None) -> str:
        key = self.get_cache_key("\0listing")
        return key if part is None else f"{key}.{part}"

    def cached_listing(self) -> dict[str, tuple[str, int]] | None:
        """The last listing kept in the cache, or None when it is absent or incomplete.

        Kept as an index entry plus one entry per 1,000 keys, all tagged with the
        listing's generation: two reads whatever the number of files, values small
        enough for Memcached, and a torn write reads as a miss.
        """
        index = self.cache.get(self.listing_cache_key())
        if not (isinstance(index, tuple) and len(index) == 2):
            return None
        generation, parts = index
        keys = [self.listing_cache_key(part) for part in range(parts)]
        chunks = self.cache.get_many(keys) if keys else {}
        remote: dict[str, tuple[str, int]] = {}
        for key in keys:
            chunk = chunks.get(key)
            if not (isinstance(chunk, tuple) and len(chunk) == 2 and chunk[0] == generation):
                return None
            remote.update((name, (checksum, size)) for name, checksum, size in chunk[1])
        return remote

    def cache_listing(self, remote: dict[str, tuple[str, int]]) -> None:
        generation = uuid.uuid4().hex
        entries = sorted((name, checksum, size) for name, (checksum, size) in remote.items())
        chunks = [entries[i : i + _LISTING_CHUNK] for i in range(0, len(entries), _LISTING_CHUNK)]
        self.cache.set_many({self.listing_cache_key(part): (generation, chunk) for part, chunk in enumerate(chunks)})
        # The index last: a reader never finds it before the entries it names.
        self.cache.set(self.listing_cache_key(), (generation, len(chunks)))

    def clear_remote(self, *, dry_run: bool = False) -> list[str] | None:
        return self.backend.clear(dry_run=dry_run)
