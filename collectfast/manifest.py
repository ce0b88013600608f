"""The deploy manifest: what a storage holds because collectfast uploaded it.

Storage-agnostic: entries, the versioned JSON document they are kept in, the
fingerprint of upload options, and the rule that merges two deploys' writes.
The format and the consistency argument are described in ``docs/manifest.rst``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

FORMAT = "collectfast-manifest"
#: Bump when the document changes shape; older releases refuse newer documents.
VERSION = 1
#: Deploy times kept in ``deploys``, newest first: the history pruning reads (docs/pruning.rst).
HISTORY = 50

#: Whether the storage applies conditional writes (If-Match / If-None-Match), as last observed.
WRITES_UNKNOWN = "unknown"
WRITES_HONOURED = "honoured"
WRITES_IGNORED = "ignored"
_WRITES = (WRITES_UNKNOWN, WRITES_HONOURED, WRITES_IGNORED)

_MD5 = re.compile(r"^[0-9a-f]{32}$")
#: Ends the first line of a document dumps() writes; each entry follows on a line of its own.
_ENTRIES = b',"entries":{'


class ManifestWarning(UserWarning):
    """Something about the manifest that the deploy survived but the user should know."""


class ManifestError(ValueError):
    """The document is not a manifest this release can use."""


class NewerManifestError(ManifestError):
    """The document was written by a newer release, in a format this one does not know."""


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Stored:
    """What the storage reports about an object: its ETag (unquoted) and size in bytes."""

    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One object as uploaded by collectfast.

    ``md5`` is the source file's md5, ``size`` and ``etag`` what the storage
    stored and answered for that upload, ``options`` the fingerprint of the
    upload options that shape the stored object.
    """

    md5: str
    size: int
    etag: str
    options: str
    uploaded_at: datetime
    #: The first deploy in ``Manifest.deploys`` that did not produce this name; None while the latest did.
    #: History, not content: two entries for the same upload are equal whatever it says.
    gone_since: datetime | None = field(default=None, compare=False)

    @property
    def stored(self) -> Stored:
        return Stored(self.etag, self.size)

    def same_upload(self, other: Entry) -> bool:
        """Both entries describe the same object, whenever each was uploaded."""
        return (self.md5, self.size, self.etag, self.options) == (other.md5, other.size, other.etag, other.options)


def newest(first: Entry, second: Entry) -> Entry:
    # The ETag breaks ties so that every deploy merging the same two entries picks the same one.
    return max(first, second, key=lambda entry: (entry.uploaded_at, entry.etag))


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)
    conditional_writes: str = WRITES_UNKNOWN
    updated_at: datetime | None = None
    #: How many files the deploy that last wrote the manifest uploaded.
    last_uploads: int = 0
    #: When the last recorded deploys (at most HISTORY) wrote it, newest first.
    deploys: list[datetime] = field(default_factory=list)
    #: Trusting-mode deploys that began uploading and have not written their outcome, by id: when each began.
    #: Until they are gone, trusting deploys check the bucket: a killed deploy's uploads are not recorded.
    unfinished: dict[str, datetime] = field(default_factory=dict)


def options_fingerprint(options: Mapping[str, Any]) -> str:
    """A short digest of the upload options; any change to them changes it.

    Hashed, never stored in clear: options may hold an encryption key.
    """
    # Most files of a run share their options: computed once per distinct set of strings. Other values
    # (Metadata's dict; True, which equals 1 as a key would) are digested each time.
    if all(type(value) is str for value in options.values()):
        return _fingerprint(tuple(sorted(options.items())))
    return _digest(options)


@functools.lru_cache(maxsize=256)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    return _digest(dict(items))


