"""The strategy for django-storages' ``GoogleCloudStorage``: compare local md5s with listed ones."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import mimetypes
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any, cast
from urllib.parse import urlsplit

import requests
from django.core.files import File
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from google.api_core.exceptions import (
    Forbidden,
    GoogleAPIError,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from google.auth.exceptions import GoogleAuthError
from storages.backends.gcloud import CONTENT_ENCODING, CONTENT_TYPE, GoogleCloudStorage
from storages.utils import clean_name

from collectfast import errors
from collectfast.counting import RequestCounter
from collectfast.hashing import BLOCK_SIZE
from collectfast.strategies.listing import ListingStrategy

# GCS answers at most 100 calls in one batch request.
BATCH_SIZE = 100
_LISTED_FIELDS = "items(name,md5Hash,size),nextPageToken"
_LIST_PATH = re.compile(r"/storage/v1/b/[^/]+/o$")


def gcs_error_message(storage: GoogleCloudStorage, action: str, error: Exception) -> str:
    """Explain a failed request against the bucket, naming the cause and the fix."""
    bucket = storage.bucket_name
    where = os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"
    if isinstance(error, NotFound):
        return (
            f"The bucket {bucket!r} does not exist at {where}. Create it, or set the "
            "bucket_name OPTION of STORAGES['staticfiles'] (GS_BUCKET_NAME) to an existing bucket."
        )
    if isinstance(error, (Forbidden, Unauthorized)):
        return (
            f"{action} in bucket {bucket!r} at {where} was refused ({error.code} {error.message}). "
            "Check the credentials, and that they allow storage.objects.list, storage.objects.get, "
            "storage.objects.create and storage.objects.delete on the bucket (roles/storage.objectAdmin)."
        )
    if isinstance(error, GoogleAuthError):
        return (
            f"{action} in bucket {bucket!r} at {where} could not authenticate: {error}. Set the credentials "
            "OPTION of STORAGES['staticfiles'] (GS_CREDENTIALS), or configure Application Default Credentials."
        )
    return f"{action} in bucket {bucket!r} at {where} failed: {error}"


def diagnose_gcs(error: BaseException, storage: Any) -> errors.Diagnosis | None:
    """What a google-cloud-storage error means for the whole deploy (see collectfast.errors)."""

    def shared(cause: str, stop_after: int = 1, transient: bool = False) -> errors.Diagnosis:
        if isinstance(storage, GoogleCloudStorage):
            explanation = gcs_error_message(storage, "Uploading", cast(Exception, error))
        else:
            explanation = f"{type(error).__name__}: {error}"
        return errors.Diagnosis(transient, cause, stop_after, explanation)

    if isinstance(error, NotFound):
        # An upload creates its object: only a missing bucket answers 404.
        return shared("bucket")
    if isinstance(error, (Forbidden, Unauthorized)):
        return shared("access", stop_after=3)
    if isinstance(error, GoogleAuthError):
        return shared("credentials")
    if isinstance(error, (ServerError, TooManyRequests)):
        return errors.Diagnosis(transient=True)
    if isinstance(error, requests.ConnectionError):
        return shared("endpoint", stop_after=3, transient=True)
    return None


errors.register(diagnose_gcs)


def _hex_md5(md5_hash: str | None) -> str:
    """GCS's base64 md5Hash as hex; "" when there is none (composite or customer-key objects)."""
    if not md5_hash:
        return ""
    try:
        return base64.b64decode(md5_hash, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def _request_kind(method: str, url: str) -> str:
    path = urlsplit(url).path
    if method == "GET" and _LIST_PATH.search(path):
        return "LIST"
    if method == "POST" and path.startswith("/batch/"):
        return "BATCH"
    return method


def _md5_and_size(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    while block := stream.read(BLOCK_SIZE):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def worker_copy(storage: Storage) -> GoogleCloudStorage:
    """A copy of the storage for one worker thread, with a client (and bucket) of its own, built on first use.

    GoogleCloudStorage keeps the client and bucket it built lazily in plain
    attributes, so a plain copy made once the storage was used would share the
    main thread's client, whose requests session and credentials refresh are
    not safe to use from several threads at once.
    """
    worker = cast(GoogleCloudStorage, copy.copy(storage))
    worker._client = None
    worker._bucket = None
    return worker


class GoogleCloudStrategy(ListingStrategy[GoogleCloudStorage]):
    """Learn remote md5s and sizes in bulk (one list request per 1,000 objects) and upload what differs.

    A file is skipped only when the md5 and size of the bytes django-storages
    would upload (gzipped by its own compressor where it gzips) equal the
    listed ones. Objects without an md5 (composite objects, customer-supplied
    encryption keys) are always uploaded.
    """

    delete_not_found_exception = (NotFound,)

    def __init__(self, remote_storage: GoogleCloudStorage) -> None:
        super().__init__(remote_storage)
        # The command counts boto3 requests only; this strategy counts its clients' own.
        self.requests = RequestCounter()
        self._counted_hooks: list[list[Any]] = []

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, GoogleCloudStorage)

    def list_remote(self) -> dict[str, tuple[str, int]]:
        storage = self.remote_storage
        remote: dict[str, tuple[str, int]] = {}
        try:
            self.count_requests(storage.client)
            for blob in storage.bucket.list_blobs(prefix=self.prefix, fields=_LISTED_FIELDS):
                remote[blob.name] = (_hex_md5(blob.md5_hash), int(blob.size or 0))
        except (GoogleAPIError, GoogleAuthError) as error:
            raise CommandError(gcs_error_message(storage, "Listing the objects", error)) from error
        self.listed_keys = len(remote)
        return remote

    def delete_remote(self, keys: list[str]) -> None:
        storage = self.remote_storage
        try:
            self.count_requests(storage.client)
            for start in range(0, len(keys), BATCH_SIZE):
                batch_keys = keys[start : start + BATCH_SIZE]
                with storage.client.batch(raise_exception=False) as batch:
                    for key in batch_keys:
                        storage.bucket.delete_blob(key)
                for key, response in zip(batch_keys, batch._responses, strict=True):
                    # 404: already gone, which is what --clear wants.
                    if not (200 <= response.status_code < 300 or response.status_code == 404):
                        raise CommandError(
                            f"Deleting {key!r} for --clear failed: {response.status_code} {response.text}"
                        )
        except (GoogleAPIError, GoogleAuthError) as error:
            raise CommandError(gcs_error_message(storage, "Deleting objects for --clear", error)) from error

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        entry = self._remote.get(self.remote_key(prefixed_path))
        if entry is None or not entry[0]:
            return None
        return entry[0]

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        key = self.remote_key(prefixed_path)
        remote = self._remote.get(key)
        if remote is None or not remote[0]:
            return True
        return self.local_fingerprint(path, local_storage, key) != remote

    def local_fingerprint(self, path: str, local_storage: Storage, key: str) -> tuple[str, int]:
        """The md5 and size GCS reports after django-storages uploads this local file to ``key``."""
        with local_storage.open(path, "rb") as source:
            if self.gzipped(key):
                # The same compressor django-storages uploads with, so the bytes are identical.
                return _md5_and_size(self.remote_storage._compress_content(source))
            return _md5_and_size(source)

    def stores_as_is(self, prefixed_path: str) -> bool:
        return not self.gzipped(self.remote_key(prefixed_path))

    def gzipped(self, key: str) -> bool:
        """Whether ``GoogleCloudStorage._save`` compresses what it uploads to ``key``: its rule, step by step."""
        storage = self.remote_storage
        params = dict(storage.get_object_parameters(key))
        mime_type, mime_encoding = mimetypes.guess_type(key)
        if mime_encoding and CONTENT_ENCODING not in params:
            params[CONTENT_ENCODING] = mime_encoding
        content_type = params.pop(CONTENT_TYPE, mime_type)
        return bool(storage.gzip and content_type in storage.gzip_content_types and CONTENT_ENCODING not in params)

    def worker_storage(self, storage: Storage) -> Storage:
        """A copy of the storage for one worker thread, with a client of its own whose requests are counted."""
        worker = worker_copy(storage)
        self.count_requests(worker.client)
        return cast(Storage, worker)

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        # Not save(): with file_overwrite = False it would pick another name.
        # _save() overwrites in place, as stock collectstatic does after its delete.
        with local_storage.open(path, "rb") as source:
            cast(GoogleCloudStorage, remote_storage)._save(prefixed_path, File(source))

    def count_requests(self, client: Any) -> None:
        hooks = client._http.hooks["response"]
        if self._on_response not in hooks:
            hooks.append(self._on_response)
            self._counted_hooks.append(hooks)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        super().finish(succeeded=succeeded, dry_run=dry_run)
        # The storage, and so its client, outlives this run: stop counting into it.
        for hooks in self._counted_hooks:
            hooks.remove(self._on_response)
        self._counted_hooks.clear()

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.requests.add(_request_kind(response.request.method, response.request.url))

    def requests_summary(self) -> str | None:
        return self.requests.summary()


class GCSObjects:
    """The objects under a GoogleCloudStorage's location, as pruning sees them (collectfast.prune.Objects).

    Listed with their times (one request per 1,000 objects), deleted in batch
    requests of 100 calls (GCS's limit); requests are counted in ``requests``.
    """

    batch_size = BATCH_SIZE

    def __init__(self, storage: GoogleCloudStorage) -> None:
        self.storage = worker_copy(storage)  # a client of its own, whose requests alone are counted
        self.requests = RequestCounter()
        location = str(storage.location).strip("/")
        self.prefix = f"{location}/" if location else ""

    @property
    def where(self) -> str:
        return f"gs://{self.storage.bucket_name}/{self.prefix}"

    def key(self, name: str) -> str:
        return str(self.storage._normalize_name(clean_name(name)))

    def list_objects(self) -> list[tuple[str, int, datetime]]:
        """``(key, size, last modified)`` of every object under the location."""
        storage = self.storage
        with self._counted():
            try:
                blobs = storage.bucket.list_blobs(prefix=self.prefix, fields="items(name,size,updated),nextPageToken")
                return [
                    (blob.name, int(blob.size or 0), blob.updated)
                    for blob in blobs
                    if blob.name.startswith(self.prefix)
                ]
            except (GoogleAPIError, GoogleAuthError) as error:
                raise CommandError(gcs_error_message(storage, "Listing the objects", error)) from error

    def delete_objects(self, keys: list[str]) -> dict[str, str]:
        """Delete up to 100 keys in one batch request; the reason of each key GCS did not delete."""
        storage = self.storage
        failed: dict[str, str] = {}
        with self._counted():
            try:
                with storage.client.batch(raise_exception=False) as batch:
                    for key in keys:
                        storage.bucket.delete_blob(key)
            except (GoogleAPIError, GoogleAuthError) as error:
                raise CommandError(gcs_error_message(storage, "Deleting objects", error)) from error
        for key, response in zip(keys, batch._responses, strict=True):
            # 404: already gone, which is what pruning wants.
            if not (200 <= response.status_code < 300 or response.status_code == 404):
                failed[key] = f"{response.status_code} {response.reason}".strip()
        return failed

    @contextmanager
    def _counted(self) -> Iterator[None]:
        hooks = self.storage.client._http.hooks["response"]
        hooks.append(self._on_response)
        try:
            yield
        finally:
            hooks.remove(self._on_response)

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.requests.add(_request_kind(response.request.method, response.request.url))
