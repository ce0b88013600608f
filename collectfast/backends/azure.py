"""All I/O against Azure Blob Storage through django-storages' ``AzureStorage`` (docs/azure.rst)."""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Collection, Iterator
from typing import Any, ClassVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings
from django.core.files import File
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from storages.backends.azure_storage import AzureStorage
from storages.utils import clean_name

from collectfast import counting, errors
from collectfast.backends.base import Backend, Body, Page, RemoteObject, Unavailable, WriteConflict, sized
from collectfast.conf import settings
from collectfast.hashing import file_md5

_CREDENTIAL_CODES = {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}


def request_kind(method: str, url: str) -> str:
    """The kind a request is counted as: List Blobs is LIST, the blob batch is POST."""
    if method == "GET" and parse_qs(urlsplit(url).query).get("comp") == ["list"]:
        return "LIST"
    return method.upper()


def _code(error: BaseException) -> str:
    return str(getattr(error, "error_code", None) or "")


def _refused_credentials(error: BaseException) -> bool:
    # Azurite answers a wrong key with AuthorizationFailure, worded as Azure words AuthenticationFailed.
    return isinstance(error, ClientAuthenticationError) or (
        isinstance(error, HttpResponseError)
        and (_code(error) in _CREDENTIAL_CODES or str(error.message or "").startswith("Server failed to authenticate"))
    )


def _missing_container(error: BaseException) -> bool:
    return isinstance(error, ResourceNotFoundError) and _code(error) == "ContainerNotFound"


def _endpoint(storage: AzureStorage) -> str:
    if storage.connection_string:
        for part in str(storage.connection_string).split(";"):
            name, _, value = part.partition("=")
            if name.strip() == "BlobEndpoint" and value:
                return value
    return f"{storage.azure_protocol}://{storage.account_name}.blob.{storage.endpoint_suffix}"


def azure_error_message(storage: AzureStorage, action: str, error: BaseException) -> str:
    """Explain a failed request against the container, naming the cause and the fix."""
    container, where = storage.azure_container, _endpoint(storage)
    if _missing_container(error):
        return (
            f"The container {container!r} does not exist at {where}. Create it, or set the azure_container "
            "OPTION of STORAGES['staticfiles'] (AZURE_CONTAINER) to an existing container."
        )
    if _refused_credentials(error):
        return (
            f"{action} in container {container!r} at {where} was refused: the credentials are wrong or expired "
            f"({_code(error) or type(error).__name__}). Check account_name and account_key (AZURE_ACCOUNT_NAME / "
            "AZURE_ACCOUNT_KEY), connection_string (AZURE_CONNECTION_STRING), sas_token or token_credential."
        )
    if isinstance(error, HttpResponseError) and error.status_code == 403:
        return (
            f"{action} in container {container!r} at {where} was refused ({_code(error) or 403}). Check that the "
            "credentials may list, read, write and delete blobs in the container (Storage Blob Data Contributor)."
        )
    if isinstance(error, ServiceRequestError):
        return (
            f"{action} in container {container!r}: {where} could not be reached ({error}). Check account_name, "
            "endpoint_suffix or the connection string's BlobEndpoint, and the network."
        )
    return f"{action} in container {container!r} at {where} failed: {type(error).__name__}: {error}"


def diagnose_azure(error: BaseException, storage: Any) -> errors.Diagnosis | None:
    """What an azure-core error means for the whole deploy (see collectfast.errors)."""
    if not isinstance(error, AzureError):
        return None

    def shared(cause: str, stop_after: int = 1, transient: bool = False) -> errors.Diagnosis:
        if isinstance(storage, AzureStorage):
            explanation = azure_error_message(storage, "Uploading", error)
        else:
            explanation = f"{type(error).__name__}: {error}"
        return errors.Diagnosis(transient, cause, stop_after, explanation)

    if _missing_container(error):
        return shared("bucket")
    if _refused_credentials(error):
        return shared("credentials")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status == 403:
            return shared("access", stop_after=3)
        return errors.Diagnosis(transient=status >= 500 or status in (408, 429))
    if isinstance(error, ServiceRequestError):
        # The request never reached the service: a wrong endpoint, or the network.
        return shared("endpoint", stop_after=3, transient=True)
    return errors.Diagnosis(transient=isinstance(error, ServiceResponseError))


