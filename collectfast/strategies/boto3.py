"""The strategy for django-storages' ``S3Storage``: compare local checksums with listed ETags."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, Any, cast

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
from django.core.files import File
from django.core.files.storage import Storage
from django.core.management.base import CommandError
from s3transfer.utils import ChunksizeAdjuster
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from collectfast import counting, errors
from collectfast.conf import settings
from collectfast.hashing import Fingerprint, stream_fingerprint
from collectfast.object_parameters import PathParameters, storage_hashed_names
from collectfast.strategies.listing import ListingStrategy

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")

#: ListObjectsV2 answers up to this many keys per request.
PAGE_KEYS = 1000
#: A listing of more local files than this is cut into key ranges listed at once (at most one per thread).
RANGE_KEYS = 5000

#: ``(key, ETag unquoted, size)`` of listed objects, a page at a time.
Listed = list[tuple[str, str, int]]


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
    """Copies of an S3Storage for worker threads, each with a boto3 resource and client of its own.

    The resources come from one boto3 session, built one at a time under a lock:
    a session per thread would load S3's service model once per thread (about
    15 MB each).
    """

    def __init__(self, layer: PathParameters | None = None) -> None:
        #: COLLECTFAST_OBJECT_PARAMETERS, layered on every copy (never on the user's storage).
        self.layer = layer
        self._lock = threading.Lock()
        self._session: Any = None
        self._local = threading.local()
        self.started = datetime.now(timezone.utc)
        self._multipart_keys: set[str] = set()
        # s3transfer holds up to 10 parts of 8 MiB in memory per multipart upload, and
        # sends them on threads of its own: one such upload at a time keeps memory
        # bounded whatever the number of large files, and the bandwidth busy.
        self.multipart_slot = threading.Semaphore(1)
        self._idle_clients: list[Any] = []

    def for_this_thread(self, storage: Storage) -> S3Storage:
        worker = self.copy(storage)
        with self._lock:
            if self._session is None:
                self._session = worker._create_session()
            worker._connections.connection = self._session.resource(
                "s3",
                region_name=worker.region_name,
                use_ssl=worker.use_ssl,
                endpoint_url=worker.endpoint_url,
                config=deploy_config(worker.client_config),
                verify=worker.verify,
            )
        return worker

    def copy(self, storage: Storage) -> S3Storage:
        """A copy of ``storage`` without connections, with the per-path parameters layered on."""
        copied = cast(S3Storage, copy.copy(storage))  # django-storages drops its connections when copied
        if self.layer is not None:
            self.layer.layer(copied)
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
        location = str(storage.location).strip("/")
        aborted = 0
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=storage.bucket_name, Prefix=f"{location}/" if location else ""
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
        """This thread's client for requests outside uploads (listing, deletes, the manifest), counted."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.for_this_thread(storage).connection.meta.client
            counting.instrument(client)
        return client

    @contextmanager
    def borrowed_client(self, storage: Storage) -> Iterator[Any]:
        """A counted client of its own for one task on any thread (a range of a listing), kept for the next."""
        with self._lock:
            client = self._idle_clients.pop() if self._idle_clients else None
        if client is None:
            client = self.for_this_thread(storage).connection.meta.client
            counting.instrument(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle_clients.append(client)


def range_bounds(sorted_keys: Sequence[str], threads: int) -> list[str]:
    """Where to cut a listing of about these keys into ranges listed at once: the last key of each range but the last.

    Ranges hold whole pages (a multiple of 1,000 of the keys), at least RANGE_KEYS keys, at most
    ``threads`` ranges. When the bucket holds exactly these keys, every range but the last ends on its
    bound and no request is spent beyond it: ceil(keys / 1000) LIST, as a sequential listing.
    """
    ranges = min(threads, -(-len(sorted_keys) // RANGE_KEYS))
    if ranges <= 1:
        return []
    pages = -(-len(sorted_keys) // PAGE_KEYS)
    chunk = PAGE_KEYS * -(-pages // ranges)
    return [sorted_keys[end - 1] for end in range(chunk, len(sorted_keys), chunk)]


def list_range(client: Any, bucket: str, prefix: str, after: str | None, last: str | None) -> Iterator[Listed]:
    """The objects under ``prefix`` with ``after`` < key <= ``last`` (None: unbounded), a page at a time.

    Starts with ``StartAfter``; stops at the first page that reaches ``last``, so it costs at most
    one request more than the range's own keys need.
    """
    params = {"Bucket": bucket, "Prefix": prefix, **({"StartAfter": after} if after is not None else {})}
    pages = client.get_paginator("list_objects_v2").paginate(**params, PaginationConfig={"PageSize": PAGE_KEYS})
    for page in pages:
        listed: Listed = []
        done = False
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if after is not None and key <= after:
                continue  # some servers include the StartAfter key
            if last is not None and key >= last:
                done = True
                if key > last:
                    break
            listed.append((key, obj["ETag"].strip('"'), int(obj["Size"])))
            if done:
                break
        yield listed
        if done:
            return


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
    return config.merge(Config(**ours)) if ours else config


def path_parameters(storage: Storage) -> PathParameters | None:
    """COLLECTFAST_OBJECT_PARAMETERS for a run on ``storage`` (None when unset), knowing its hashed names."""
    rules = settings.object_parameters
    return PathParameters(rules, storage_hashed_names(storage)) if rules else None


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
        if single_part and type(worker)._save is S3Storage._save:
            saved = put_single_part(worker, prefixed_path, source, config.multipart_threshold)
            if saved is not None:
                return saved
            source.seek(0)
            single_part = False  # gzip made it reach the threshold
        if not single_part:
            workers.sending_in_parts(worker._normalize_name(clean_name(prefixed_path)))
            with workers.multipart_slot:
                return str(worker._save(prefixed_path, File(source)))
        if not config.use_threads:
            return str(worker._save(prefixed_path, File(source)))
        # s3transfer would start a thread pool of its own for this one small file.
        serial = copy.copy(config)
        serial.use_threads = False
        worker.transfer_config = serial
        try:
            return str(worker._save(prefixed_path, File(source)))
        finally:
            worker.transfer_config = config


def put_single_part(worker: S3Storage, name: str, source: IO[bytes], threshold: int) -> str | None:
    """``S3Storage._save`` for a file s3transfer would send in one PutObject, sent as that one PutObject.

    The same key, parameters and (gzipped) bytes as django-storages, without
    building a TransferManager per file. None when gzip made the body reach the
    multipart threshold: s3transfer would split it, so it must be the one to send it.
    """
    cleaned = clean_name(name)
    key = worker._normalize_name(cleaned)
    params = write_parameters(worker, key, source)
    body: IO[bytes] | bytes = source
    if worker.gzip and params["ContentType"] in worker.gzip_content_types and "ContentEncoding" not in params:
        compressed: bytes = worker._compress_content(source).read()
        if len(compressed) >= threshold:
            return None
        body = compressed
        params["ContentEncoding"] = "gzip"
    worker.connection.meta.client.put_object(Bucket=worker.bucket_name, Key=key, Body=body, **params)
    return str(cleaned)


class Boto3Strategy(ListingStrategy[S3Storage]):
    """Learn remote ETags and sizes in bulk (one LIST per 1,000 keys) and upload what differs.

    A file is skipped only when the ETag and size S3 would give an upload of its
    bytes (gzipped as django-storages would, split into parts as its transfer
    configuration would) equal the listed ones. Listings may be kept in
    ``COLLECTFAST_CACHE`` so that a warm redeploy makes no request at all.
    """

    delete_not_found_exception = (ClientError,)
    applies_object_parameters = True

    @classmethod
    def fits_class(cls, storage_class: type[Storage]) -> bool:
        return issubclass(storage_class, S3Storage)

    def delete_remote(self, keys: list[str]) -> None:
        storage = self.remote_storage
        client = self.workers.client(storage)
        try:
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                response = client.delete_objects(Bucket=storage.bucket_name, Delete={"Objects": batch})
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise CommandError(
                        f"Deleting {first['Key']!r} for --clear failed: {first.get('Code')} {first.get('Message')}"
                    )
        except (ClientError, BotoCoreError) as error:
            raise CommandError(s3_error_message(storage, "Deleting objects for --clear", error)) from error

    def list_remote(self, bounds: Sequence[str] = ()) -> dict[str, tuple[str, int]]:
        """ETag and size of every object under the storage's location, 1,000 per request.

        With ``bounds`` (see :meth:`range_bounds`) the key ranges between them are listed at once.
        """
        remote: dict[str, tuple[str, int]] = {}

        def add(listed: Listed) -> None:
            remote.update((key, (etag, size)) for key, etag, size in listed)

        self.list_pages(bounds, add)
        self.listed_keys = len(remote)
        return remote

    def list_for(self, prefixed_paths: Sequence[str]) -> dict[str, tuple[str, int]]:
        return self.list_remote(self.range_bounds(prefixed_paths))

    def range_bounds(self, prefixed_paths: Sequence[str] | set[str]) -> list[str]:
        """Bounds cutting the listing of the keys of these local paths into ranges (see :func:`range_bounds`)."""
        if len(prefixed_paths) <= RANGE_KEYS or settings.threads <= 1:
            return []
        ordered = sorted(prefixed_paths)
        # Keys sort as their paths do but for a cleaned name now and then: sorted again, bounds only need to increase.
        return sorted({self.remote_key(path) for path in range_bounds(ordered, settings.threads)})

    def list_pages(self, bounds: Sequence[str], add: Callable[[Listed], None]) -> None:
        """Hand every object under the location to ``add``, a page at a time; the ranges between ``bounds`` at once.

        ``add`` is called under a lock, from the thread listing each range.
        """
        storage = self.remote_storage
        bucket, prefix = storage.bucket_name, self.prefix
        try:
            if not bounds:
                for listed in list_range(self.workers.client(storage), bucket, prefix, None, None):
                    add(listed)
                return
            lock = threading.Lock()

            def one(after: str | None, last: str | None) -> None:
                with self.workers.borrowed_client(storage) as client:
                    for listed in list_range(client, bucket, prefix, after, last):
                        with lock:
                            add(listed)

            edges: list[str | None] = [None, *bounds, None]
            executor = ThreadPoolExecutor(len(edges) - 1, thread_name_prefix="collectfast_list")
            try:
                futures = [executor.submit(one, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
                for future in futures:
                    future.result()
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
        except (ClientError, BotoCoreError) as error:
            raise CommandError(s3_error_message(storage, "Listing the objects", error)) from error

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        entry = self._remote.get(self.remote_key(prefixed_path))
        if entry is None or not _PLAIN_MD5.match(entry[0]):
            return None
        return entry[0]

    def __init__(self, remote_storage: S3Storage) -> None:
        super().__init__(remote_storage)
        self.path_parameters = path_parameters(remote_storage)
        self.workers = WorkerStorages(self.path_parameters)
        #: The storage the decisions read write parameters from: with the per-path ones when configured.
        self.decisions = self.workers.copy(remote_storage) if self.path_parameters else remote_storage
        self.aborted: str | None = None

    def learn_hashed_names(self, names: set[str]) -> None:
        """Names post-processing hashed in this run (collectfast.deploy.Deploy.learn_hashed_names)."""
        if self.path_parameters is not None:
            self.path_parameters.learn_hashed(names)

    def worker_storage(self, storage: Storage) -> Storage:
        return cast(Storage, self.workers.for_this_thread(storage))

    def copy_file(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> None:
        save_in_place(path, prefixed_path, local_storage, cast(S3Storage, remote_storage), self.workers)

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        super().finish(succeeded=succeeded, dry_run=dry_run)
        if not dry_run:
            self.aborted = self.workers.finish(self.remote_storage, self.warn)

    def requests_summary(self) -> str | None:
        return self.aborted

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        key = self.remote_key(prefixed_path)
        remote = self._remote.get(key)
        if remote is None:
            return True
        params = write_parameters(self.decisions, key)
        if params.get("SSECustomerKey") or str(params.get("ServerSideEncryption", "")).startswith("aws:kms"):
            # KMS and customer-key ETags are not md5s: nothing can prove the file unchanged.
            return True
        local = self.local_fingerprint(path, local_storage, params)
        return (local.etag, local.size) != remote

    def gzips(self, params: dict[str, Any]) -> bool:
        """Whether django-storages gzips an upload with these write parameters."""
        storage = self.remote_storage
        return bool(
            storage.gzip and params["ContentType"] in storage.gzip_content_types and "ContentEncoding" not in params
        )

    def stores_as_is(self, prefixed_path: str) -> bool:
        return not self.gzips(write_parameters(self.decisions, self.remote_key(prefixed_path)))

    def local_fingerprint(self, path: str, local_storage: Storage, params: dict[str, Any]) -> Fingerprint:
        """The ETag and size S3 reports after django-storages uploads this local file."""
        storage = self.remote_storage
        config = storage.transfer_config
        gzipped = self.gzips(params)
        adjuster = ChunksizeAdjuster()
        with local_storage.open(path, "rb") as source:
            if gzipped:
                # The same compressor django-storages uploads with, so the bytes are identical.
                stream: IO[bytes] = storage._compress_content(source)
                part_size = adjuster.adjust_chunksize(config.multipart_chunksize)
            else:
                stream = source
                part_size = adjuster.adjust_chunksize(config.multipart_chunksize, local_storage.size(path))
            return stream_fingerprint(stream, config.multipart_threshold, part_size)


class S3Objects:
    """The objects under an S3Storage's location, as pruning sees them (collectfast.prune.Objects).

    Listed with their times (one LIST per 1,000 keys), deleted with DeleteObjects
    (one POST per 1,000 keys), on a client of this thread; requests are counted in ``requests``.
    """

    batch_size = 1000

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self.workers = WorkerStorages()
        self.requests = counting.RequestCounter()
        location = str(storage.location).strip("/")
        self.prefix = f"{location}/" if location else ""

    @property
    def where(self) -> str:
        return f"s3://{self.storage.bucket_name}/{self.prefix}"

    def key(self, name: str) -> str:
        return str(self.storage._normalize_name(clean_name(name)))

    def list_objects(self) -> list[tuple[str, int, datetime]]:
        """``(key, size, last modified)`` of every object under the location."""
        storage = self.storage
        listed: list[tuple[str, int, datetime]] = []
        with self._counted():
            client = self.workers.client(storage)
            try:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket_name, Prefix=self.prefix)
                for page in pages:
                    for obj in page.get("Contents", ()):
                        if obj["Key"].startswith(self.prefix):
                            listed.append((obj["Key"], int(obj["Size"]), obj["LastModified"]))
            except (ClientError, BotoCoreError) as error:
                raise CommandError(s3_error_message(storage, "Listing the objects", error)) from error
        return listed

    def delete_objects(self, keys: list[str]) -> dict[str, str]:
        """Delete up to 1,000 keys in one request; the reason of each key S3 did not delete."""
        storage = self.storage
        with self._counted():
            client = self.workers.client(storage)
            try:
                response = client.delete_objects(
                    Bucket=storage.bucket_name, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as error:
                raise CommandError(s3_error_message(storage, "Deleting objects", error)) from error
        return {
            str(error["Key"]): f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
            for error in response.get("Errors", ())
        }

    @contextmanager
    def _counted(self) -> Iterator[None]:
        counting.activate(self.requests)
        try:
            yield
        finally:
            counting.activate(None)