def _digest(options: Mapping[str, Any]) -> str:
    canonical = json.dumps(options, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def dumps(manifest: Manifest) -> bytes:
    out = io.BytesIO()
    dump(manifest, out)
    return out.getvalue()


def dump(manifest: Manifest, out: IO[bytes]) -> None:
    """Write the document to ``out``, an entry at a time (see :func:`dumps`)."""
    head = {
        "format": FORMAT,
        "version": VERSION,
        "updated_at": manifest.updated_at.isoformat() if manifest.updated_at else None,
        "last_uploads": manifest.last_uploads,
        "conditional_writes": manifest.conditional_writes,
        "deploys": [at.isoformat() for at in manifest.deploys],
    }
    if manifest.unfinished:
        head["unfinished"] = {run: at.isoformat() for run, at in sorted(manifest.unfinished.items())}
    # Written entry by entry, one per line: a document of dicts would hold every entry twice more at
    # 100,000 files, and loads() reads such lines one at a time.
    out.write(_json(head)[:-1].encode())
    out.write(_ENTRIES)
    entries = manifest.entries
    for i, name in enumerate(sorted(entries)):
        entry = entries[name]
        fields = {
            "md5": entry.md5,
            "size": entry.size,
            "etag": entry.etag,
            "options": entry.options,
            "uploaded_at": entry.uploaded_at.isoformat(),
        }
        if entry.gone_since is not None:
            fields["gone_since"] = entry.gone_since.isoformat()
        out.write(f"{',' if i else ''}\n{_json(name)}:{_json(fields)}".encode())
    out.write(b"\n}}")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(data: bytes | IO[bytes]) -> Manifest:
    """Parse a manifest, from its bytes or a stream of them; raise ManifestError naming the first thing wrong.

    A stream is read a line at a time: at 100,000 entries the document's bytes (23 MB) never sit
    in memory beside the entries. Errors of the stream itself (a dropped connection) propagate.
    """
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    first = stream.readline()
    document = _by_lines(first, stream)
    if document is _OTHER_LAYOUT:
        # Not as dumps() lays it out: read whole, which also names what is wrong.
        document = _whole(data if isinstance(data, bytes) else first + stream.read())
    elif document is _BROKEN_LINE:
        if isinstance(data, bytes):
            document = _whole(data)
        else:
            raise ManifestError("it is not JSON as collectfast writes it: an entry's line is broken or missing")
    return _manifest(document)


_OTHER_LAYOUT = object()
_BROKEN_LINE = object()


def _by_lines(first: bytes, lines: IO[bytes]) -> Any:
    """The document as dumps() lays it out, an entry line at a time after the ``first``.

    _OTHER_LAYOUT when the first line is not dumps()'s, _BROKEN_LINE when a later one is not.
    A document decoded whole is a string as large as the bytes, four times larger when one
    name has a character beyond U+FFFF: at 100,000 entries it and its bytes outweighed the entries.
    """
    if not first.endswith(_ENTRIES + b"\n"):
        return _OTHER_LAYOUT
    try:
        document = json.loads(first[:-1].decode() + "}}")
    except (UnicodeDecodeError, RecursionError, ValueError):
        return _OTHER_LAYOUT
    if not isinstance(document, dict) or document.get("entries") != {}:
        return _OTHER_LAYOUT
    entries: dict[str, Any] = {}
    comma = False  # whether the line before ended with one
    try:
        for line in lines:
            if line == b"}}":
                document["entries"] = entries
                return document if not comma and not lines.read().strip() else _BROKEN_LINE
            # Every entry's line ends with ",\n" but the last's, which the closing "}}" follows.
            if entries and not comma or not line.endswith(b"\n"):
                return _BROKEN_LINE
            line = line[:-1]
            comma = line.endswith(b",")
            plain = _PLAIN_LINE.fullmatch(line)
            read = None if plain is None else _plain_entry(plain)
            if read is not None:
                name, fields = read
            else:
                entry = _DECODER.decode(f"{{{line.removesuffix(b',').decode()}}}")
                if not isinstance(entry, dict) or len(entry) != 1:
                    return _BROKEN_LINE
                ((name, fields),) = entry.items()
            # The run's paths are interned (collectfast.deploy): a name shares its path's string.
            entries[sys.intern(name)] = fields
    except (UnicodeDecodeError, RecursionError, ValueError):
        return _BROKEN_LINE
    return _BROKEN_LINE  # no closing line: cut short


#: An entry's line as dump() writes it when no string in it needs an escape: read without the JSON
#: decoder, three times faster. Anything else (escapes, other spacing) is read as JSON.
_PLAIN_LINE = re.compile(
    rb'"([^"\\\x00-\x1f]+)":\{"md5":"([0-9a-f]{32})","size":(0|[1-9][0-9]{0,17}),"etag":"([^"\\\x00-\x1f]+)",'
    rb'"options":"([^"\\\x00-\x1f]+)","uploaded_at":"([^"\\\x00-\x1f]+)"(?:,"gone_since":"([^"\\\x00-\x1f]+)")?\},?'
)


def _plain_entry(line: re.Match[bytes]) -> tuple[str, Entry] | None:
    """The name and entry of a line _PLAIN_LINE matched; None if the JSON decoder must name what is wrong."""
    name, md5, size, etag, options, uploaded_at, gone = line.groups()
    text = name.decode()
    md5_text = md5.decode()
    try:
        uploaded = _time(uploaded_at.decode(), "")
        gone_since = None if gone is None else _time(gone.decode(), "")
    except ManifestError:
        return None
    return text, _new_entry(md5_text, int(size), etag.decode(), options.decode(), uploaded, gone_since)


def _whole(data: bytes) -> Any:
    """The document decoded and parsed at once: any JSON layout, and the error that names what is wrong."""
    try:
        return json.loads(data.decode(), object_pairs_hook=_object)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"it is not JSON ({error})") from error
    except (RecursionError, ValueError) as error:
        # Nested too deep, or an integer too long to convert: planted, never written by collectfast.
        raise ManifestError(f"it is not a JSON document collectfast can read ({str(error)[:80]})") from error


