"""``collectfast_manifest``: show the deploy manifest, or rebuild it from a listing of the bucket."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.staticfiles.finders import get_finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collectfast.conf import settings
from collectfast.hashing import file_md5
from collectfast.manifest import (
    VERSION,
    Changes,
    Entry,
    ManifestError,
    NewerManifestError,
    Stored,
    dumps,
    loads,
    now,
    options_fingerprint,
)
from collectfast.pool import WorkerPool
from collectfast.strategies import guess_strategy, load_strategy
from collectfast.strategies.manifest import S3ManifestStrategy
from collectfast.strategies.manifest_base import ManifestUnavailable, Snapshot

MANIFEST_STRATEGY = f"{S3ManifestStrategy.__module__}.{S3ManifestStrategy.__qualname__}"
#: Failed files named in the error; the rest are counted.
NAMED_FAILURES = 5

LocalFile = tuple[str, str, Storage]


@dataclass
class Rebuild:
    changes: Changes
    kept: int
    candidates: int = 0
    unproven: int = 0
    failures: list[tuple[str, Exception]] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Show the collectfast deploy manifest kept in the static files storage (COLLECTFAST_MANIFEST), "
        "or rebuild it from a listing of the bucket."
    )
    #: Whether collectstatic, as configured, uses and updates the manifest.
    in_use = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Recheck every entry against a listing of the bucket and adopt the local static files whose "
            "stored bytes and headers are proven to match. Anything unproven is uploaded by the next deploy.",
        )
        parser.add_argument(
            "-n", "--dry-run", action="store_true", help="With --rebuild: report what would change, write nothing."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --rebuild: rebuild even though collectstatic is not configured to use the manifest.",
        )

    def handle(self, **options: Any) -> None:
        if not S3ManifestStrategy.fits(staticfiles_storage):
            raise CommandError(
                "collectfast_manifest works with django-storages' S3Storage, which STORAGES['staticfiles'] "
                "does not use."
            )
        strategy_class, unused = configured_strategy()
        if unused and options["rebuild"] and not options["force"]:
            raise CommandError(refusal(unused))
        if unused:
            self.warn(f"{unused}: {not_used_advice(unused)}")
        strategy = strategy_class(staticfiles_storage)
        strategy.warning_handler = self.warn
        self.in_use = unused is None
        snapshot = self.read(strategy)
        data = snapshot[0] if snapshot else None
        if options["rebuild"]:
            data = self.rebuild(strategy, snapshot, dry_run=options["dry_run"])
        self.show(strategy.manifest_location, data)

    def warn(self, message: str) -> None:
        self.stderr.write(f"collectfast: {message}", self.style.WARNING)

    def read(self, strategy: S3ManifestStrategy) -> Snapshot | None:
        try:
            return strategy.read_manifest()
        except ManifestUnavailable as error:
            raise CommandError(str(error)) from error

    def show(self, where: str, data: bytes | None) -> None:
        if data is None:
            self.stdout.write(f"No manifest at {where}." + self.next_deploy(" uploads every file and creates it."))
            return
        try:
            manifest = loads(data)
        except NewerManifestError as error:
            self.stdout.write(
                f"The manifest {where} was written by a newer collectfast: {error}. Upgrade collectfast to read it."
                + self.next_deploy(" from this machine ignores it, uploads every file and leaves it as it is.")
            )
            return
        except ManifestError as error:
            self.stdout.write(
                f"The manifest {where} is unusable: {error}." + self.next_deploy(" treats it as empty and replaces it.")
            )
            return
        stored = sum(entry.size for entry in manifest.entries.values())
        written = manifest.updated_at.isoformat(timespec="seconds") if manifest.updated_at else "unknown"
        self.stdout.write(
            f"Manifest {where} (format version {VERSION}, {len(data)} bytes)\n"
            f"Entries: {len(manifest.entries)}, recording {stored} stored bytes.\n"
            f"Last written: {written}, by a run that uploaded {manifest.last_uploads} files.\n"
            f"Conditional writes: {manifest.conditional_writes}. Mode: {settings.manifest_mode}."
        )

    def next_deploy(self, consequence: str) -> str:
        """What the next deploy does about the manifest; nothing when collectstatic does not use it."""
        return f" The next deploy{consequence}" if self.in_use else ""

    def rebuild(self, strategy: S3ManifestStrategy, snapshot: Snapshot | None, *, dry_run: bool) -> bytes | None:
        """Rebuild the manifest; return the bytes it now holds."""
        strategy.adopt(snapshot)
        if not strategy.writable:
            raise CommandError(f"{strategy.manifest_location} was written by a newer collectfast: upgrade this one.")
        result = check(strategy)
        if result.failures:
            raise CommandError(failure_report(strategy, result))
        self.stdout.write(self.summary(result, dry_run=dry_run))
        if dry_run or not result.changes:
            self.stdout.write("Nothing written." if dry_run else "Nothing to write.")
            return snapshot[0] if snapshot else None
        try:
            self.stdout.write(strategy.save(result.changes, uploads=0))
        except ManifestUnavailable as error:
            raise CommandError(str(error)) from error
        return dumps(strategy.base)

    def summary(self, result: Rebuild, *, dry_run: bool) -> str:
        keep, remove, adopt = (
            ("Would keep", "would remove", "would adopt") if dry_run else ("Kept", "removed", "adopted")
        )
        unproven = f"{result.unproven} local files in the bucket are not proven to match"
        return (
            f"{keep} {result.kept} entries the listing confirms, {remove} {len(result.changes.removals)}, "
            f"{adopt} {len(result.changes.upserts)} files; {unproven}"
            + (": the next deploy uploads them." if self.in_use else ".")
        )


def configured_strategy() -> tuple[type[S3ManifestStrategy], str | None]:
    """The manifest strategy collectstatic is configured with, or S3ManifestStrategy and why it is not used."""
    if not settings.enabled:
        return S3ManifestStrategy, "COLLECTFAST_ENABLED is False"
    configured = settings.strategy
    try:
        strategy = load_strategy(configured or guess_strategy(staticfiles_storage) or MANIFEST_STRATEGY)
    except ImproperlyConfigured as error:
        raise CommandError(str(error)) from error
    if issubclass(strategy, S3ManifestStrategy):
        return strategy, None
    name = f"{strategy.__module__}.{strategy.__qualname__}"
    if configured is None:
        return S3ManifestStrategy, f"COLLECTFAST_STRATEGY is not set, so collectstatic uses {name}"
    return S3ManifestStrategy, f"COLLECTFAST_STRATEGY is {name!r}"


def not_used_advice(unused: str) -> str:
    enable = " and COLLECTFAST_ENABLED = True" if unused.startswith("COLLECTFAST_ENABLED") else ""
    return (
        "collectstatic does not use or update this manifest. "
        f"To deploy with it, set COLLECTFAST_STRATEGY = {MANIFEST_STRATEGY!r}{enable}."
    )


def refusal(unused: str) -> str:
    return (
        f"{unused}: collectstatic does not use or update this manifest, so a rebuilt one goes stale with the "
        "next deploy, and in trusting mode the manifest strategy would later skip files on its stale word. "
        f"Set COLLECTFAST_STRATEGY = {MANIFEST_STRATEGY!r} first, or pass --force "
        "(for example just before switching) to rebuild anyway."
    )


def check(strategy: S3ManifestStrategy) -> Rebuild:
    """Keep the entries the listing confirms; check the other listed local files on worker threads."""
    base = strategy.base.entries
    stored = strategy.list_stored()
    kept = {name for name, entry in base.items() if stored.get(name) == entry.stored}
    result = Rebuild(Changes(seen=dict(base)), len(kept))
    result.changes.removals = {name: entry for name, entry in base.items() if name not in kept}
    candidates = [file for file in local_files(strategy) if file[0] in stored and file[0] not in kept]
    result.candidates = len(candidates)
    # Each worker thread checks with a client of its own (the backend's, per thread).
    pool = WorkerPool(settings.threads, retries=settings.retries)
    try:
        for outcome in pool.run(candidates, lambda file: adopt(strategy, file, stored[file[0]])):
            name = outcome.task[0]
            if outcome.error is not None:
                result.failures.append((name, outcome.error))
            elif outcome.result is None:
                result.unproven += 1
            else:
                result.changes.upserts[name] = outcome.result
                result.changes.removals.pop(name, None)
    finally:
        pool.close()
    return result


def failure_report(strategy: S3ManifestStrategy, result: Rebuild) -> str:
    failures = sorted(result.failures, key=lambda failure: failure[0])
    lines = [f"{len(failures)} of {result.candidates} files could not be checked, so nothing was written:"]
    lines += [f"  {describe(strategy, name, error)}" for name, error in failures[:NAMED_FAILURES]]
    if len(failures) > NAMED_FAILURES:
        lines.append(f"  and {len(failures) - NAMED_FAILURES} more.")
    lines.append("Fix the cause and run the rebuild again.")
    return "\n".join(lines)


def describe(strategy: S3ManifestStrategy, name: str, error: Exception) -> str:
    return strategy.backend.explain(f"Checking {name!r}", error)


def local_files(strategy: S3ManifestStrategy) -> list[LocalFile]:
    """``(name, path, source storage)`` of every static file, the first found winning as in collectstatic."""
    config: Any = apps.get_app_config("staticfiles")
    found: dict[str, LocalFile] = {}
    for finder in get_finders():
        for path, storage in finder.list(list(config.ignore_patterns)):
            prefix = getattr(storage, "prefix", None)
            name = strategy.name_for(os.path.join(prefix, path) if prefix else path)
            found.setdefault(name, (name, path, storage))
    return list(found.values())


def adopt(strategy: S3ManifestStrategy, file: LocalFile, listed: Stored) -> Entry | None:
    """An entry for a listed object proven to be this local file as an upload now would store it, else None.

    Its bytes: the checksum and size an upload would get (gzip and parts
    included) equal the listed ones; KMS and customer-key ETags prove
    nothing. Its headers: the backend confirms those the upload options would set.
    """
    name, path, source = file
    backend = strategy.backend
    key = backend.key(name)
    if backend.predict(path, source, key) != (listed.etag, listed.size):
        return None
    options = strategy.upload_options(name)
    if not backend.stored_with(key, options):
        return None
    return Entry(file_md5(source, path), listed.size, listed.etag, options_fingerprint(options), now())
