"""``collectfast_manifest``: show the deploy manifest, or rebuild it from a listing of the bucket."""

from __future__ import annotations

import os
from typing import Any

from django.apps import apps
from django.contrib.staticfiles.finders import get_finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.storage import Storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collectfast.conf import settings
from collectfast.hashing import file_md5
from collectfast.manifest import VERSION, Changes, Entry, ManifestError, Stored, loads, now, options_fingerprint
from collectfast.pool import WorkerPool
from collectfast.strategies.manifest import S3ManifestStrategy
from collectfast.strategies.manifest_base import ManifestUnavailable

# Headers HEAD returns as PutObject takes them: an adopted object must carry the ones uploads would set.
_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "Expires",
    "WebsiteRedirectLocation",
)
_CHECKED_IF_SET = ("ServerSideEncryption", "SSEKMSKeyId", "StorageClass")
# HEAD cannot show these; documented in docs/manifest.md.
_UNCHECKED = ("ACL", "GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP")

LocalFile = tuple[str, str, Storage]


class Command(BaseCommand):
    help = (
        "Show the collectfast deploy manifest kept in the static files storage (COLLECTFAST_MANIFEST), "
        "or rebuild it from a listing of the bucket."
    )

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

    def handle(self, **options: Any) -> None:
        if not S3ManifestStrategy.fits(staticfiles_storage):
            raise CommandError(
                "collectfast_manifest works with django-storages' S3Storage, which STORAGES['staticfiles'] "
                "does not use."
            )
        strategy = S3ManifestStrategy(staticfiles_storage)
        strategy.warning_handler = lambda message: self.stderr.write(f"collectfast: {message}", self.style.WARNING)
        if options["rebuild"]:
            self.rebuild(strategy, dry_run=options["dry_run"])
        self.show(strategy)

    def read(self, strategy: S3ManifestStrategy) -> tuple[bytes, str] | None:
        try:
            return strategy.read_manifest()
        except ManifestUnavailable as error:
            raise CommandError(str(error)) from error

    def show(self, strategy: S3ManifestStrategy) -> None:
        where = strategy.manifest_location
        snapshot = self.read(strategy)
        if snapshot is None:
            self.stdout.write(f"No manifest at {where}: the next deploy uploads every file and creates it.")
            return
        try:
            manifest = loads(snapshot[0])
        except ManifestError as error:
            self.stdout.write(f"The manifest {where} is unusable: {error}. The next deploy treats it as empty.")
            return
        stored = sum(entry.size for entry in manifest.entries.values())
        written = manifest.updated_at.isoformat(timespec="seconds") if manifest.updated_at else "never"
        self.stdout.write(
            f"Manifest {where} (format version {VERSION}, {len(snapshot[0])} bytes)\n"
            f"Entries: {len(manifest.entries)}, recording {stored} stored bytes.\n"
            f"Last deploy: {written}, uploaded {manifest.last_uploads} files.\n"
            f"Conditional writes: {manifest.conditional_writes}. Mode: {settings.manifest_mode}."
        )

    def rebuild(self, strategy: S3ManifestStrategy, *, dry_run: bool) -> None:
        strategy.adopt(self.read(strategy))
        if not strategy.writable:
            raise CommandError(f"{strategy.manifest_location} was written by a newer collectfast: upgrade this one.")
        base = strategy.base.entries
        stored = strategy.list_stored()
        changes = Changes(seen=dict(base))
        kept = {name for name, entry in base.items() if stored.get(name) == entry.stored}
        changes.removals = {name: entry for name, entry in base.items() if name not in kept}
        candidates = [file for file in local_files(strategy) if file[0] in stored and file[0] not in kept]
        unproven = 0
        for outcome in WorkerPool(settings.threads, retries=settings.retries).run(
            candidates, lambda file: adopt(strategy, file, stored[file[0]])
        ):
            if outcome.result is not None:
                changes.upserts[outcome.task[0]] = outcome.result
                changes.removals.pop(outcome.task[0], None)
            else:
                unproven += 1
        self.stdout.write(
            f"Kept {len(kept)} entries the listing confirms, removed {len(changes.removals)}, adopted "
            f"{len(changes.upserts)} files; {unproven} listed files are not proven and are uploaded by the next deploy."
        )
        if dry_run or not changes:
            self.stdout.write("Nothing written." if dry_run else "The manifest is up to date.")
            return
        try:
            self.stdout.write(strategy.save(changes))
        except ManifestUnavailable as error:
            raise CommandError(str(error)) from error


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

    Its bytes: the ETag and size an upload would get (gzip and parts
    included) equal the listed ones; KMS and customer-key ETags prove
    nothing. Its headers: HEAD shows those the upload options would set.
    """
    name, path, source = file
    key = strategy.objects.remote_key(name)
    params = strategy.remote_storage._get_write_parameters(key)
    if params.get("SSECustomerKey") or str(params.get("ServerSideEncryption", "")).startswith("aws:kms"):
        return None
    local = strategy.objects.local_fingerprint(path, source, params)
    if Stored(local.etag, local.size) != listed:
        return None
    options = strategy.upload_options(name)
    if not headers_match(options, strategy.client.head_object(Bucket=strategy.remote_storage.bucket_name, Key=key)):
        return None
    return Entry(file_md5(source, path), listed.size, listed.etag, options_fingerprint(options), now())


def headers_match(options: dict[str, Any], head: dict[str, Any]) -> bool:
    unknown = set(options) - {*_HEADERS, *_CHECKED_IF_SET, *_UNCHECKED, "Metadata"}
    if unknown:
        return False  # an option HEAD cannot confirm: do not vouch for it
    if any(options.get(header) != head.get(header) for header in _HEADERS):
        return False
    if any(options[name] != head.get(name) for name in _CHECKED_IF_SET if name in options):
        return False
    metadata = {str(k).lower(): v for k, v in options.get("Metadata", {}).items()}
    return bool(metadata == head.get("Metadata", {}))