def _manifest(document: Any) -> Manifest:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ManifestError(f'it is not a collectfast manifest (no "format": {FORMAT!r})')
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ManifestError(f"its version is {version!r}, not a whole number")
    if version > VERSION:
        raise NewerManifestError(f"it has format version {version}; this release reads up to {VERSION}")
    entries = document.get("entries")
    if not isinstance(entries, dict):
        raise ManifestError('"entries" is not an object')
    writes = document.get("conditional_writes")
    last_uploads = document.get("last_uploads", 0)
    deploys = document.get("deploys", [])
    if not isinstance(deploys, list):
        raise ManifestError('"deploys" is not a list')
    return Manifest(
        entries=_entries(entries),
        conditional_writes=writes if writes in _WRITES else WRITES_UNKNOWN,
        updated_at=_time(document.get("updated_at"), "updated_at") if document.get("updated_at") else None,
        last_uploads=last_uploads if isinstance(last_uploads, int) else 0,
        deploys=[_time(at, "a time in deploys") for at in deploys][:HISTORY],
        unfinished=_unfinished(document.get("unfinished", {})),
    )


def _unfinished(value: Any) -> dict[str, datetime]:
    try:
        return {str(run): _time(at, "a time in unfinished") for run, at in value.items()}
    except (AttributeError, ManifestError):
        # Unreadable, so possibly a deploy that never finished: readers must check the bucket.
        return {"unreadable": datetime.min.replace(tzinfo=timezone.utc)}


def _object(pairs: list[tuple[str, Any]]) -> Any:
    """A JSON object as it is parsed; an entry's becomes an Entry at once, so the parse never holds both."""
    fields = dict(pairs)
    if "md5" in fields and "uploaded_at" in fields and "format" not in fields:
        try:
            return _entry("", fields)
        except ManifestError:
            pass  # named by _entries, which sees its name
    return fields


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def _entries(entries: dict[str, Any]) -> dict[str, Entry]:
    for name, fields in entries.items():
        if not isinstance(fields, Entry):
            entries[name] = _entry(name, fields)  # raises ManifestError naming what is wrong
    return entries


def _entry(name: str, fields: Any) -> Entry:
    if not isinstance(fields, dict):
        raise ManifestError(f"the entry {name!r} is not an object")
    md5, size, etag, options = (fields.get(key) for key in ("md5", "size", "etag", "options"))
    if not (isinstance(md5, str) and _MD5.match(md5)):
        raise ManifestError(f"the entry {name!r} has no valid md5")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"the entry {name!r} has no valid size")
    if not (isinstance(etag, str) and etag) or not (isinstance(options, str) and options):
        raise ManifestError(f"the entry {name!r} has no etag or options")
    uploaded_at = _time(fields.get("uploaded_at"), f"uploaded_at of {name!r}")
    gone = fields.get("gone_since")
    gone_since = None if gone is None else _time(gone, f"gone_since of {name!r}")
    return _new_entry(md5, size, etag, options, uploaded_at, gone_since)


