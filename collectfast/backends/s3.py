"""The S3 backend: every request collectfast makes to S3 and S3-compatible servers, through boto3.

Listing (ListObjectsV2, key ranges at once), uploads with django-storages' own
key, parameters and gzip, DeleteObjects, conditional PutObject for the deploy
manifest, one client shared by the worker threads, request counting, and what each
botocore error means (collectfast.errors) in words that name the fix.
"""

from __future__ import annotations

import contextlib
import copy
import io
import queue
import re
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import IO, Any, cast

from boto3.exceptions import S3UploadFailedError
from botocore import handlers as botocore_handlers
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserFactory, RestXMLParser
from botocore.utils import determine_content_length, parse_timestamp
from django.core.files import File
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from s3transfer.utils import ChunksizeAdjuster
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from collectfast import counting, errors
from collectfast.backends.base import (
    Backend,
    Body,
    ConditionsUnsupported,
    Page,
    RemoteObject,
    Unavailable,
    WriteConflict,
    location_prefix,
)
from collectfast.conf import settings
from collectfast.hashing import BLOCK_SIZE, Fingerprint, stream_fingerprint
from collectfast.object_parameters import PathParameters, storage_hashed_names

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")

#: ListObjectsV2 answers up to this many keys per request.
PAGE_KEYS = 1000
#: A listing of more local files than this is cut into key ranges listed at once (at most one per thread).
RANGE_KEYS = 5000
#: Ranges listed at once, whatever COLLECTFAST_THREADS says: eight already cut a 100-page listing's
#: latency eightfold, and more pages at once can make a small S3-compatible server answer past the read timeout.
RANGES_AT_ONCE = 8
#: s3transfer's threads for the one upload in parts at a time (its default ``max_concurrency``).
TRANSFER_THREADS = 10