def client_options(storage: AzureStorage, hooks: dict[str, Any]) -> dict[str, Any]:
    """The storage's client options, with collectfast's timeouts where it sets none and the counting hooks."""
    options = {"connection_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout}
    return {**options, **(storage.client_options or {}), **hooks}


def worker_copy(storage: Storage, hooks: dict[str, Any]) -> AzureStorage:
    """A copy of the storage with a service client of its own, built with ``hooks``, that overwrites in place.

    AzureStorage keeps its clients in plain attributes (``_service_client``,
    ``_client``), which a copy shares, and ignores ``client_options`` with a
    connection string: the copy's client is built here in both cases.
    """
    worker = cast(AzureStorage, copy.copy(storage))
    worker.client_options = client_options(worker, hooks)
    # Stock collectstatic deletes, then saves; collectfast overwrites in one request.
    worker.overwrite_files = True
    worker._client = None
    if worker.connection_string:
        worker._service_client = BlobServiceClient.from_connection_string(
            worker.connection_string, **worker.client_options
        )
    else:
        worker._service_client = None
    return worker


class AzureBackend(Backend[AzureStorage]):
    """Azure Blob Storage: List Blobs with Content-MD5, Put Blob through the storage's ``_save``, blob batch deletes.

    Every request goes through a client of collectfast's own (one per thread), built with a hook
    that counts it: the hook runs after azure-core's retry policy, so retries count too.
    """

    family = "azure"
    page_size = 5000
    # Azure's blob batch takes at most 256 sub-requests; Azurite supports it too.
    delete_batch = 256
    not_found: ClassVar[tuple[type[Exception], ...]] = (ResourceNotFoundError,)

    def __init__(self, storage: AzureStorage) -> None:
        super().__init__(storage)
        self._local = threading.local()
        self._lock = threading.Lock()
        #: The Content-MD5 (hex) each Put Blob was answered with, by the blob's URL path, until upload() takes it.
        self._put: dict[str, str] = {}
        self.hooks = {"raw_request_hook": self._on_request, "raw_response_hook": self._on_response}

    @property
    def container(self) -> Any:
        """This thread's container client (collectfast's own copy of the storage), counted."""
        storage = getattr(self._local, "storage", None)
        if storage is None:
            storage = self._local.storage = worker_copy(self.storage, self.hooks)
        return storage.client

    @property
    def where(self) -> str:
        return f"{_endpoint(self.storage).rstrip('/')}/{self.storage.azure_container}/{self.prefix}"

    def key(self, name: str) -> str:
        return str(self.storage._get_valid_path(clean_name(name)))

    def _on_request(self, request: Any) -> None:
        kind = request_kind(request.http_request.method, request.http_request.url)
        counting.record(kind)

    def _on_response(self, response: Any) -> None:
        request, answer = response.http_request, response.http_response
        query = parse_qs(urlsplit(request.url).query)
        # Only a Put Blob's Content-MD5 is the blob's; Put Block List's is that of the block list.
        if request.method != "PUT" or "comp" in query or not 200 <= answer.status_code < 300:
            return
        path = unquote(urlsplit(request.url).path)
        md5 = answer.headers.get("Content-MD5") or ""
        with self._lock:
            self._put[path] = base64.b64decode(md5).hex() if md5 else ""

    def _unavailable(self, action: str, error: AzureError) -> Unavailable:
        return Unavailable(azure_error_message(self.storage, action, error))

    def list_pages(self, names: Collection[str] = ()) -> Iterator[Page]:
        try:
            blobs = self.container.list_blobs(name_starts_with=self.prefix, results_per_page=self.page_size)
            for page in blobs.by_page():
                yield [
                    RemoteObject(blob.name, _hex(blob.content_settings.content_md5), int(blob.size), blob.last_modified)
                    for blob in page
                ]
        except AzureError as error:
            raise CommandError(self.explain("Listing the blobs", error)) from error

    def stat(self, key: str) -> RemoteObject | None:
        try:
            props = self.container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError as error:
            if _missing_container(error):
                raise self._unavailable(f"Checking {self.url(key)}", error) from error
            return None
        except AzureError as error:
            raise self._unavailable(f"Checking {self.url(key)}", error) from error
        return RemoteObject(key, _hex(props.content_settings.content_md5), int(props.size), props.last_modified)

    def write_options(self, key: str) -> dict[str, Any]:
        return dict(self.storage._get_content_settings_parameters(key))

    def predict(self, path: str, local_storage: Storage, key: str) -> tuple[str, int] | None:
        # AzureStorage stores the local bytes as they are (it has no gzip option).
        return file_md5(local_storage, path), local_storage.size(path)

    def worker_storage(self, storage: Storage) -> Storage:
        return cast(Storage, worker_copy(storage, self.hooks))

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, worker: Storage
    ) -> tuple[str, RemoteObject | None]:
        azure = cast(AzureStorage, worker)
        key = azure._get_valid_path(prefixed_path)
        with local_storage.open(path, "rb") as source:
            # The storage's own _save: the content settings and bytes stock collectstatic stores.
            saved = str(azure._save(prefixed_path, File(source)))
        with self._lock:
            md5 = self._put.pop(unquote(urlsplit(azure.client.get_blob_client(key).url).path), "")
        # A blob committed from blocks (over max_single_put_size) has no Content-MD5: nothing to record.
        return saved, RemoteObject(key, md5, local_storage.size(path)) if md5 else None

    def delete(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        try:
            answers = list(self.container.delete_blobs(*keys, raise_on_any_failure=False))
        except AzureError as error:
            raise CommandError(self.explain("Deleting blobs", error)) from error
        # 404: already gone, which is what a delete wants.
        return {
            key: f"{answer.status_code} {answer.reason}".strip()
            for key, answer in zip(keys, answers, strict=True)
            if not (200 <= answer.status_code < 300 or answer.status_code == 404)
        }

    def read_object(self, key: str) -> tuple[bytes, str] | None:
        try:
            download = self.container.download_blob(key)
            return download.readall(), str(download.properties.etag)
        except ResourceNotFoundError as error:
            if _missing_container(error):
                raise self._unavailable(f"Reading {self.url(key)}", error) from error
            return None
        except AzureError as error:
            raise self._unavailable(f"Reading {self.url(key)}", error) from error

    def write_object(self, key: str, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        condition: dict[str, Any] = {"overwrite": True}
        if conditional and replaces:
            condition.update(etag=replaces, match_condition=MatchConditions.IfNotModified)
        elif conditional:
            condition["overwrite"] = False  # If-None-Match: *
        settings_ = ContentSettings(content_type="application/json", cache_control="no-cache")
        stream, size = sized(data)
        try:
            answer = self.container.get_blob_client(key).upload_blob(
                stream, length=size, content_settings=settings_, **condition
            )
        except (ResourceModifiedError, ResourceExistsError) as error:
            # 412: changed since read; 409: created since read.
            raise WriteConflict(_code(error)) from error
        except ResourceNotFoundError as error:
            if replaces and conditional and not _missing_container(error):
                raise WriteConflict(_code(error)) from error  # deleted since read
            raise self._unavailable(f"Writing {self.url(key)}", error) from error
        except AzureError as error:
            raise self._unavailable(f"Writing {self.url(key)}", error) from error
        return str(answer["etag"])

    def explain(self, action: str, error: Exception) -> str:
        return azure_error_message(self.storage, action, error)

    @staticmethod
    def diagnose(error: BaseException, storage: Any) -> errors.Diagnosis | None:
        return diagnose_azure(error, storage)


def _hex(md5: bytes | bytearray | None) -> str:
    return bytes(md5).hex() if md5 else ""
