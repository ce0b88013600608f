"""Pruning: delete the objects under the storage's location that no recent deploy needs (docs/pruning.rst).

Storage-agnostic. A storage family's backend (collectfast.backends) lists its
objects with their times and deletes them in its batch form; a local folder is
handled here.
The plan decides what may go and why the rest stays; then it is carried out in
batches, and what failed is reported once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from django.apps import apps
from django.contrib.staticfiles.finders import get_finders
from django.contrib.staticfiles.storage import HashedFilesMixin, ManifestFilesMixin
from django.core.files.storage import FileSystemStorage, Storage
from django.core.management.base import CommandError

from collectfast import counting
from collectfast import manifest as manifests
from collectfast.backends import Backend, backend_class_for
from collectfast.backends.filesystem import FileSystemBackend
from collectfast.conf import settings
from collectfast.counting import RequestCounter
from collectfast.manifest import Changes, Manifest
from collectfast.postprocess import unwrap
from collectfast.strategies.base import Strategy
from collectfast.strategies.manifest_base import ManifestStrategy, ManifestUnavailable

if TYPE_CHECKING:
    from collectfast.deploy import Deploy

#: ``(key, size in bytes, last modified)``
Listed = tuple[str, int, datetime]
#: ``(message, verbosity level)``
Log = Callable[[str, int], None]
#: Failures named one by one before the rest are only counted.
NAMED_FAILURES = 10
#: Without --max-delete or COLLECTFAST_PRUNE_MAX_DELETE: refuse above this many, or above half the objects.
DEFAULT_MAX_DELETE = 1000


class Objects(Protocol):
    """A storage's objects under its location, listed with their times and deleted in batches."""

    batch_size: int
    requests: RequestCounter
    #: The location's prefix in keys ("static/"), "" when keys are names.
    prefix: str

    @property
    def where(self) -> str: ...

    def key(self, name: str) -> str: ...

    def list_objects(self) -> list[Listed]: ...

    def delete_objects(self, keys: list[str]) -> dict[str, str]:
        """Delete one batch; the reason of each key not deleted. Raises CommandError when the request fails."""
        ...


class BackendObjects:
    """The objects under a remote storage's location, through its backend; requests counted in ``requests``."""

    def __init__(self, backend: Backend[Any]) -> None:
        self.backend = backend
        self.batch_size = backend.delete_batch
        self.prefix = backend.prefix
        self.requests = RequestCounter()

    @property
    def where(self) -> str:
        return self.backend.where

    def key(self, name: str) -> str:
        return self.backend.key(name)

    def list_objects(self) -> list[Listed]:
        # An object without a time is never old enough to go.
        with self._counted():
            return [
                (listed.key, listed.size, listed.modified or now())
                for page in self.backend.list_pages()
                for listed in page
                if listed.key.startswith(self.prefix)
            ]

    def delete_objects(self, keys: list[str]) -> dict[str, str]:
        with self._counted():
            return self.backend.delete(keys)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        counting.activate(self.requests)
        try:
            yield
        finally:
            counting.activate(None)


def objects_for(storage: Storage) -> Objects:
    """The objects of ``storage`` as pruning sees them; CommandError for a storage it cannot prune."""
    storage = unwrap(storage)
    backend_class = backend_class_for(storage)
    if backend_class is not None:
        return BackendObjects(backend_class(storage))
    if isinstance(storage, FileSystemStorage):
        return BackendObjects(FileSystemBackend(storage))
    raise CommandError(
        f"Pruning works with S3Storage, GoogleCloudStorage, AzureStorage and a local STATIC_ROOT, not with "
        f"{type(storage).__module__}.{type(storage).__qualname__}. Nothing was deleted."
    )


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class History:
    """What the deploy manifest remembers: the last deploys, and per key the first of them that lacked it."""

    deploys: list[datetime]
    gone_since: dict[str, datetime | None]

    @classmethod
    def of(cls, manifest: Manifest, objects: Objects) -> History:
        gone = {objects.key(name): entry.gone_since for name, entry in manifest.entries.items()}
        return cls(manifest.deploys, gone)

    def protects(self, key: str, keep: int) -> bool:
        """Whether one of the last ``keep`` recorded deploys produced ``key``."""
        if keep == 0 or key not in self.gone_since:
            return False
        gone = self.gone_since[key]
        return gone is None or sum(1 for at in self.deploys if at >= gone) < keep


