"""Strategies that decide from a manifest kept in the storage itself, shared by every deployer.

One read at the start of a run, one conditional write at the end. See
``docs/manifest.rst`` for the format and why concurrent deploys stay consistent.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NoReturn, cast

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from collectfast import errors
from collectfast.manifest import Stored
from collectfast.s3uploads import UploadRecorder
from collectfast.strategies.boto3 import Boto3Strategy, Listed, s3_error_message, save_in_place, write_parameters
from collectfast.strategies.manifest_base import (
    ConditionalWritesUnsupported,
    ManifestConflict,
    ManifestStrategy,
    ManifestUnavailable,
    Snapshot,
)

__all__ = ["ManifestStrategy", "S3ManifestStrategy"]


_ENCRYPTION_PARAMETERS = ("ServerSideEncryption", "SSEKMSKeyId", "SSECustomerAlgorithm", "SSECustomerKey")
_CUSTOMER_KEY_PARAMETERS = ("SSECustomerAlgorithm", "SSECustomerKey")


class S3ManifestStrategy(ManifestStrategy[S3Storage]):
    """The manifest strategy for django-storages' ``S3Storage`` and S3-compatible servers."""

    delete_not_found_exception = (ClientError,)
    applies_object_parameters = True

    def __init__(self, remote_storage: S3Storage) -> None:
        super().__init__(remote_storage)
        # The listing strategy's bucket operations (paged LIST, batched DELETE, keys), shared rather than copied.
        self.objects = Boto3Strategy(remote_storage)
        self.recorder = UploadRecorder()
        self.aborted: str | None = None

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, S3Storage)

    @property
    def client(self) -> Any:
        return self.objects.workers.client(self.remote_storage)

    @property
    def manifest_key(self) -> str:
        return self.objects.remote_key(self.manifest_name)

    @property
    def manifest_location(self) -> str:
        return f"s3://{self.remote_storage.bucket_name}/{self.manifest_key}"

    def name_for(self, prefixed_path: str) -> str:
        return str(clean_name(prefixed_path))

    def start(self, prefixed_paths: Sequence[str], *, dry_run: bool = False, cleared: bool = False) -> None:
        operation = self.client.meta.service_model.operation_model("PutObject")
        if "IfMatch" not in operation.input_shape.members:
            raise CommandError(
                "The manifest strategy needs conditional writes (PutObject's IfMatch, added to botocore in "
                "November 2024), which this botocore lacks. Upgrade boto3 and botocore."
            )
        super().start(prefixed_paths, dry_run=dry_run, cleared=cleared)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        try:
            super().finish(succeeded=succeeded, dry_run=dry_run)
        finally:
            if not dry_run:
                self.aborted = self.objects.workers.finish(self.remote_storage, self.warn)

    def requests_summary(self) -> str | None:
        parts = [part for part in (super().requests_summary(), self.aborted) if part]
        return " ".join(parts) or None

    def clear_remote(self, *, dry_run: bool = False) -> list[str] | None:
        return self.objects.clear_remote(dry_run=dry_run)

    def worker_storage(self, storage: Storage) -> Storage:
        return self.objects.worker_storage(storage)

    def _parameters(self, names: Sequence[str]) -> dict[str, Any]:
        params = self.remote_storage._get_write_parameters(self.manifest_key)
        return {name: params[name] for name in names if name in params}

    def read_manifest(self) -> Snapshot | None:
        storage = self.remote_storage
        try:
            response = self.client.get_object(
                Bucket=storage.bucket_name, Key=self.manifest_key, **self._parameters(_CUSTOMER_KEY_PARAMETERS)
            )
            return response["Body"].read(), response["ETag"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                return None
            self._raise_unreadable(error)
        except BotoCoreError as error:
            self._raise_unreadable(error)
        return None

    def _raise_unreadable(self, error: Exception) -> NoReturn:
        storage = self.remote_storage
        message = s3_error_message(storage, f"Reading {self.manifest_location}", error)
        if errors.diagnose(error, storage).shared_cause in ("bucket", "credentials", "endpoint"):
            # Every upload would fail the same way: stop now rather than try each file.
            raise CommandError(message) from error
        raise ManifestUnavailable(message) from error

    def write_manifest(self, data: bytes, *, replaces: str | None, conditional: bool = True) -> str:
        storage = self.remote_storage
        condition = {"IfMatch": replaces} if replaces else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=storage.bucket_name,
                Key=self.manifest_key,
                Body=data,
                ContentType="application/json",
                CacheControl="no-cache",
                **self._parameters(_ENCRYPTION_PARAMETERS),
                **(condition if conditional else {}),
            )
            return str(response["ETag"])
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = error.response.get("Error", {}).get("Code", "")
            # 412: changed since read; 409: a concurrent conditional write; 404: deleted since read.
            if conditional and (status in (409, 412) or (replaces and code in ("NoSuchKey", "404"))):
                raise ManifestConflict(code) from error
            if conditional and (status == 501 or code == "NotImplemented"):
                raise ConditionalWritesUnsupported(code) from error
            raise ManifestUnavailable(s3_error_message(storage, f"Writing {self.manifest_location}", error)) from error
        except BotoCoreError as error:
            raise ManifestUnavailable(s3_error_message(storage, f"Writing {self.manifest_location}", error)) from error

    def list_stored(self, names: Collection[str] = ()) -> dict[str, Stored]:
        prefix, manifest_key = self.objects.prefix, self.manifest_key
        stored: dict[str, Stored] = {}

        def add(listed: Listed) -> None:
            stored.update((key[len(prefix) :], Stored(etag, size)) for key, etag, size in listed if key != manifest_key)

        # The manifest is listed too: its key counts in the ranges' split.
        bounds = self.objects.range_bounds({*names, self.manifest_name}) if names else []
        self.objects.list_pages(bounds, add)
        return stored

    def stat_stored(self, name: str) -> Stored | None:
        storage = self.remote_storage
        try:
            response = self.client.head_object(
                Bucket=storage.bucket_name,
                Key=self.objects.remote_key(name),
                **self._parameters(_CUSTOMER_KEY_PARAMETERS),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404"):
                return None
            raise ManifestUnavailable(s3_error_message(storage, f"Checking {name!r}", error)) from error
        except BotoCoreError as error:
            raise ManifestUnavailable(s3_error_message(storage, f"Checking {name!r}", error)) from error
        return Stored(str(response["ETag"]).strip('"'), int(response["ContentLength"]))

    def learn_hashed_names(self, names: set[str]) -> None:
        self.objects.learn_hashed_names(names)

    def upload_options(self, name: str) -> dict[str, Any]:
        # The same parameters an upload sends, COLLECTFAST_OBJECT_PARAMETERS included: part of the fingerprint.
        params = write_parameters(self.objects.decisions, self.objects.remote_key(name))
        # django-storages decides on gzip in _save(), from these same parameters.
        if self.objects.gzips(params):
            params["ContentEncoding"] = "gzip"
        return params

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage
    ) -> tuple[str, Stored | None]:
        storage = cast(S3Storage, remote_storage)
        self.recorder.watch(storage.connection.meta.client)
        saved = save_in_place(path, prefixed_path, local_storage, storage, self.objects.workers)
        return saved, self.recorder.pop(self.objects.remote_key(saved))
