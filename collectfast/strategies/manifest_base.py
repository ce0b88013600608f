"""The manifest strategy: decisions, recording uploads, and the conditional write loop.

Policy only: every request goes through the backend (collectfast.backends) named
by ``backend_class``; each family's module subclasses it with its own backend
(:mod:`collectfast.strategies.manifest` for S3).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any, ClassVar, TypeVar

from django.core.files.storage import Storage
from django.core.management.base import CommandError

from collectfast.backends.base import Backend, Body, ConditionsUnsupported, Unavailable, WriteConflict
from collectfast.conf import settings
from collectfast.errors import diagnose
from collectfast.hashing import file_md5
from collectfast.manifest import (
    WRITES_HONOURED,
    WRITES_IGNORED,
    WRITES_UNKNOWN,
    Changes,
    Entry,
    Manifest,
    ManifestError,
    ManifestWarning,
    NewerManifestError,
    Stored,
    dump,
    loads,
    merge,
    now,
    options_fingerprint,
    produced_again,
)
from collectfast.strategies.base import Strategy

_RemoteStorage = TypeVar("_RemoteStorage", bound=Storage)
_Read = TypeVar("_Read")

Snapshot = tuple[bytes, str]

#: A well-formed ETag that no real write produces.
_NO_SUCH_VERSION = '"00000000000000000000000000000000"'


#: The manifest could not be read or written; the message names the cause and the fix.
ManifestUnavailable = Unavailable
#: A conditional write was refused: the manifest changed since it was read.
ManifestConflict = WriteConflict
#: The storage rejects conditional writes outright.
ConditionalWritesUnsupported = ConditionsUnsupported


#: How long a deploy's unfinished mark is left to it before a checking deploy may clear it as dead.
UNFINISHED_FOR = timedelta(hours=1)


class ManifestStrategy(Strategy[_RemoteStorage], abc.ABC):
    """Skip a file only when the manifest recorded an upload of the same bytes with the same options.

    Storage-agnostic: a backend supplies the I/O methods at the end of the
    class. ``COLLECTFAST_MANIFEST_MODE = "verified"`` also lists the storage
    and trusts only entries whose object is still the one uploaded.
    """

    #: Conditional writes tried (re-reading and merging in between) before giving up.
    max_write_attempts: ClassVar[int] = 5
    # After start() the manifest (and in verified mode, what the listing contradicts) is in memory.
    decides_locally = True
    #: The backend every request goes through (collectfast.backends).
    backend_class: ClassVar[type[Backend[Any]] | None] = None
    backend: Backend[Any]

    def __init__(self, remote_storage: _RemoteStorage) -> None:
        super().__init__(remote_storage)
        if self.backend_class is not None:
            self.backend = self.backend_class(remote_storage)
        self._backend_summary: str | None = None
        self.verified = settings.manifest_mode == "verified"
        self.manifest_name = self.name_for(settings.manifest)
        self._lock = threading.Lock()
        self._base = Manifest()
        self._token: str | None = None
        self._writable = True
        #: Names whose entry in ``_base`` the listing contradicts (verified mode): never trusted this run.
        self._distrusted: set[str] = set()
        self._md5s: dict[str, str] = {}
        self._changes = Changes()
        self._outcome: str | None = None
        #: The run's names, from start(); a set of them (4 MB at 100,000) is built once asked for, after the listing.
        self._names: list[str] | None = None
        self._produced: frozenset[str] | None = None
        #: Trusting deploys mark the manifest before uploading; verified ones check what they trust anyway.
        self.marks_unfinished = not self.verified
        self._run = uuid.uuid4().hex
        self._mark_lock = threading.Lock()
        self._marked = False
        self._last_upload_time = datetime.min.replace(tzinfo=timezone.utc)

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        names = list(map(self._name_or_path, prefixed_paths))
        if self.manifest_name in names:
            raise CommandError(
                f"A static file is collected to {self.manifest_name!r}, where COLLECTFAST_MANIFEST keeps the "
                "manifest. Rename that file, or set COLLECTFAST_MANIFEST to another key."
            )
        self._names, self._produced = names, None
        if cleared:
            return  # clear_remote() deleted the manifest with everything else (or, in a dry run, pretended to)
        self._read_and_adopt()
        if not self.verified and self._base.unfinished:
            self._check_after_unfinished()
        elif not self.verified or not self._base.entries:
            return  # trusting, or nothing to verify: spare the listing
        self._distrusted = self.unconfirmed(names)
        produced = (self.produced or frozenset()) if self._distrusted else frozenset()
        for name in self._distrusted:
            if name not in produced:
                # Deleted or replaced by hand, and no local file to repair it with: stop claiming it.
                self._changes.removals[name] = self._base.entries[name]

    def unconfirmed(self, names: Collection[str]) -> set[str]:
        """The entries the listing does not show as stored: absent, or another ETag or size.

        Compared page by page, so the listing is never held whole beside the entries.
        """
        entries, prefix, manifest_key = self._base.entries, self.backend.prefix, self.manifest_key
        # A list of the entries' own (interned) names, not a set of every entry: 4 MB at 100,000, at the peak.
        confirmed: list[str] = []
        for page in self.backend.list_pages(with_manifest(names, self.manifest_name)):
            for listed in page:
                name = listed.key[len(prefix) :]
                entry = entries.get(name) if listed.key != manifest_key else None
                if entry is not None and (entry.etag, entry.size) == (listed.checksum, listed.size):
                    confirmed.append(sys.intern(name))
        confirmed.sort()
        # Counted once each: a server that listed a key twice must not make up for one it left out.
        if sum(1 for _ in itertools.groupby(confirmed)) == len(entries):
            return set()
        held = set(confirmed)
        return {name for name in entries if name not in held}

    def _name_or_path(self, prefixed_path: str) -> str:
        # The path's own string when they are equal: a copy per file costs megabytes at 100,000 files.
        name = self.name_for(prefixed_path)
        return prefixed_path if name == prefixed_path else name

    def prefetch(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        """Hash a local file while start() reads and lists (collectfast.deploy.Deploy.look_up); decided later."""
        md5 = file_md5(local_storage, path)
        with self._lock:
            self._md5s[self._name_or_path(prefixed_path)] = md5

    def unchanged_now(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        """Whether a prefetched file is proven unchanged without reading it again; False: ask should_copy_file."""
        name = self.name_for(prefixed_path)
        md5 = self._md5s.get(name)
        entry = None if md5 is None or name in self._distrusted else self._base.entries.get(name)
        if entry is None or md5 != entry.md5 or entry.options != options_fingerprint(self.upload_options(name)):
            return False
        with self._lock:
            self._md5s.pop(name, None)
        return True

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        name = self.name_for(prefixed_path)
        entry = None if name in self._distrusted else self._base.entries.get(name)
        if entry is None or entry.options != options_fingerprint(self.upload_options(name)):
            return True
        with self._lock:
            md5 = self._md5s.pop(name, None)
        md5 = md5 or file_md5(local_storage, path)
        if md5 == entry.md5:
            return False
        with self._lock:
            self._md5s[name] = md5  # for copy_file; kept for uploads only, never for every unchanged file
        return True

    def forget(self, prefixed_path: str) -> None:
        # Until the upload is confirmed the old entry may describe bytes the storage no longer holds.
        name = self.name_for(prefixed_path)
        entry = self._base.entries.get(name)
        if entry is not None:
            with self._lock:
                self._changes.removals[name] = entry
        if self.marks_unfinished:
            self._mark_unfinished()

    def _mark_unfinished(self) -> None:
        """Before a trusting deploy's first upload: write that it has begun, once.

        Its own removals reach the manifest only in finish(), which a killed process never
        reaches; until the mark is gone, trusting deploys check the bucket instead.
        """
        with self._mark_lock:
            if self._marked or not self._writable:
                return
            self._marked = True
            try:
                self.save(Changes(began={self._run: now()}), uploads=self._base.last_uploads)
            except (ManifestUnavailable, CommandError) as error:
                self.warn(
                    f"{error} This deploy could not mark the manifest before uploading: if it is killed, a "
                    "trusting deploy may skip files it replaced.",
                    ManifestWarning,
                )

    def _check_after_unfinished(self) -> None:
        """A trusting deploy after one that never finished: decide as verified mode does, and clear old marks."""
        began = min(self._base.unfinished.values())
        self.warn(
            f"A deploy that began uploading at {began.isoformat(timespec='seconds')} never finished (its mark "
            f"is in {self.manifest_location}): this deploy checks the bucket instead of trusting the manifest.",
            ManifestWarning,
        )
        self.verified = True
        cutoff = now() - UNFINISHED_FOR
        self._changes.ended.update(run for run, at in self._base.unfinished.items() if at < cutoff)

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        name = self.name_for(prefixed_path)
        with self._lock:
            md5 = self._md5s.pop(name, None)
        md5 = md5 or file_md5(local_storage, path)
        options = options_fingerprint(self.upload_options(name))
        saved, stored = self.upload(path, prefixed_path, local_storage, remote_storage)
        if stored is None:
            self.warn(
                f"collectfast could not learn what the storage stored for {saved!r}, so it is not recorded.",
                ManifestWarning,
            )
            return
        # One string object where values repeat: at 100,000 uploads that saves megabytes.
        etag = md5 if stored.etag == md5 else stored.etag
        entry = Entry(md5, stored.size, etag, sys.intern(options), self._upload_time())
        saved = self.name_for(saved)
        if saved == name:
            saved = self._name_or_path(prefixed_path)  # the task's own string, not one more copy per upload
        with self._lock:
            seen = self._base.entries.get(saved)
            self._changes.upserts[saved] = entry
            if seen is not None:  # absent reads as None (merge), and a first deploy has nothing to see
                self._changes.seen[saved] = seen
            else:
                self._changes.seen.pop(saved, None)
            self._changes.removals.pop(saved, None)

    def _upload_time(self) -> datetime:
        """Now, to the second, one object per second: at 100,000 uploads a time each costs megabytes.

        Only ``newest()`` reads it, to order two deploys' uploads of one name; within a second, or
        whatever the clocks, the storage is asked which landed (merge's conflicts).
        """
        at = now().replace(microsecond=0)
        last = self._last_upload_time
        if last == at:
            return last
        self._last_upload_time = at
        return at

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        try:
            self._record(succeeded=succeeded, dry_run=dry_run)
        finally:
            if self.backend_class is not None:
                self._backend_summary = self.backend.finish(self.warn, dry_run=dry_run)

    def _record(self, *, succeeded: bool, dry_run: bool) -> None:
        # Also after a failure or Ctrl-C: the files that did upload are recorded.
        if dry_run or not self._writable:
            return
        with self._lock:
            changes = self._changes.copy()
        if self._marked:
            changes.ended.add(self._run)
        produced = self.produced if succeeded else None
        if produced is not None:
            # The history pruning reads (docs/pruning.rst), recorded with every write of a deploy.
            changes.produced, changes.deployed_at = produced, now()
        if not changes and not (changes.produced is not None and produced_again(self._base, changes.produced)):
            self._outcome = f"Manifest unchanged ({len(self._base.entries)} entries)."
            return
        try:
            self._outcome = self.save(changes)
        except (ManifestUnavailable, CommandError) as error:
            landed = self._landed(changes)
            if landed:
                self._outcome = "Manifest saved (its answer was lost; read back and confirmed)."
                return
            stale = len(changes.upserts.keys() & self._base.entries.keys()) + len(changes.removals)
            consequence = (
                f"still describes {stale} of the objects this deploy replaced or found changed as they were "
                "before, and a trusting deploy believes it"
                if stale
                else "does not record them, so the next deploy uploads them again"
            )
            saved = "was not saved" if landed is False else "may not have been saved (it could not be read back)"
            raise CommandError(
                f"{error} The manifest {saved}. The uploads are in place, but the manifest {consequence}. "
                "Fix the cause and deploy again, or run `manage.py collectfast_manifest --rebuild`."
            ) from error

    def _landed(self, changes: Changes) -> bool | None:
        """After a failed write: whether the manifest holds ``changes`` anyway (an answer lost after it took
        effect); None when it cannot be read."""
        try:
            snapshot = self.read_manifest()
            current = loads(snapshot[0]) if snapshot else Manifest()
        except (ManifestUnavailable, ManifestError, CommandError):
            return None
        entries = current.entries
        if any(name not in entries or not entries[name].same_upload(entry) for name, entry in changes.upserts.items()):
            return False
        return all(entries.get(name) != entry for name, entry in changes.removals.items())

    def requests_summary(self) -> str | None:
        return " ".join(part for part in (self._outcome, self._backend_summary) if part) or None

    def _read(self) -> Snapshot | None:
        try:
            return self.read_manifest()
        except ManifestUnavailable as error:
            self._unreadable(error)
            return None

    def _read_and_adopt(self) -> None:
        """Read the manifest and adopt it, a line at a time where the backend streams it.

        At 100,000 entries its bytes (23 MB) would otherwise sit in memory beside the entries.
        """
        if type(self).read_manifest is not ManifestStrategy.read_manifest:
            self.adopt(self._read())  # a subclass reads it its own way
            return
        try:
            opened = self._checked(lambda: self.backend.open_object(self.manifest_key))
            if opened is None:
                self.adopt(None)
                return
            with opened[0] as stream:
                self.adopt((stream, opened[1]))
        except ManifestUnavailable as error:
            self._base, self._token = Manifest(), None
            self._unreadable(error)

    def _unreadable(self, error: ManifestUnavailable) -> None:
        self._writable = False
        self.warn(f"{error} Every file is uploaded, and the manifest is left as it is.", ManifestWarning)

    @property
    def base(self) -> Manifest:
        """The manifest as last read or written."""
        return self._base

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def produced(self) -> frozenset[str] | None:
        """Every name this run produced, once started (for pruning's history); None before."""
        if self._produced is None and self._names is not None:
            self._produced, self._names = frozenset(self._names), None
        return self._produced

    def adopt(self, snapshot: tuple[bytes | IO[bytes], str] | None) -> None:
        """Take a read manifest as the base of later decisions and writes; warn if it cannot be used."""
        self._base, self._token = Manifest(), None
        if snapshot is None:
            return
        data, self._token = snapshot
        where = self.manifest_location
        try:
            self._base = loads(data)
        except NewerManifestError as error:
            self._writable = False
            self.warn(
                f"The manifest {where} is ignored and left as it is: {error}. Every file is uploaded. "
                "Upgrade collectfast on this machine.",
                ManifestWarning,
            )
        except ManifestError as error:
            self.warn(
                f"The manifest {where} is unusable, so it is treated as empty and replaced: {error}.", ManifestWarning
            )
        else:
            if self._base.conditional_writes == WRITES_IGNORED:
                self._warn_ignored()

    def _warn_ignored(self) -> None:
        self.warn(
            f"The storage holding {self.manifest_location} ignores conditional writes (If-Match / If-None-Match): "
            "deploys running at the same time can undo each other's manifest updates. Keep "
            "COLLECTFAST_MANIFEST_MODE = 'verified' (it repairs what a lost update hides), "
            "or never run two deploys at once.",
            ManifestWarning,
        )

    def save(self, changes: Changes, *, uploads: int | None = None) -> str:
        """Write ``changes`` onto the manifest, merging with concurrent writers; return what was done.

        ``uploads``: how many files the run uploaded, recorded as ``last_uploads``;
        by default every upserted entry (a rebuild adopts entries, uploading none).
        """
        conditional, honoured, concurrent = True, False, False
        for _ in range(self.max_write_attempts):
            manifest, conflicts = merge(self._base, changes)
            for name in conflicts:
                self._settle(name, manifest, changes)
            unproven = manifest.conditional_writes == WRITES_UNKNOWN and not honoured
            if not conditional:
                manifest.conditional_writes = WRITES_IGNORED
            elif manifest.conditional_writes != WRITES_IGNORED:
                manifest.conditional_writes = WRITES_HONOURED  # proven right below when unproven
            manifest.updated_at = now()
            manifest.last_uploads = len(changes.upserts) if uploads is None else uploads
            try:
                self._token = self._write(manifest, conditional=conditional)
            except ManifestConflict:
                honoured = concurrent = True
                self.adopt(self.read_manifest())
                if not self._writable:
                    raise ManifestUnavailable(f"{self.manifest_location} now has a newer format.") from None
                continue
            except ConditionalWritesUnsupported:
                conditional = False
                self._warn_ignored()
                continue
            self._base = manifest
            if conditional and unproven:
                self._probe(manifest)
            merged = ", merged with a concurrent deploy" if concurrent else ""
            return f"Manifest saved ({len(manifest.entries)} entries{merged})."
        raise ManifestUnavailable(
            f"The manifest {self.manifest_location} changed under this deploy {self.max_write_attempts} times in a row."
        )

    def _write(self, manifest: Manifest, *, conditional: bool) -> str:
        """``write_manifest``, tried again after a transient failure (throttling, 5xx, a dropped connection).

        A retry after an answer lost when the write took effect is refused as a conflict
        (the version changed): ``save`` then re-reads and merges, as with any concurrent writer.
        """
        with serialised(manifest) as document:
            return self._write_document(document, conditional=conditional)

    def _write_document(self, document: IO[bytes], *, conditional: bool) -> str:
        for attempt in range(settings.retries + 1):
            document.seek(0)
            try:
                return self.write_manifest(document, replaces=self._token, conditional=conditional)
            except ManifestUnavailable as error:
                cause = error.__cause__
                if attempt == settings.retries or cause is None or not diagnose(cause, self.remote_storage).transient:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _settle(self, name: str, manifest: Manifest, changes: Changes) -> None:
        """Another deploy uploaded ``name`` too: keep the entry of the upload the storage holds."""
        mine, theirs = changes.upserts[name], self._base.entries[name]
        changes.seen[name] = theirs
        try:
            stored = self.stat_stored(name)
        except ManifestUnavailable:
            stored = None
        if mine.stored != theirs.stored and stored == mine.stored:
            manifest.entries[name] = mine
            return
        del changes.upserts[name]
        if mine.stored != theirs.stored and stored == theirs.stored:
            manifest.entries[name] = theirs
        else:
            # Neither upload is provably the one stored: claim nothing, the next deploy uploads it.
            manifest.entries.pop(name, None)
            changes.removals[name] = theirs

    def _probe(self, manifest: Manifest) -> None:
        """Write once more, "only if still at a version that never existed".

        A storage that applies If-Match refuses it, and the manifest keeps saying
        so; one that ignores it stores this copy, which says that instead.
        """
        probe = dataclasses.replace(manifest, conditional_writes=WRITES_IGNORED)
        try:
            with serialised(probe) as document:
                self._token = self.write_manifest(document, replaces=_NO_SUCH_VERSION, conditional=True)
        except (ManifestConflict, ConditionalWritesUnsupported, ManifestUnavailable):
            return
        self._base = probe
        self._warn_ignored()

    # The storage's side: the backend's, which a subclass may override.

    def name_for(self, prefixed_path: str) -> str:
        """The storage's name for a destination path, relative to its location."""
        return prefixed_path.replace("\\", "/").lstrip("/")

    @property
    def manifest_key(self) -> str:
        return self.backend.key(self.manifest_name)

    @property
    def manifest_location(self) -> str:
        """Where the manifest lives, for messages (e.g. ``s3://bucket/key``)."""
        return self.backend.url(self.manifest_key)

    def read_manifest(self) -> Snapshot | None:
        """The manifest's bytes and version token (ETag, generation), None if absent; else ManifestUnavailable.

        A cause that concerns every file (bucket, credentials, endpoint) is a CommandError: stop now
        rather than try each file.
        """
        return self._checked(lambda: self.backend.read_object(self.manifest_key))

    def _checked(self, read: Callable[[], _Read]) -> _Read:
        """``read()``, whose Unavailable is a CommandError when its cause concerns every file."""
        try:
            return read()
        except Unavailable as error:
            cause = error.__cause__
            if cause is not None and diagnose(cause, self.remote_storage).shared_cause in (
                "bucket",
                "credentials",
                "endpoint",
            ):
                raise CommandError(str(error)) from cause
            raise

    def write_manifest(self, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        """Write the manifest (its bytes, or a seekable stream of them) and return its new token.

        Conditional writes replace only the version ``replaces`` (create only
        if absent when None) and raise ManifestConflict when it is not current.
        """
        return self.backend.write_object(self.manifest_key, data, replaces=replaces, conditional=conditional)

    def list_stored(self, names: Collection[str] = ()) -> dict[str, Stored]:
        """Every object under the storage's location except the manifest, by name.

        ``names``: the run's local names, which a backend may use to list key ranges at once.
        """
        prefix, manifest_key = self.backend.prefix, self.manifest_key
        stored: dict[str, Stored] = {}
        for page in self.backend.list_pages(with_manifest(names, self.manifest_name)):
            stored.update(
                (listed.key[len(prefix) :], Stored(listed.checksum, listed.size))
                for listed in page
                if listed.key != manifest_key
            )
        return stored

    def stat_stored(self, name: str) -> Stored | None:
        """One object's ETag and size, None if absent."""
        found = self.backend.stat(self.backend.key(name))
        return None if found is None else Stored(found.checksum, found.size)

    def upload_options(self, name: str) -> dict[str, Any]:
        """Every option that shapes the object stored for ``name`` (type, encoding, headers, ACL...)."""
        return self.backend.write_options(self.backend.key(name))

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage
    ) -> tuple[str, Stored | None]:
        """Upload with ``remote_storage``; return the saved name and what the storage answered it stored."""
        saved, found = self.backend.upload(path, prefixed_path, local_storage, remote_storage)
        return saved, None if found is None else Stored(found.checksum, found.size)

    def worker_storage(self, storage: Storage) -> Storage:
        return self.backend.worker_storage(storage)

    def learn_hashed_names(self, names: set[str]) -> None:
        self.backend.learn_hashed_names(names)

    def clear_remote(self, *, dry_run: bool = False) -> list[str] | None:
        return self.backend.clear(dry_run=dry_run)


def with_manifest(names: Collection[str], manifest_name: str) -> list[str]:
    """The names a listing is split by (collectfast.backends): the run's, and the manifest's, which is listed too.

    A list, not a set: at 100,000 names a set copy costs megabytes, a list 800 KB.
    """
    return [*names, manifest_name] if names else []


#: Documents up to this size are serialised in memory; larger ones (about 235 bytes an entry) go to disk.
SPOOL_BYTES = 1 << 20


@contextlib.contextmanager
def serialised(manifest: Manifest) -> Iterator[IO[bytes]]:
    """The document, in a temporary file: at 100,000 entries its 23 MB never sit in memory beside the entries."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as document:
        try:
            dump(manifest, document)
            document.seek(0)
        except OSError as error:
            raise ManifestUnavailable(
                f"Writing the manifest to a temporary file in {tempfile.gettempdir()} failed ({error}). "
                "Free some space there, or set TMPDIR to a writable folder."
            ) from error
        yield document