@dataclass
class Plan:
    where: str
    listed: int
    doomed: list[Listed] = field(default_factory=list)
    kept: Counter[str] = field(default_factory=Counter)
    max_delete: int | None = None

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.doomed)

    def refusal(self) -> str | None:
        """Why the guard refuses this plan: the numbers and the override; None when it may go ahead."""
        count = len(self.doomed)
        if self.max_delete is not None:
            if count <= self.max_delete:
                return None
            limit = f"the {self.max_delete} allowed by --max-delete or COLLECTFAST_PRUNE_MAX_DELETE"
        elif count <= DEFAULT_MAX_DELETE and count * 2 <= self.listed:
            return None
        else:
            limit = f"the default limit (half of the objects, and at most {DEFAULT_MAX_DELETE:,})"
        share = 100 * count / max(1, self.listed)
        return (
            f"{count:,} of the {self.listed:,} objects under {self.where} ({share:.0f}%) would be deleted, more "
            f"than {limit}. Check that the local tree is complete (the same checkout and settings as the deploy); "
            f"if the plan is right, run again with --max-delete {count} "
            f"(or set COLLECTFAST_PRUNE_MAX_DELETE = {count})."
        )


def make_plan(
    objects: Objects,
    listing: Iterable[Listed],
    produced: set[str],
    manifest_key: str,
    history: History | None,
    *,
    keep: int,
    grace: timedelta,
    max_delete: int | None,
    at: datetime,
) -> Plan:
    """Which listed objects may go: not produced now, by none of the last ``keep`` deploys, older than ``grace``."""
    listing = list(listing)
    plan = Plan(objects.where, len(listing), max_delete=max_delete)
    for listed in sorted(listing):
        key, _, modified = listed
        if key == manifest_key:
            plan.kept["the deploy manifest"] += 1
        elif key in produced:
            plan.kept["produced by the local tree"] += 1
        elif history is not None and history.protects(key, keep):
            plan.kept[f"produced by one of the last {keep} deploys"] += 1
        else:
            # The grace runs from the object's last change, or from the deploy that stopped producing it.
            gone = history.gone_since.get(key) if history is not None else None
            if at - max(modified, gone or modified) < grace:
                plan.kept[f"changed or deployed less than {age(grace)} ago"] += 1
            else:
                plan.doomed.append(listed)
    return plan