def _new_entry(
    md5: str, size: int, etag: str, options: str, uploaded_at: datetime, gone_since: datetime | None
) -> Entry:
    # One string object where values repeat: at 100,000 entries that saves megabytes.
    return Entry(md5, size, md5 if etag == md5 else etag, sys.intern(options), uploaded_at, gone_since)


def _time(value: Any, what: str) -> datetime:
    try:
        parsed = _parsed_time(value)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{what} is not an ISO 8601 time") from error
    if parsed.tzinfo is None:
        raise ManifestError(f"{what} has no time zone")
    return parsed


@functools.lru_cache(maxsize=1024)
def _parsed_time(value: str) -> datetime:
    # Entries uploaded in one second share the time's object (datetimes are immutable).
    return datetime.fromisoformat(value)


@dataclass
class Changes:
    """What one deploy did to the manifest, kept apart so it can be replayed on a newer copy.

    ``seen`` holds, per uploaded name, the entry the remote manifest had when
    this deploy last looked: a different entry there now means another deploy
    uploaded the same name meanwhile.
    """

    upserts: dict[str, Entry] = field(default_factory=dict)
    removals: dict[str, Entry] = field(default_factory=dict)
    seen: dict[str, Entry | None] = field(default_factory=dict)
    #: Set by a deploy that succeeded: every name it produced, and when; recorded as history.
    produced: frozenset[str] | None = None
    deployed_at: datetime | None = None
    #: Unfinished-deploy marks to add (a trusting deploy about to upload) and to drop (done, or long dead).
    began: dict[str, datetime] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals or self.began or self.ended)

    def copy(self) -> Changes:
        return Changes(
            dict(self.upserts),
            dict(self.removals),
            dict(self.seen),
            self.produced,
            self.deployed_at,
            dict(self.began),
            set(self.ended),
        )


def merge(current: Manifest, changes: Changes) -> tuple[Manifest, list[str]]:
    """Replay ``changes`` on the ``current`` manifest: the union of entries, the newest upload per name.

    Returns the merged manifest and the names another deploy uploaded with
    different content since this one looked (``conflicts``). For those the
    newest entry is kept provisionally; only the storage can tell which
    upload landed last, so the caller must check them.
    """
    entries = dict(current.entries)
    conflicts = []
    for name, mine in changes.upserts.items():
        theirs = entries.get(name)
        if theirs is None or theirs == changes.seen.get(name):
            entries[name] = mine
            continue
        entries[name] = newest(mine, theirs)
        if not theirs.same_upload(mine):
            conflicts.append(name)
    for name, removed in changes.removals.items():
        # Another deploy may have re-uploaded it meanwhile: remove only the entry found wrong.
        if entries.get(name) == removed:
            del entries[name]
    unfinished = {run: at for run, at in {**current.unfinished, **changes.began}.items() if run not in changes.ended}
    merged = Manifest(
        entries, current.conditional_writes, current.updated_at, current.last_uploads, current.deploys, unfinished
    )
    if changes.produced is not None and changes.deployed_at is not None:
        record_deploy(merged, changes.produced, changes.deployed_at)
    return merged, sorted(conflicts)


def history_differs(manifest: Manifest, produced: frozenset[str]) -> bool:
    """Whether recording a deploy that produced ``produced`` would change any entry's history."""
    return any((name in produced) == (entry.gone_since is not None) for name, entry in manifest.entries.items())


def produced_again(manifest: Manifest, produced: frozenset[str]) -> bool:
    """Whether a name recorded as gone is produced again: a deploy that must be recorded.

    A name that merely goes may wait for the next write: its ``gone_since`` is
    then later than the truth, which only keeps it longer.
    """
    return any(entry.gone_since is not None and name in produced for name, entry in manifest.entries.items())


def record_deploy(manifest: Manifest, produced: frozenset[str], at: datetime) -> None:
    """Record a deploy at ``at``: names it did not produce are gone since then, unless they were already."""
    entries = manifest.entries
    for name, entry in entries.items():
        if name in produced:
            if entry.gone_since is not None:
                entries[name] = dataclasses.replace(entry, gone_since=None)
        elif entry.gone_since is None:
            entries[name] = dataclasses.replace(entry, gone_since=at)
    manifest.deploys = sorted({*manifest.deploys, at}, reverse=True)[:HISTORY]
