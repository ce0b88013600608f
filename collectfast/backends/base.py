"""What every backend provides: all I/O against one storage family, behind one interface.

Strategies hold policy (which files to send) and talk to storages only through
a :class:`Backend`; a backend module (``collectfast/backends/<family>.py``) is
the only module that imports its family's SDK. docs/contributing.rst says how
to add one.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, ClassVar, Generic, TypeVar

from django.core.files.storage import Storage
from django.core.management.base import CommandError

from collectfast import errors

_Storage = TypeVar("_Storage", bound=Storage)


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One stored object: its key, the checksum the service reports for it, its size, when it last changed."""

    key: str
    #: As the service reports it: S3's ETag (unquoted), GCS's and Azure's MD5 in hex; "" when it reports none.
    checksum: str
    size: int
    modified: datetime | None = None


#: One listing request's worth of objects.
Page = list[RemoteObject]

#: What write_object writes: bytes, or a seekable binary stream read from where it stands.
Body = bytes | IO[bytes]


def sized(body: Body) -> tuple[IO[bytes], int]:
    """``body`` as a stream and the number of bytes left in it; the stream is left where it stood."""
    if isinstance(body, bytes):
        return io.BytesIO(body), len(body)
    start = body.tell()
    size = body.seek(0, io.SEEK_END) - start
    body.seek(start)
    return body, size


class WriteConflict(Exception):
    """A conditional write was refused: the object is not the version it was to replace."""


class ConditionsUnsupported(Exception):
    """The service rejects conditional writes outright."""


class Unavailable(Exception):
    """A request failed for a reason other than its condition; the message names the cause and the fix."""


def location_prefix(storage: Storage) -> str:
    """A remote storage's ``location`` as a key prefix ("static/"), "" at the root: the one home of that rule."""
    location = str(getattr(storage, "location", "") or "").replace("\\", "/").strip("/")
    return f"{location}/" if location else ""


class Backend(abc.ABC, Generic[_Storage]):
    """All I/O against one storage family: listing, upload, delete, conditional writes, errors, counting.

    Every request a backend sends is counted by kind with :func:`collectfast.counting.record`
    (or an SDK hook that calls it). Methods may be called from any worker thread.
    """

    #: "s3", "gcs", "azure", "filesystem".
    family: ClassVar[str]
    #: Keys a listing request answers, and keys one batch delete takes.
    page_size: ClassVar[int] = 1000
    delete_batch: ClassVar[int] = 1000

    def __init__(self, storage: _Storage) -> None:
        self.storage = storage

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "diagnose" in cls.__dict__:
            errors.register(cls.diagnose)

    # Where objects live.

    @property
    def prefix(self) -> str:
        """The storage's location as a key prefix ("static/"), "" at the root."""
        return location_prefix(self.storage)

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The location, for messages: ``s3://bucket/static/``."""

    @abc.abstractmethod
    def key(self, name: str) -> str:
        """The key the storage stores ``name`` under."""

    def url(self, key: str) -> str:
        """Where one key lives, for messages: ``s3://bucket/static/app.css``."""
        return self.where.removesuffix(self.prefix) + key

    # Reading.

    @abc.abstractmethod
    def list_pages(self, names: Collection[str] = ()) -> Iterator[Page]:
        """Every object under the location, a page at a time.

        ``names``: the run's local names, which a backend may use to list key ranges at once.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> RemoteObject | None:
        """One object, None if absent."""

    # What an upload stores.

    @abc.abstractmethod
    def write_options(self, key: str) -> dict[str, Any]:
        """Every option that shapes the object stored at ``key`` (type, encoding, headers...)."""

    @abc.abstractmethod
    def predict(self, path: str, local_storage: Storage, key: str) -> tuple[str, int] | None:
        """The checksum and size the service reports after the storage uploads this file; None if unknowable."""

    def learn_hashed_names(self, names: set[str]) -> None:
        """Names post-processing hashed in this run (per-path write options may pick them out)."""

    def stored_with(self, key: str, options: dict[str, Any]) -> bool:
        """Whether the object at ``key`` is proven to carry these write options (False when it cannot tell)."""
        return False

    def stores_as_is(self, key: str) -> bool:
        """Whether the stored bytes are the local bytes (no gzip), so a plain md5 compares."""
        return True

    # Writing.

    def worker_storage(self, storage: Storage) -> Storage:
        """A storage for one worker thread to upload with (its own client where the SDK needs one)."""
        return storage

    @abc.abstractmethod
    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, worker: Storage
    ) -> tuple[str, RemoteObject | None]:
        """Upload one file with a worker's storage, overwriting in place.

        Returns the name saved and what the service answered it stored (None when it did not say).
        """

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> dict[str, str]:
        """Delete up to ``delete_batch`` keys in the service's batch form; why each key not deleted was not.

        A request that fails as a whole raises CommandError naming the cause.
        """

    @abc.abstractmethod
    def read_object(self, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and version token (ETag, generation), None if absent; else Unavailable."""

    def open_object(self, key: str) -> tuple[IO[bytes], str] | None:
        """:meth:`read_object` as a stream, for a large object read a line at a time (the manifest).

        Reading the stream raises Unavailable when the service fails mid-way. By default the
        object is read whole first; a backend whose client streams overrides it.
        """
        found = self.read_object(key)
        return None if found is None else (io.BytesIO(found[0]), found[1])

    @abc.abstractmethod
    def write_object(self, key: str, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        """Write a JSON object (the manifest: a stream when large) and return its new version token.

        Conditional writes replace only the version ``replaces`` (create only if absent when None)
        and raise WriteConflict otherwise; ConditionsUnsupported when the service has none; Unavailable else.
        """

    def clear(self, *, dry_run: bool = False) -> list[str]:
        """Delete every object under the location (``--clear``), in batches; the names, relative to it."""
        keys = sorted(listed.key for page in self.list_pages() for listed in page)
        if not dry_run:
            for start in range(0, len(keys), self.delete_batch):
                failed = self.delete(keys[start : start + self.delete_batch])
                if failed:
                    key, reason = min(failed.items())
                    raise CommandError(f"Deleting {key!r} for --clear failed: {reason}")
        return [key.removeprefix(self.prefix) for key in keys]

    # Errors and the end of a run.

    @abc.abstractmethod
    def explain(self, action: str, error: Exception) -> str:
        """``action`` failed with ``error``: the cause and the fix, in words."""

    @staticmethod
    def diagnose(error: BaseException, storage: Any) -> errors.Diagnosis | None:
        """What the family's SDK error means for a deploy (collectfast.errors); None if it is not one of its own."""
        return None

    def finish(self, warn: Callable[[str], None], *, dry_run: bool = False) -> str | None:
        """Tidy up after a run (e.g. abandoned multipart uploads); a sentence for the summary, if any."""
        return None