@dataclass
class Pruner:
    """Plan and carry out one pruning of ``storage``."""

    storage: Storage
    log: Log
    dry_run: bool = False
    max_delete: int | None = None
    #: The deploy manifest's strategy, holding the manifest as last read or written; None: no history.
    manifest: ManifestStrategy[Any] | None = None
    #: collectstatic's strategy, whose kept state (a cached listing, cached hashes) must forget what goes.
    strategy: Strategy[Any] | None = None
    objects: Objects = field(init=False)
    #: This deploy's names and time, when the manifest does not record it yet (see history()).
    recording: tuple[frozenset[str], datetime] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.objects = objects_for(self.storage)
        if self.max_delete is None:
            self.max_delete = settings.prune_max_delete

    def run(self, produced_names: Iterable[str]) -> str:
        """Prune what ``produced_names`` (names in the storage) and the history leave; return the summary."""
        objects = self.objects
        produced = {objects.key(name) for name in produced_names}
        if not produced:
            raise CommandError(
                "Pruning refused: no static file was found locally, which looks like a wrong checkout or settings, "
                "not a reason to delete everything. Nothing was deleted."
            )
        history = self.history()
        keep, grace = settings.prune_keep_deploys, settings.prune_grace
        plan = make_plan(
            objects,
            objects.list_objects(),
            produced,
            objects.key(settings.manifest),
            history,
            keep=keep,
            grace=grace,
            max_delete=self.max_delete,
            at=now(),
        )
        if self.dry_run:
            return self.show(plan)
        refusal = plan.refusal()
        if refusal:
            raise CommandError(f"Pruning refused, nothing was deleted: {refusal}")
        self.forget(plan)
        self.forget_cached(plan)
        return self.carry_out(plan)

    def history(self) -> History | None:
        if self.manifest is None:
            return None
        if not self.manifest.writable:
            raise CommandError(
                f"Pruning refused: the deploy manifest {self.manifest.manifest_location} could not be used, so the "
                "history of recent deploys is unknown. Nothing was deleted."
            )
        manifest = self.manifest.base
        produced = self.manifest.produced
        if produced is not None and manifests.history_differs(manifest, produced):
            # A deploy that only dropped names did not write the manifest: record it with the prune's write.
            self.recording = produced, manifests.now()
            manifest = dataclasses.replace(manifest, entries=dict(manifest.entries), deploys=list(manifest.deploys))
            manifests.record_deploy(manifest, *self.recording)
        return History.of(manifest, self.objects)

    def show(self, plan: Plan) -> str:
        at = now()
        for key, size, modified in plan.doomed:
            self.log(f"Would delete '{key}' ({human_size(size)}, last modified {age(at - modified)} ago)", 1)
        refusal = plan.refusal()
        self.log(f"Keeping {plan.listed - len(plan.doomed):,} objects: {describe_kept(plan.kept)}.", 1)
        if refusal:
            self.log(f"A real run would refuse: {refusal}", 1)
        return (
            f"Dry run: would prune {len(plan.doomed):,} of {plan.listed:,} objects ({human_size(plan.size)}) "
            f"under {plan.where}. {self.objects.requests.summary()}"
        )

    def forget(self, plan: Plan) -> None:
        """Drop the manifest's entries of the doomed objects first: a trusting deploy must never skip a file on them."""
        if self.manifest is None:
            return
        doomed = {key for key, _, _ in plan.doomed}
        base = self.manifest.base
        removals = {name: entry for name, entry in base.entries.items() if self.objects.key(name) in doomed}
        changes = Changes(removals=removals)
        if self.recording is not None:
            changes.produced, changes.deployed_at = self.recording
        elif not removals:
            return
        counting.activate(self.objects.requests)
        try:
            self.manifest.save(changes, uploads=base.last_uploads)
        except (ManifestUnavailable, CommandError) as error:
            raise CommandError(
                f"Pruning stopped before deleting anything: the deploy manifest could not be updated ({error})."
            ) from error
        finally:
            counting.activate(None)

    def forget_cached(self, plan: Plan) -> None:
        """Before deleting: a cached listing or hash naming a doomed object would let a deploy skip its file."""
        strategy = self.strategy
        if strategy is None or isinstance(strategy, ManifestStrategy):
            return
        for key, _, _ in plan.doomed:
            strategy.forget(key.removeprefix(self.objects.prefix))

    def carry_out(self, plan: Plan) -> str:
        objects = self.objects
        batch_size = objects.batch_size
        failed: dict[str, str] = {}
        deleted: list[Listed] = []
        for start in range(0, len(plan.doomed), batch_size):
            batch = plan.doomed[start : start + batch_size]
            for key, _, _ in batch:
                self.log(f"Deleting '{key}'", 2)
            try:
                errors = objects.delete_objects([key for key, _, _ in batch])
            except CommandError as error:
                not_tried = len(plan.doomed) - start
                done = f"Pruned {len(deleted):,} of {len(plan.doomed):,} objects ({human_size(sizes(deleted))})"
                raise CommandError(
                    f"Pruning stopped: {error}\n{done}; {len(failed) + not_tried:,} are still there."
                ) from error
            failed.update(errors)
            deleted += [listed for listed in batch if listed[0] not in errors]
        summary = (
            f"Pruned {len(deleted):,} {plural(len(deleted), 'object')} ({human_size(sizes(deleted))}) "
            f"under {plan.where}. {objects.requests.summary()}"
        )
        if failed:
            raise CommandError(summary + "\n" + describe_failures(failed))
        return summary


