"""Strategies for object stores that report every object's checksum and size in one listing."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from django.core.files.storage import Storage
from storages.utils import clean_name

from collectfast.strategies.base import CachingHashStrategy

_Storage = TypeVar("_Storage", bound=Storage)


class ListingStrategy(CachingHashStrategy[_Storage], abc.ABC):
    """Learn the remote checksum and size of every file from a listing of the location, a page at a time.

    ``self._remote`` maps each remote key to ``(checksum, size)``. It comes from
    ``COLLECTFAST_CACHE`` when that holds an entry for every file of the run,
    else from :meth:`list_remote`, whose answer is then cached.
    """

    # A cache miss costs one listing request per page, not one request per file.
    cache_optional = True

    def __init__(self, remote_storage: _Storage) -> None:
        super().__init__(remote_storage)
        self._remote: dict[str, tuple[str, int]] = {}
        self.listed_keys = 0

    @abc.abstractmethod
    def list_remote(self) -> dict[str, tuple[str, int]]:
        """``(checksum, size)`` of every object under the storage's location, by key; sets ``listed_keys``."""

    @abc.abstractmethod
    def delete_remote(self, keys: list[str]) -> None:
        """Delete these keys (all listed a moment ago) for ``--clear``."""

    def remote_key(self, prefixed_path: str) -> str:
        return cast(str, cast(Any, self.remote_storage)._normalize_name(clean_name(prefixed_path)))

    def remote_size(self, prefixed_path: str) -> int | None:
        """The listed (or cached) size of the object; None when it is not known to exist.

        Paths not given to start() are unknown when the cache answered instead of a listing:
        callers must then upload or decide with should_copy_file, which uploads them.
        """
        entry = self._remote.get(self.remote_key(prefixed_path))
        return None if entry is None else entry[1]

    @property
    def prefix(self) -> str:
        location = str(cast(Any, self.remote_storage).location).strip("/")
        return f"{location}/" if location else ""

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        if cleared and not dry_run:
            self._remote = {}  # clear_remote() just emptied the location
            return
        cache_keys = {path: self.get_cache_key(path) for path in prefixed_paths}
        if not cleared and cache_keys:
            cached = self.cache.get_many(list(cache_keys.values()))
            if len(cached) == len(cache_keys):
                for path, cache_key in cache_keys.items():
                    checksum, _, size = str(cached[cache_key]).rpartition("|")
                    self._remote[self.remote_key(path)] = (checksum, int(size))
                return
        self._remote = self.list_remote()
        if dry_run:
            return
        known = {}
        for path, cache_key in cache_keys.items():
            entry = self._remote.get(self.remote_key(path))
            if entry is not None:
                known[cache_key] = f"{entry[0]}|{entry[1]}"
        self.cache.set_many(known)

    def clear_remote(self, *, dry_run: bool = False) -> list[str] | None:
        keys = sorted(self.list_remote())
        if not dry_run:
            self.delete_remote(keys)
        return [key.removeprefix(self.prefix) for key in keys]
