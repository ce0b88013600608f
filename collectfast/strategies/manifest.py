"""The deploy manifest strategy on S3, kept in the bucket itself and shared by every deployer.

One read at the start of a run, one conditional write at the end. See
``docs/manifest.rst`` for the format and why concurrent deploys stay consistent.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.files.storage import Storage
from django.core.management.base import CommandError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from collectfast.backends.s3 import S3Backend
from collectfast.strategies.manifest_base import ManifestStrategy

__all__ = ["ManifestStrategy", "S3ManifestStrategy"]


class S3ManifestStrategy(ManifestStrategy[S3Storage]):
    """The manifest strategy for django-storages' ``S3Storage`` and S3-compatible servers."""

    backend_class = S3Backend
    backend: S3Backend
    delete_not_found_exception = S3Backend.not_found_errors
    applies_object_parameters = True

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, S3Storage)

    def name_for(self, prefixed_path: str) -> str:
        return str(clean_name(prefixed_path))

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        if not self.backend.conditional_writes():
            raise CommandError(
                "The manifest strategy needs conditional writes (PutObject's IfMatch, added to botocore in "
                "November 2024), which this botocore lacks. Upgrade boto3 and botocore."
            )
        super().start(prefixed_paths, dry_run=dry_run, cleared=cleared)