def describe_failures(failed: dict[str, str]) -> str:
    """The keys not deleted, grouped by reason: each reason said once."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in sorted(failed.items()):
        by_reason.setdefault(reason, []).append(key)
    lines = [f"{len(failed):,} {plural(len(failed), 'object')} could not be deleted:"]
    for reason, keys in by_reason.items():
        more = len(keys) - NAMED_FAILURES
        shown = ", ".join(keys[:NAMED_FAILURES]) + (f" and {more} more" if more > 0 else "")
        lines.append(f"  {reason} ({len(keys)}): {shown}")
    lines.append("Fix the cause and prune again.")
    return "\n".join(lines)


def describe_kept(kept: Counter[str]) -> str:
    return ", ".join(f"{count:,} {reason}" for reason, count in kept.most_common()) or "none"


def sizes(listed: Iterable[Listed]) -> int:
    return sum(size for _, size, _ in listed)


def plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def human_size(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            return f"{seconds // length} {plural(seconds // length, unit)}"
    return f"{seconds} {plural(seconds, 'second')}"


# What a deploy produces: the names pruning must keep.


def produced_by_deploy(deploy: Deploy, storage: Storage) -> list[str]:
    """Every name a finished ``collectstatic`` run put (or found) in the storage, post-processed ones included."""
    return [*deploy.copied, *deploy.unmodified, *post_processed_names(storage)]


def post_processed_names(storage: Storage) -> list[str]:
    """The hashed names the storage now maps to (the live ``staticfiles.json``, or the run's) and the manifest."""
    storage = unwrap(storage)
    if not isinstance(storage, HashedFilesMixin):
        return []
    names = list(storage.hashed_files.values())
    if isinstance(storage, ManifestFilesMixin) and storage.manifest_storage is storage:
        names.append(storage.manifest_name)
    return names


def find_files(ignore_patterns: list[str]) -> dict[str, tuple[Storage, str]]:
    """``{prefixed_path: (source storage, path)}`` of every static file, the first found winning as in collectstatic."""
    found: dict[str, tuple[Storage, str]] = {}
    for finder in get_finders():
        for path, source in finder.list(ignore_patterns):
            prefix = getattr(source, "prefix", None)
            found.setdefault(os.path.join(prefix, path) if prefix else path, (source, path))
    return found


def produced_by_tree(storage: Storage, *, ignore_patterns: list[str] | None = None) -> list[str]:
    """What ``collectstatic`` would put in the storage from the local tree, uploading nothing.

    A hashing storage is post-processed on a local staging copy (collectfast.staging)
    to learn the hashed names; the names of the live ``staticfiles.json`` count too.
    """
    if ignore_patterns is None:
        ignore_patterns = list(apps.get_app_config("staticfiles").ignore_patterns)  # type: ignore[attr-defined]
    found = find_files(ignore_patterns)
    if not found:
        return []
    names = [*found, *post_processed_names(storage)]
    storage = unwrap(storage)
    if isinstance(storage, HashedFilesMixin) and hasattr(storage, "_normalize_name"):
        names += staged_names(storage, found)
    return names


def staged_names(storage: Storage, found: dict[str, tuple[Storage, str]]) -> list[str]:
    from collectfast.staging import stage

    with tempfile.TemporaryDirectory(prefix="collectfast-prune-") as directory:
        staged = stage(storage, found, directory)
        for original, _, processed in staged.post_process(dict(found)):
            if isinstance(processed, Exception):
                raise CommandError(
                    f"Post-processing {original!r} failed, so the hashed names are unknown: {processed}. "
                    "Nothing was deleted."
                )
        return staged.staged_names()


def collectstatic_ignore_patterns(patterns: list[str], *, use_default: bool) -> list[str]:
    """collectstatic's ignore patterns for these options."""
    if use_default:
        patterns = [*patterns, *apps.get_app_config("staticfiles").ignore_patterns]  # type: ignore[attr-defined]
    return sorted({os.path.normpath(p) for p in patterns})