_TRANSIENT_CODES = {
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_REFUSED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"}


def _code(error: ClientError) -> tuple[int, str]:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return status, str(error.response.get("Error", {}).get("Code", ""))


def s3_error_message(storage: S3Storage, action: str, error: Exception) -> str:
    """Explain a failed request against the bucket, naming the cause and the fix."""
    bucket = storage.bucket_name
    where = storage.endpoint_url or "AWS S3"
    if isinstance(error, ClientError):
        _, code = _code(error)
        if code == "NoSuchBucket":
            return (
                f"The bucket {bucket!r} does not exist at {where}. Create it, or set the "
                "bucket_name OPTION of STORAGES['staticfiles'] (AWS_STORAGE_BUCKET_NAME) to an existing bucket."
            )
        if code in _CREDENTIAL_CODES:
            return (
                f"{action} in bucket {bucket!r} at {where} was refused ({code}): the credentials are wrong or "
                "expired. Check access_key and secret_key (AWS_S3_ACCESS_KEY_ID / AWS_S3_SECRET_ACCESS_KEY) "
                "or the environment's AWS credentials."
            )
        if code in _REFUSED_CODES:
            return (
                f"{action} in bucket {bucket!r} at {where} was refused ({code}). Check the credentials, "
                "and that they allow s3:ListBucket, s3:GetObject and s3:PutObject on the bucket."
            )
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return (
            f"{action} in bucket {bucket!r} at {where} needs AWS credentials, and none were found ({error}). "
            "Set access_key and secret_key in STORAGES['staticfiles'] OPTIONS, or the environment's AWS credentials."
        )
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return (
            f"{action} in bucket {bucket!r}: {where} could not be reached ({error}). Check endpoint_url "
            "(AWS_S3_ENDPOINT_URL) and the network."
        )
    return f"{action} in bucket {bucket!r} at {where} failed: {error}"


def diagnose_s3(error: BaseException, storage: Any) -> errors.Diagnosis | None:
    """What a boto3 error means for the whole deploy (see collectfast.errors)."""
    if isinstance(error, S3UploadFailedError) and isinstance(error.__cause__ or error.__context__, Exception):
        # boto3's upload_file wraps the ClientError of a failed part: what it means is the ClientError's.
        return diagnose_s3(error.__cause__ or error.__context__, storage)  # type: ignore[arg-type]

    def shared(cause: str, stop_after: int = 1, transient: bool = False) -> errors.Diagnosis:
        if isinstance(storage, S3Storage) and isinstance(error, Exception):
            explanation = s3_error_message(storage, "Uploading", error)
        else:
            explanation = f"{type(error).__name__}: {error}"
        return errors.Diagnosis(transient, cause, stop_after, explanation)

    if isinstance(error, ClientError):
        status, code = _code(error)
        if code == "NoSuchBucket":
            return shared("bucket")
        if code in _CREDENTIAL_CODES:
            return shared("credentials")
        if code in _REFUSED_CODES or status == 403:
            return shared("access", stop_after=3)
        return errors.Diagnosis(transient=status >= 500 or status == 429 or code in _TRANSIENT_CODES)
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return shared("credentials")
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return shared("endpoint", stop_after=3, transient=True)
    if isinstance(error, ReadTimeoutError):
        return errors.Diagnosis()  # botocore already retried it: another round would only double the wait
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return errors.Diagnosis(transient=True)
    return None


errors.register(diagnose_s3)


class WorkerStorages:
    """Copies of an S3Storage for worker threads: a boto3 resource each, over one client they share.

    boto3's clients are thread-safe, its resources are not. One client for every thread,
    instead of one per thread, saves about 0.4 MB per thread (its endpoint, event hooks and
    connection pool), and its pool keeps connections for them all. Its session reads S3's model
    (about 12 MB once parsed) through the loader of ``storage``'s own client, so the user's storage
    and the copies hold it once.
    """

    def __init__(
        self,
        layer: PathParameters | None = None,
        storage: S3Storage | None = None,
        watch: Callable[[Any], None] | None = None,
    ) -> None:
        #: COLLECTFAST_OBJECT_PARAMETERS, layered on every copy (never on the user's storage).
        self.layer = layer
        #: Hooks the shared client once it is made, before any thread can send on it.
        self._watch = watch
        #: The user's storage's client on the thread that made this (the command's): its model is shared.
        self._model_of: Any = None
        # A bad endpoint, say: the first request raises it again, and reports it.
        with contextlib.suppress(Exception):
            self._model_of = None if storage is None else storage.connection.meta.client
        self._lock = threading.Lock()
        self._resource: Any = None
        self.started = datetime.now(timezone.utc)
        self._multipart_keys: set[str] = set()
        # s3transfer holds up to 10 parts of 8 MiB in memory per multipart upload, and
        # sends them on threads of its own: one such upload at a time keeps memory
        # bounded whatever the number of large files, and the bandwidth busy.
        self.multipart_slot = threading.Semaphore(1)

    def for_this_thread(self, storage: Storage) -> S3Storage:
        """A copy of ``storage`` whose resource is this thread's own, over the shared client."""
        worker = self.copy(storage)
        with self._lock:
            if self._resource is None:
                connect(worker, model_of=self._model_of)
                self._resource = worker._connections.connection
                counting.instrument(self._resource.meta.client)
                if self._watch is not None:
                    self._watch(self._resource.meta.client)
                return worker
            resource = self._resource
        worker._connections.connection = type(resource)(client=resource.meta.client)
        return worker

    def copy(self, storage: Storage) -> S3Storage:
        """A copy of ``storage`` without connections, with the per-path parameters layered on."""
        copied = cast(S3Storage, copy.copy(storage))  # django-storages drops its connections when copied
        if self.layer is not None:
            self.layer.layer(copied, location_prefix(copied))
        return copied

    def sending_in_parts(self, key: str) -> None:
        with self._lock:
            self._multipart_keys.add(key)

    def abort_abandoned(self, storage: S3Storage) -> int:
        """Abort the multipart uploads of keys this run sent in parts that began before it: a killed run's.

        One ListMultipartUploads, only after a run that sent a file in parts; S3 keeps the
        parts of an upload never completed or aborted (and bills them) until a lifecycle rule ends it.
        """
        with self._lock:
            keys = set(self._multipart_keys)
        if not keys:
            return 0
        client = self.client(storage)
        aborted = 0
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=storage.bucket_name, Prefix=location_prefix(storage)
        )
        for page in pages:
            for upload in page.get("Uploads", ()):
                if upload["Key"] in keys and upload["Initiated"] < self.started:
                    client.abort_multipart_upload(
                        Bucket=storage.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def finish(self, storage: S3Storage, warn: Callable[[str], None]) -> str | None:
        """Abort abandoned uploads after a run; what to add to the summary, if anything."""
        try:
            aborted = self.abort_abandoned(storage)
        except (ClientError, BotoCoreError) as error:
            warn(s3_error_message(storage, "Aborting abandoned multipart uploads", error))
            return None
        if not aborted:
            return None
        return f"Aborted {aborted} abandoned multipart upload{'' if aborted == 1 else 's'}."

    def client(self, storage: Storage) -> Any:
        """The shared client, counted, for requests outside uploads (listing, deletes, the manifest)."""
        with self._lock:
            resource = self._resource
        return (resource or self.for_this_thread(storage).connection).meta.client


def range_bounds(sorted_keys: Sequence[str], threads: int) -> list[str]:
    """Where to cut a listing of about these keys into ranges listed at once: the last key of each range but the last.

    Ranges hold whole pages (a multiple of 1,000 of the keys), at least RANGE_KEYS keys, at most
    ``threads`` ranges and at most RANGES_AT_ONCE. When the bucket holds exactly these keys, every
    range but the last ends on its bound and no request is spent beyond it: ceil(keys / 1000) LIST,
    as a sequential listing.
    """
    ranges = min(threads, RANGES_AT_ONCE, -(-len(sorted_keys) // RANGE_KEYS))
    if ranges <= 1:
        return []
    pages = -(-len(sorted_keys) // PAGE_KEYS)
    chunk = PAGE_KEYS * -(-pages // ranges)
    return [sorted_keys[end - 1] for end in range(chunk, len(sorted_keys), chunk)]


def list_range(client: Any, bucket: str, prefix: str, after: str | None, last: str | None) -> Iterator[Page]:
    """The objects under ``prefix`` with ``after`` < key <= ``last`` (None: unbounded), a page at a time.

    Starts with ``StartAfter``; stops at the first page that reaches ``last``, so it costs at most
    one request more than the range's own keys need.
    """
    params = {"Bucket": bucket, "Prefix": prefix, **({"StartAfter": after} if after is not None else {})}
    pages = client.get_paginator("list_objects_v2").paginate(**params, PaginationConfig={"PageSize": PAGE_KEYS})
    # Without a location the keys are the run's names, which Deploy.queue interned: a listing kept for
    # the whole run then holds those strings, not a copy of each (8 MB at 100,000 keys).
    own = sys.intern if not prefix else str
    for page in pages:
        listed: Page = []
        done = False
        for obj in page.get("Contents", ()):
            key = own(obj["Key"])
            if after is not None and key <= after:
                continue  # some servers include the StartAfter key
            if last is not None and key >= last:
                done = True
                if key > last:
                    break
            listed.append(RemoteObject(key, obj["ETag"].strip('"'), int(obj["Size"]), obj.get("LastModified")))
            if done:
                break
        yield listed
        if done:
            return


class _Body(io.RawIOBase):
    """A response body whose failures mid-way (a dropped connection, a read timeout) are Unavailable."""

    def __init__(self, body: Any, unavailable: Callable[[Exception], Unavailable]) -> None:
        self._body = body
        self._unavailable = unavailable

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            if hasattr(self._body, "readinto"):
                return int(self._body.readinto(buffer))
            data = self._body.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        except (BotoCoreError, ClientError, OSError) as error:
            raise self._unavailable(error) from error

    def close(self) -> None:
        self._body.close()
        super().close()


def user_provided(config: Config) -> set[str]:
    """The options a botocore Config was given explicitly (botocore keeps them in a private attribute)."""
    return set(getattr(config, "_user_provided_options", {}))


def deploy_config(config: Config | None) -> Config:
    """The storage's client config, with collectfast's timeouts and retries where it sets none.

    botocore's defaults (60 s to connect, 60 s per read, 5 legacy attempts) let one hung
    request hold a deploy for minutes; these fail it in about half a minute.
    """
    config = config or Config()
    given = user_provided(config)
    ours: dict[str, Any] = {}
    if "connect_timeout" not in given:
        ours["connect_timeout"] = settings.connect_timeout
    if "read_timeout" not in given:
        ours["read_timeout"] = settings.read_timeout
    if "retries" not in given:
        ours["retries"] = {"mode": "standard"}  # 3 attempts, with backoff
    # One client serves every worker, the ranges of a listing and s3transfer's threads for one file in parts.
    wanted = settings.threads + RANGES_AT_ONCE + TRANSFER_THREADS
    if getattr(config, "max_pool_connections", 0) < wanted:  # botocore's default: 10
        ours["max_pool_connections"] = wanted
    return config.merge(Config(**ours)) if ours else config


def path_parameters(storage: Storage) -> PathParameters | None:
    """COLLECTFAST_OBJECT_PARAMETERS for a run on ``storage`` (None when unset), knowing its hashed names."""
    rules = settings.object_parameters
    return PathParameters(rules, storage_hashed_names(storage)) if rules else None


# django-storages' and botocore's private parts, each used through one function pinned by a test
# (tests/test_s3_private.py): no public way gives these.


def storage_key(storage: S3Storage, name: str) -> str:
    """The key S3Storage stores ``name`` under: cleaned, under its location."""
    return str(storage._normalize_name(clean_name(name)))


def compress(storage: S3Storage, source: IO[bytes]) -> IO[bytes]:
    """The gzipped bytes S3Storage uploads for ``source`` (its own compressor, so the bytes are identical)."""
    return cast(IO[bytes], storage._compress_content(source))


def gzips(storage: S3Storage, params: dict[str, Any]) -> bool:
    """Whether S3Storage gzips an upload with these write parameters (its rule in ``_save``)."""
    return bool(
        storage.gzip and params["ContentType"] in storage.gzip_content_types and "ContentEncoding" not in params
    )


def save(storage: S3Storage, name: str, source: IO[bytes]) -> str:
    """S3Storage's own upload of ``source`` under ``name``, overwriting: ``_save``, not save()."""
    return str(storage._save(name, File(source)))


def saves_as_stock(storage: S3Storage) -> bool:
    """Whether the storage uploads with S3Storage's own ``_save`` (a subclass may override it)."""
    return type(storage)._save is S3Storage._save


def connect(storage: S3Storage, *, model_of: Any = None) -> None:
    """Give ``storage`` (a copy, without connections) a resource from a session made from its settings.

    S3Storage keeps its resource per thread in ``_connections``; its session factory reads the storage's
    credentials. The session reads S3's model and endpoint data (about 12 MB once parsed) through the
    botocore loader of the client ``model_of``, if given, instead of parsing its own.
    """
    session = storage._create_session()
    if model_of is not None:
        session._session.register_component("data_loader", model_of._loader)
    parsers = ParserFactory()
    parsers.set_parser_defaults(timestamp_parser=parse_time)
    session._session.register_component("response_parser_factory", parsers)
    resource = storage._connections.connection = session.resource(
        "s3",
        region_name=storage.region_name,
        use_ssl=storage.use_ssl,
        endpoint_url=storage.endpoint_url,
        config=deploy_config(storage.client_config),
        verify=storage.verify,
    )
    events = resource.meta.client.meta.events
    stock = getattr(botocore_handlers, "_handle_200_error", None)
    if stock is not None:  # else botocore's own check, whatever it is now, stays
        events.unregister("before-parse.s3.*", stock)
        events.register_first("before-parse.s3.*", partial(handle_200_error, stock))


def handle_200_error(stock: Callable[..., None], operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """botocore's check for an S3 error inside a 200 answer, without parsing a whole listing page twice.

    botocore parses the body to see whether its root is ``<Error>`` or it is cut short, then parses it again
    for the answer: about 6 ms of CPU per page of 1,000 keys. A ListObjectsV2 page that ends with the closing
    tag of its root is neither; any other answer takes botocore's check.
    """
    if operation_model.name == "ListObjectsV2" and response_dict and response_dict.get("status_code") == 200:
        body = response_dict.get("body")
        if isinstance(body, bytes) and body[-64:].rstrip().endswith(b"</ListBucketResult>"):
            return
    stock(operation_model=operation_model, response_dict=response_dict, **kwargs)


def parse_time(value: str) -> datetime:
    """A timestamp of an answer, as botocore parses it, four times faster for a listing's ISO 8601 times.

    botocore parses each with dateutil: about 0.2 s of CPU per page of 1,000 keys, which set the
    pace of a 100-page listing. Other forms (the RFC 1123 dates of headers) go to botocore.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)
    return parsed if parsed.tzinfo is not None else parse_timestamp(value)


class ParserFactory(ResponseParserFactory):
    """botocore's parsers, with :class:`ListingParser` for S3's XML answers."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return ListingParser(**getattr(self, "_defaults", {}))
        return super().create_parser(protocol_name)


class ListingParser(RestXMLParser):
    """botocore's parser for S3's answers, with a quick way through a listing's objects.

    botocore parses each element of a ``<Contents>`` through the model, member by member: about
    38 ms of CPU per page of 1,000 keys (15 ms this way), held under the GIL while the workers hash.
    An object of only these simple members is read directly, with the same result;
    any other member (an owner, a restore status) takes botocore's way.
    """

    #: Members read as the element's text, and how.
    _SIMPLE: dict[str, Callable[[str], Any] | None] = {
        "Key": None,
        "ETag": None,
        "StorageClass": None,
        "ChecksumType": None,
        "Size": int,
        "LastModified": parse_time,
    }
    #: Tags as they come (in S3's namespace), to member names.
    _names: dict[str, str] = {}

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        if (
            shape.name != "Object"
            or isinstance(node, list)
            or getattr(self, "_timestamp_parser", None) is not parse_time
        ):
            return self._generic(shape, node)
        parsed: dict[str, Any] = {}
        names, simple = self._names, self._SIMPLE
        for child in node:
            name = names.get(child.tag)
            if name is None:
                name = child.tag.rpartition("}")[2]
                if len(names) < 64:  # the tags of one or two namespaces, whatever a server sends
                    names[child.tag] = name
            text = child.text or ""
            if len(child):
                return self._generic(shape, node)
            if name == "ChecksumAlgorithm":
                parsed.setdefault(name, []).append(text)  # a flattened list: the element repeats
            elif name not in simple or name in parsed:
                return self._generic(shape, node)
            else:
                convert = simple[name]
                parsed[name] = text if convert is None else convert(text)
        return parsed

    def _generic(self, shape: Any, node: Any) -> Any:
        return super()._handle_structure(shape, node)  # type: ignore[misc]


def write_parameters(storage: S3Storage, key: str, content: Any = None) -> dict[str, Any]:
    """The parameters django-storages uploads ``key`` with: content type, ACL, object parameters.

    On collectfast's copies of the storage (WorkerStorages) they include COLLECTFAST_OBJECT_PARAMETERS:
    uploads, the ETag prediction, the gzip decision and the manifest's options fingerprint all read them here.
    """
    return dict(storage._get_write_parameters(key, content))


def save_in_place(
    path: str, prefixed_path: str, local_storage: Storage, worker: S3Storage, workers: WorkerStorages
) -> str:
    """Upload one file with a worker's storage, overwriting the key; return the name saved.

    Not save(): with AWS_S3_FILE_OVERWRITE = False it would pick another name, and
    collectstatic overwrites in place, as stock does after its DELETE. Uploads
    that s3transfer splits into parts wait for ``workers.multipart_slot``.
    """
    config = worker.transfer_config
    single_part = local_storage.size(path) < config.multipart_threshold
    with local_storage.open(path, "rb") as source:
        if single_part and saves_as_stock(worker):
            saved = put_single_part(worker, prefixed_path, source, config.multipart_threshold)
            if saved is not None:
                return saved
            source.seek(0)
            single_part = False  # gzip made it reach the threshold
        if not single_part:
            workers.sending_in_parts(storage_key(worker, prefixed_path))
            with workers.multipart_slot:
                return upload_in_parts(worker, prefixed_path, source, local_filename(local_storage, path))
        if not config.use_threads:
            return save(worker, prefixed_path, source)
        # s3transfer would start a thread pool of its own for this one small file.
        serial = copy.copy(config)
        serial.use_threads = False
        worker.transfer_config = serial
        try:
            return save(worker, prefixed_path, source)
        finally:
            worker.transfer_config = config


def local_filename(local_storage: Storage, path: str) -> str | None:
    try:
        return str(local_storage.path(path))
    except NotImplementedError:
        return None


def upload_in_parts(worker: S3Storage, name: str, source: IO[bytes], filename: str | None) -> str:
    """``S3Storage._save`` for a file s3transfer splits into parts: from its path when it has one.

    The same key, parameters and part size; s3transfer then reads each part as it sends it, where
    from an open file it holds up to 10 parts of 8 MiB in memory. Gzipped bodies go through ``_save``.
    """
    cleaned = clean_name(name)
    key = storage_key(worker, name)
    params = write_parameters(worker, key, source)
    if filename is None or not saves_as_stock(worker) or gzips(worker, params):
        return save(worker, name, source)
    worker.bucket.Object(key).upload_file(filename, ExtraArgs=params, Config=worker.transfer_config)
    return str(cleaned)


def put_single_part(worker: S3Storage, name: str, source: IO[bytes], threshold: int) -> str | None:
    """``S3Storage._save`` for a file s3transfer would send in one PutObject, sent as that one PutObject.

    The same key, parameters and (gzipped) bytes as django-storages, without
    building a TransferManager per file. None when gzip made the body reach the
    multipart threshold: s3transfer would split it, so it must be the one to send it.
    """
    cleaned = clean_name(name)
    key = storage_key(worker, cleaned)
    params = write_parameters(worker, key, source)
    body: SmallReads | bytes = SmallReads(source)
    if gzips(worker, params):
        compressed: bytes = compress(worker, source).read()
        if len(compressed) >= threshold:
            return None
        body = compressed
        params["ContentEncoding"] = "gzip"
    worker.connection.meta.client.put_object(Bucket=worker.bucket_name, Key=key, Body=body, **params)
    return str(cleaned)


class SmallReads:
    """A file for botocore to send, read at most ``BLOCK_SIZE`` bytes, or the bytes left, at a time.

    botocore reads a body in 1 MB blocks (the payload hash, the checksum): a buffered file
    allocates each block whole, then shrinks it to the bytes read. On 20 workers that left
    the heap fragmented by about 0.4 KB of RSS per uploaded file.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        position = file.tell()
        self._size = file.seek(0, io.SEEK_END)
        file.seek(position)

    def read(self, size: int | None = -1) -> bytes:
        left = max(self._size - self._file.tell(), 0)
        if size is None or size < 0:
            return self._file.read(left)
        return self._file.read(min(size, left, BLOCK_SIZE))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


_ENCRYPTION_PARAMETERS = ("ServerSideEncryption", "SSEKMSKeyId", "SSECustomerAlgorithm", "SSECustomerKey")
_CUSTOMER_KEY_PARAMETERS = ("SSECustomerAlgorithm", "SSECustomerKey")
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
# HEAD cannot show these; documented in docs/manifest.rst.
_UNCHECKED = ("ACL", "GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP")


def _missing(error: ClientError) -> bool:
    return _code(error)[1] in ("NoSuchKey", "404")


def is_plain_md5(etag: str) -> bool:
    """Whether an ETag is the md5 of the object's bytes (single part, no KMS or customer key)."""
    return bool(_PLAIN_MD5.match(etag))


def unpredictable(params: dict[str, Any]) -> bool:
    """KMS and customer-key ETags are not md5s: nothing can prove such an object unchanged."""
    return bool(params.get("SSECustomerKey")) or str(params.get("ServerSideEncryption", "")).startswith("aws:kms")


class S3Backend(Backend[S3Storage]):
    """django-storages' ``S3Storage`` and S3-compatible servers."""

    family = "s3"
    diagnose = staticmethod(diagnose_s3)
    #: What django-storages raises for a missing object on delete (stock collectstatic's delete_not_found_exception).
    not_found_errors: tuple[type[Exception], ...] = (ClientError,)

    def __init__(self, storage: S3Storage) -> None:
        super().__init__(storage)
        self.path_parameters = path_parameters(storage)
        self.recorder = UploadRecorder()
        self.workers = WorkerStorages(self.path_parameters, storage, watch=self.recorder.watch)
        #: The storage decisions read write parameters from: with the per-path ones when configured.
        self.decisions = self.workers.copy(storage) if self.path_parameters else storage

    @property
    def client(self) -> Any:
        """This thread's counted client for requests outside uploads."""
        return self.workers.client(self.storage)

    @property
    def where(self) -> str:
        return f"s3://{self.storage.bucket_name}/{self.prefix}"

    def key(self, name: str) -> str:
        return storage_key(self.storage, name)

    def learn_hashed_names(self, names: set[str]) -> None:
        """Names post-processing hashed in this run: COLLECTFAST_OBJECT_PARAMETERS may pick them out."""
        if self.path_parameters is not None:
            self.path_parameters.learn_hashed(names)

    # Reading.

    def range_bounds(self, names: Collection[str]) -> list[str]:
        """Bounds cutting the listing of the keys of these names into ranges (see :func:`range_bounds`)."""
        if len(names) <= RANGE_KEYS or settings.threads <= 1:
            return []
        ordered = sorted(names)
        # Keys sort as their names do but for a cleaned name now and then: sorted again, bounds only need to increase.
        return sorted({self.key(name) for name in range_bounds(ordered, settings.threads)})

    def list_pages(self, names: Collection[str] = ()) -> Iterator[Page]:
        """1,000 objects per request; with many ``names``, key ranges listed at once on threads of their own."""
        bucket, prefix = self.storage.bucket_name, self.prefix
        bounds = self.range_bounds(names) if names else []
        try:
            if not bounds:
                yield from list_range(self.client, bucket, prefix, None, None)
                return
            yield from self._list_ranges(bounds)
        except (ClientError, BotoCoreError) as error:
            raise CommandError(self.explain("Listing the objects", error)) from error

    def _list_ranges(self, bounds: Sequence[str]) -> Iterator[Page]:
        pages: queue.Queue[Page | BaseException | None] = queue.Queue()

        def one(after: str | None, last: str | None) -> None:
            try:
                client = self.workers.client(self.storage)
                for page in list_range(client, self.storage.bucket_name, self.prefix, after, last):
                    pages.put(page)
            except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
                pages.put(error)
            finally:
                pages.put(None)

        edges: list[str | None] = [None, *bounds, None]
        executor = ThreadPoolExecutor(len(edges) - 1, thread_name_prefix="collectfast_list")
        try:
            for i in range(len(edges) - 1):
                executor.submit(one, edges[i], edges[i + 1])
            running = len(edges) - 1
            while running:
                item = pages.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def stat(self, key: str) -> RemoteObject | None:
        try:
            response = self.client.head_object(
                Bucket=self.storage.bucket_name, Key=key, **self._parameters(key, _CUSTOMER_KEY_PARAMETERS)
            )
        except ClientError as error:
            if _missing(error):
                return None
            raise Unavailable(self.explain(f"Checking {key!r}", error)) from error
        except BotoCoreError as error:
            raise Unavailable(self.explain(f"Checking {key!r}", error)) from error
        etag = str(response["ETag"]).strip('"')
        return RemoteObject(key, etag, int(response["ContentLength"]), response.get("LastModified"))

    # What an upload stores.

    def gzips(self, params: dict[str, Any]) -> bool:
        """Whether django-storages gzips an upload with these write parameters."""
        return gzips(self.storage, params)

    def write_options(self, key: str) -> dict[str, Any]:
        # The same parameters an upload sends, COLLECTFAST_OBJECT_PARAMETERS included.
        params = write_parameters(self.decisions, key)
        # django-storages decides on gzip in _save(), from these same parameters.
        if self.gzips(params):
            params["ContentEncoding"] = "gzip"
        return params

    def predict(self, path: str, local_storage: Storage, key: str) -> tuple[str, int] | None:
        params = write_parameters(self.decisions, key)
        if unpredictable(params):
            return None
        local = self.local_fingerprint(path, local_storage, params)
        return local.etag, local.size

    def stores_as_is(self, key: str) -> bool:
        return not self.gzips(write_parameters(self.decisions, key))

    def local_fingerprint(self, path: str, local_storage: Storage, params: dict[str, Any]) -> Fingerprint:
        """The ETag and size S3 reports after django-storages uploads this local file."""
        storage = self.storage
        config = storage.transfer_config
        adjuster = ChunksizeAdjuster()
        with local_storage.open(path, "rb") as source:
            if self.gzips(params):
                # The same compressor django-storages uploads with, so the bytes are identical.
                stream: IO[bytes] = compress(storage, source)
                part_size = adjuster.adjust_chunksize(config.multipart_chunksize)
            else:
                stream = source
                part_size = adjuster.adjust_chunksize(config.multipart_chunksize, local_storage.size(path))
            return stream_fingerprint(stream, config.multipart_threshold, part_size)

    def stored_with(self, key: str, options: dict[str, Any]) -> bool:
        """Whether the object at ``key`` carries these write options, as far as HEAD can show."""
        unknown = set(options) - {*_HEADERS, *_CHECKED_IF_SET, *_UNCHECKED, "Metadata"}
        if unknown:
            return False  # an option HEAD cannot confirm: do not vouch for it
        try:
            head = self.client.head_object(Bucket=self.storage.bucket_name, Key=key)
        except ClientError as error:
            if _missing(error):
                return False  # deleted since the listing
            raise
        if any(options.get(header) != head.get(header) for header in _HEADERS):
            return False
        if any(options[name] != head.get(name) for name in _CHECKED_IF_SET if name in options):
            return False
        metadata = {str(k).lower(): v for k, v in options.get("Metadata", {}).items()}
        return bool(metadata == head.get("Metadata", {}))

    # Writing.

    def worker_storage(self, storage: Storage) -> Storage:
        return cast(Storage, self.workers.for_this_thread(storage))

    def upload(
        self, path: str, prefixed_path: str, local_storage: Storage, worker: Storage
    ) -> tuple[str, RemoteObject | None]:
        storage = cast(S3Storage, worker)
        expected = self.key(prefixed_path)
        self.recorder.expect(expected)
        try:
            saved = save_in_place(path, prefixed_path, local_storage, storage, self.workers)
        finally:
            self.recorder.forget(expected)
        key = self.key(saved)
        stored = self.recorder.pop(key)
        return saved, None if stored is None else RemoteObject(key, *stored)

    def delete(self, keys: list[str]) -> dict[str, str]:
        try:
            response = self.client.delete_objects(
                Bucket=self.storage.bucket_name, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )
        except (ClientError, BotoCoreError) as error:
            raise CommandError(self.explain("Deleting objects", error)) from error
        return {
            str(error["Key"]): f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
            for error in response.get("Errors", ())
        }

    def _parameters(self, key: str, names: Sequence[str]) -> dict[str, Any]:
        params = write_parameters(self.storage, key)
        return {name: params[name] for name in names if name in params}

    def conditional_writes(self) -> bool:
        """Whether this botocore knows PutObject's IfMatch (added in November 2024)."""
        operation = self.client.meta.service_model.operation_model("PutObject")
        return "IfMatch" in operation.input_shape.members

    def read_object(self, key: str) -> tuple[bytes, str] | None:
        opened = self.open_object(key)
        if opened is None:
            return None
        with opened[0] as body:
            return body.read(), opened[1]

    def open_object(self, key: str) -> tuple[IO[bytes], str] | None:
        action = f"Reading s3://{self.storage.bucket_name}/{key}"
        try:
            response = self.client.get_object(
                Bucket=self.storage.bucket_name, Key=key, **self._parameters(key, _CUSTOMER_KEY_PARAMETERS)
            )
        except ClientError as error:
            if _missing(error):
                return None
            raise Unavailable(self.explain(action, error)) from error
        except BotoCoreError as error:
            raise Unavailable(self.explain(action, error)) from error
        body = _Body(response["Body"], lambda error: Unavailable(self.explain(action, error)))
        return io.BufferedReader(body), str(response["ETag"])

    def write_object(self, key: str, data: Body, *, replaces: str | None, conditional: bool = True) -> str:
        condition = {"IfMatch": replaces} if replaces else {"IfNoneMatch": "*"}
        action = f"Writing s3://{self.storage.bucket_name}/{key}"
        try:
            response = self.client.put_object(
                Bucket=self.storage.bucket_name,
                Key=key,
                Body=data,
                ContentType="application/json",
                CacheControl="no-cache",
                **self._parameters(key, _ENCRYPTION_PARAMETERS),
                **(condition if conditional else {}),
            )
            return str(response["ETag"])
        except ClientError as error:
            status, code = _code(error)
            # 412: changed since read; 409: a concurrent conditional write; 404: deleted since read.
            if conditional and (status in (409, 412) or (replaces and code in ("NoSuchKey", "404"))):
                raise WriteConflict(code) from error
            if conditional and (status == 501 or code == "NotImplemented"):
                raise ConditionsUnsupported(code) from error
            raise Unavailable(self.explain(action, error)) from error
        except BotoCoreError as error:
            raise Unavailable(self.explain(action, error)) from error

    # Errors and the end of a run.

    def explain(self, action: str, error: Exception) -> str:
        return s3_error_message(self.storage, action, error)

    def finish(self, warn: Callable[[str], None], *, dry_run: bool = False) -> str | None:
        return None if dry_run else self.workers.finish(self.storage, warn)


_CONTEXT_KEY = "collectfast_upload"


class UploadRecorder:
    """Record, per key, the ETag S3 answered to our PutObject / CompleteMultipartUpload and the bytes sent.

    s3transfer sends the requests of one upload from threads of its own, so
    requests are tied to their key through botocore's per-request context,
    never through the calling thread. The client is shared with other requests
    (the manifest's PutObject): only the keys an upload is under way for are recorded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expected: set[str] = set()
        self._stored: dict[str, tuple[str, int]] = {}
        self._parts: dict[str, dict[int, int]] = {}
        self._id = f"collectfast-upload-recorder-{id(self)}"

    def watch(self, client: Any) -> None:
        """Record the uploads ``client`` makes from now on; safe to call repeatedly."""
        events = client.meta.events
        for operation in ("PutObject", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"):
            event = f"provide-client-params.s3.{operation}"
            events.register(event, self._on_params, unique_id=f"{self._id}-params-{operation}")
        events.register("after-call.s3.PutObject", self._on_put, unique_id=f"{self._id}-put")
        events.register("after-call.s3.UploadPart", self._on_part, unique_id=f"{self._id}-part")
        events.register("after-call.s3.CompleteMultipartUpload", self._on_complete, unique_id=f"{self._id}-complete")
        # Uploads that end any other way are never completed: their parts would be kept forever.
        for event in (
            "after-call.s3.AbortMultipartUpload",
            "after-call-error.s3.AbortMultipartUpload",
            "after-call-error.s3.CompleteMultipartUpload",
        ):
            events.register(event, self._on_end, unique_id=f"{self._id}-{event}")

    def expect(self, key: str) -> None:
        """Record what the uploads of ``key`` store, until :meth:`forget`."""
        with self._lock:
            self._expected.add(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._expected.discard(key)

    def pop(self, key: str) -> tuple[str, int] | None:
        """What the last successful upload of ``key`` stored, once."""
        with self._lock:
            return self._stored.pop(key, None)

    def _on_params(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        # Read before botocore wraps the body (checksums, aws-chunked): its length is the object's.
        size = determine_content_length(params.get("Body")) if "Body" in params else None
        context[_CONTEXT_KEY] = (params.get("Key"), params.get("UploadId"), params.get("PartNumber"), size)

    def _on_put(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        key, _, _, size = context.get(_CONTEXT_KEY, (None, None, None, None))
        if http_response.status_code < 300 and key and size is not None and parsed.get("ETag"):
            with self._lock:
                if key in self._expected:
                    self._stored[key] = (parsed["ETag"].strip('"'), size)

    def _on_part(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        _, upload_id, number, size = context.get(_CONTEXT_KEY, (None, None, None, None))
        if http_response.status_code < 300 and upload_id and size is not None:
            with self._lock:
                # Keyed by part number: a retried part replaces, never adds to, the first attempt.
                self._parts.setdefault(upload_id, {})[number] = size

    def _on_end(self, context: dict[str, Any], **kwargs: Any) -> None:
        _, upload_id, _, _ = context.get(_CONTEXT_KEY, (None, None, None, None))
        with self._lock:
            self._parts.pop(upload_id, None)

    def _on_complete(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        key, upload_id, _, _ = context.get(_CONTEXT_KEY, (None, None, None, None))
        with self._lock:
            parts = self._parts.pop(upload_id, None)
            if http_response.status_code < 300 and key in self._expected and parts and parsed.get("ETag"):
                self._stored[key] = (parsed["ETag"].strip('"'), sum(parts.values()))
