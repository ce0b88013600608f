"""Google Cloud Storage: all I/O against django-storages' ``GoogleCloudStorage``, through google-cloud-storage."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import mimetypes
import os
import re
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import IO, Any, ClassVar, cast
from urllib.parse import urlsplit

import requests
from django.core.files import File
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from google.api_core.exceptions import (
    Conflict,
    Forbidden,
    GoogleAPIError,
    NotFound,
    PreconditionFailed,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from google.auth.exceptions import GoogleAuthError
from storages.backends.gcloud import CONTENT_ENCODING, CONTENT_TYPE, GoogleCloudStorage
from storages.utils import clean_name

from collectfast import counting, errors
from collectfast.backends.base import Backend, Body, Page, RemoteObject, Unavailable, WriteConflict, sized
from collectfast.hashing import BLOCK_SIZE

__all__ = ["GCSBackend", "NotFound", "worker_copy"]

_LISTED_FIELDS = "items(name,md5Hash,size,updated),nextPageToken"
_LIST_PATH = re.compile(r"/storage/v1/b/[^/]+/o$")
_FAILURES = (GoogleAPIError, GoogleAuthError)
#: GCS generations are microsecond timestamps: no object ever has generation 1, so a write
#: conditioned on it is always refused (the manifest's probe asks for such a version).
_NO_SUCH_GENERATION = 1


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


def _response_hooks(client: Any) -> list[Any]:
    # google-cloud-storage exposes no request hook; its requests session (google-auth's) has requests' own.
    return cast(list[Any], client._http.hooks["response"])


def _batch_responses(batch: Any) -> list[Any]:
    # One response per call, in order; the Batch keeps them only in this attribute.
    return cast(list[Any], batch._responses)


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


def _remote(resource: dict[str, Any] | Any) -> RemoteObject:
    """An object resource (a blob, or the JSON an upload answered) as a RemoteObject."""
    if isinstance(resource, dict):
        return RemoteObject(resource["name"], _hex_md5(resource.get("md5Hash")), int(resource.get("size") or 0))
    return RemoteObject(resource.name, _hex_md5(resource.md5_hash), int(resource.size or 0), resource.updated)


class GCSBackend(Backend[GoogleCloudStorage]):
    """Listing (1,000 objects a request), uploads through django-storages, batch deletes of 100 calls.

    Requests are counted (collectfast.counting.record) through a response hook on every client
    the backend uses; :meth:`finish` removes the hooks, as the storage outlives the run.
    """

    family = "gcs"
    # GCS answers at most 100 calls in one batch request.
    delete_batch = 100
    not_found: ClassVar[tuple[type[Exception], ...]] = (NotFound,)

    def __init__(self, storage: GoogleCloudStorage) -> None:
        super().__init__(storage)
        self._hooked: list[list[Any]] = []
        self._users: dict[int, int] = {}
        self._lock = threading.Lock()
        #: What GCS answered to each upload, by key, until upload() takes it.
        self._uploaded: dict[str, RemoteObject] = {}

    @property
    def where(self) -> str:
        return f"gs://{self.storage.bucket_name}/{self.prefix}"

    def key(self, name: str) -> str:
        return str(self.storage._normalize_name(clean_name(name)))

    # Clients and counting.

    def count(self, client: Any) -> Any:
        """Count (and watch the uploads of) every request ``client`` sends until finish(); returns it."""
        hooks = _response_hooks(client)
        with self._lock:
            if self._on_response not in hooks:
                hooks.append(self._on_response)
                self._hooked.append(hooks)
        return client

    @contextmanager
    def counted_bucket(self) -> Iterator[Any]:
        """The storage's bucket, its client's requests counted while in use.

        Only while in use: the storage outlives the backend, which may never see finish() (pruning).
        """
        hooks = _response_hooks(self.storage.client)
        with self._lock:
            self._users[id(hooks)] = self._users.get(id(hooks), 0) + 1
            if self._on_response not in hooks:
                hooks.append(self._on_response)
        try:
            yield self.storage.bucket
        finally:
            with self._lock:
                self._users[id(hooks)] -= 1
                if not self._users[id(hooks)] and self._on_response in hooks:
                    hooks.remove(self._on_response)

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        kind = _request_kind(request.method, request.url)
        counting.record(kind)
        # An upload's last answer is the object resource: what GCS stored, with no extra request.
        if urlsplit(request.url).path.startswith("/upload/") and response.status_code == 200:
            try:
                stored = _remote(response.json())
            except (ValueError, KeyError, TypeError):
                return
            with self._lock:
                self._uploaded[stored.key] = stored

    def finish(self, warn: Callable[[str], None], *, dry_run: bool = False) -> str | None:
        """Stop counting the workers' clients."""
        with self._lock:
            for hooks in self._hooked:
                if self._on_response in hooks:
                    hooks.remove(self._on_response)
            self._hooked.clear()
        return None

    # Reading.

    def list_pages(self, names: Collection[str] = ()) -> Iterator[Page]:
        try:
            with self.counted_bucket() as bucket:
                for page in bucket.list_blobs(prefix=self.prefix, fields=_LISTED_FIELDS).pages:
                    yield [_remote(blob) for blob in page if blob.name.startswith(self.prefix)]
        except _FAILURES as error:
            raise CommandError(self.explain("Listing the objects", error)) from error

    def stat(self, key: str) -> RemoteObject | None:
        try:
            with self.counted_bucket() as bucket:
                blob = bucket.get_blob(key)
        except _FAILURES as error:
            raise Unavailable(self.explain(f"Checking {key!r}", error)) from error
        return None if blob is None else _remote(blob)

    # What an upload stores.

    def _save_rule(self, key: str) -> tuple[dict[str, Any], bool]:
        """``GoogleCloudStorage._save``'s rule, step by step: the blob's properties, and whether it gzips."""
        storage = self.storage
        params = dict(storage.get_object_parameters(key))
        mime_type, mime_encoding = mimetypes.guess_type(key)
        if mime_encoding and CONTENT_ENCODING not in params:
            params[CONTENT_ENCODING] = mime_encoding
        params["acl"] = params.get("acl", storage.default_acl)
        params[CONTENT_TYPE] = params.get(CONTENT_TYPE, mime_type)
        gzips = bool(storage.gzip and params[CONTENT_TYPE] in storage.gzip_content_types)
        return params, gzips and CONTENT_ENCODING not in params

    def write_options(self, key: str) -> dict[str, Any]:
        params, gzips = self._save_rule(key)
        return {**params, CONTENT_ENCODING: "gzip"} if gzips else params

    def gzips(self, key: str) -> bool:
        """Whether ``GoogleCloudStorage._save`` compresses what it uploads to ``key``."""
        return self._save_rule(key)[1]

    def stores_as_is(self, key: str) -> bool:
        return not self.gzips(key)

    def predict(self, path: str, local_storage: Storage, key: str) -> tuple[str, int] | None:
        with local_storage.open(path, "rb") as source:
            if self.gzips(key):
                # The same compressor django-storages uploads with, so the bytes are identical.
                return _md5_and_size(self.storage._compress_content(source))
            return _md5_and_size(source)

    # Writing.

    def worker_storage(self, storage: Storage) -> Storage:
        worker = worker_copy(storage)
        self.count(worker.client)
        return cast(Storage, worker)

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, worker: Storage
    ) -> tuple[str, RemoteObject | None]:
        # Not save(): with file_overwrite = False it would pick another name.
        # _save() overwrites in place, as stock collectstatic does after its delete.
        with local_storage.open(path, "rb") as source:
            saved = str(cast(GoogleCloudStorage, worker)._save(prefixed_path, File(source)))
        with self._lock:
            return saved, self._uploaded.pop(self.key(saved), None)

    def delete(self, keys: list[str]) -> dict[str, str]:
        """Raises CommandError when the batch request itself fails."""
        failed: dict[str, str] = {}
        try:
            with self.counted_bucket() as bucket, bucket.client.batch(raise_exception=False) as batch:
                for key in keys:
                    bucket.delete_blob(key)
        except _FAILURES as error:
            raise CommandError(self.explain("Deleting objects", error)) from error
        for key, response in zip(keys, _batch_responses(batch), strict=True):
            # 404: already gone, which is what a delete wants.
            if not (200 <= response.status_code < 300 or response.status_code == 404):
                failed[key] = f"{response.status_code} {response.reason}".strip()
        return failed

    def read_object(self, key: str) -> tuple[bytes, str] | None:
        try:
            with self.counted_bucket() as bucket:
                blob = bucket.blob(key)
                data = blob.download_as_bytes(raw_download=True)
                if blob.generation is None:
                    # A server that does not say which generation it sent (GCS does): ask, then read that one.
                    blob.reload()
                    data = blob.download_as_bytes(raw_download=True, if_generation_match=blob.generation)
        except NotFound:
            return None
        except _FAILURES as error:
            raise Unavailable(self.explain(f"Reading gs://{self.storage.bucket_name}/{key}", error)) from error
        return data, str(blob.generation)

    def write_object(self, key: str, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        condition: dict[str, int] = {}
        if conditional:
            # 0: only if absent. A token that is no generation (the probe's) never matches.
            generation = 0 if replaces is None else int(replaces) if replaces.isdigit() else _NO_SUCH_GENERATION
            condition["if_generation_match"] = generation
        try:
            with self.counted_bucket() as bucket:
                blob = bucket.blob(key)
                blob.cache_control = "no-cache"
                # retry=None: the caller retries transient failures itself, and re-reads after a refusal.
                stream, size = sized(data)
                blob.upload_from_file(stream, size=size, content_type="application/json", retry=None, **condition)
        except (PreconditionFailed, Conflict) as error:
            if not conditional:
                raise Unavailable(self.explain(f"Writing gs://{self.storage.bucket_name}/{key}", error)) from error
            raise WriteConflict(str(error)) from error
        except _FAILURES as error:
            raise Unavailable(self.explain(f"Writing gs://{self.storage.bucket_name}/{key}", error)) from error
        with self._lock:
            self._uploaded.pop(key, None)  # the hook's record of this answer: only upload() takes them
        return str(blob.generation)

    # Errors.

    def explain(self, action: str, error: Exception) -> str:
        bucket = self.storage.bucket_name
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

    @staticmethod
    def diagnose(error: BaseException, storage: Any) -> errors.Diagnosis | None:
        def shared(cause: str, stop_after: int = 1, transient: bool = False) -> errors.Diagnosis:
            if isinstance(storage, GoogleCloudStorage):
                explanation = GCSBackend(storage).explain("Uploading", cast(Exception, error))
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
