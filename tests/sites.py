"""One face for the three storage families the tests run against (tests/test_backends.py).

A :class:`Site` is one bucket (S3, GCS) or container (Azure) on its test server
(moto, the GCS emulator, Azurite), the settings that point ``STORAGES["staticfiles"]``
at it, the server's request counts by kind, the stored objects and their headers,
fault injection on uploads, and the family's cost model: which requests one
listing, one upload, one batch delete or one manifest read or write is. Test
bodies compute their expected counts from the cost model, so one body holds for
every family; where the families differ for a real reason, the difference is
here, with the reason.
"""

from __future__ import annotations

import abc
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from collectfast.manifest import Stored
from tests.fixtures import ACCESS_KEY, REGION, SECRET_KEY, make_client

KIB = 1024
MIB = 1024 * KIB
FAMILIES = ("s3", "gcs", "azure")

Counts = Mapping[str, int]


def total(*parts: Counts | Iterable[tuple[str, int]]) -> dict[str, int]:
    """The sum of request counts by kind, without the kinds that sum to 0 (as the servers report them)."""
    summed: Counter[str] = Counter()
    for part in parts:
        summed.update(dict(part))
    return {kind: n for kind, n in summed.items() if n}


def times(n: int, counts: Counts) -> dict[str, int]:
    return {kind: n * count for kind, count in counts.items()}


@dataclass(frozen=True)
class Headers:
    content_type: str | None
    content_encoding: str | None
    cache_control: str | None


class Site(abc.ABC):
    """One bucket or container, and what its family's requests are."""

    family: ClassVar[str]
    listing_strategy: ClassVar[str]
    manifest_strategy: ClassVar[str]
    #: Objects one listing request answers.
    page_size: ClassVar[int]
    #: Keys one batch delete request takes.
    delete_batch: ClassVar[int]
    #: Whether django-storages can gzip what it uploads for this family.
    gzips: ClassVar[bool] = True
    #: A file size the family's storage sends in more than one request (its threshold set low where it can be).
    large_size: ClassVar[int]
    #: One upload of a small file, as django-storages sends it.
    upload: ClassVar[Counts]
    #: The request an injected upload fault answers: a retry of a failed upload repeats only it.
    upload_kind: ClassVar[str]
    #: One read of the deploy manifest (found or not), one write of it.
    manifest_read: ClassVar[Counts] = {"GET": 1}
    manifest_write: ClassVar[Counts]
    #: One look at a single object's metadata.
    stat: ClassVar[Counts]

    def __init__(self, name: str, server: Any) -> None:
        self.name = name
        self.server = server
        self.options: dict[str, Any] = {}

    # Settings.

    @property
    @abc.abstractmethod
    def backend(self) -> str:
        """The django-storages storage class."""

    @abc.abstractmethod
    def storage_options(self, *, location: str = "", cache_control: str | None = None, gzip: bool = False) -> dict:
        """The OPTIONS of STORAGES["staticfiles"] for this bucket or container."""

    def storage(self, **options: Any) -> dict[str, Any]:
        return {"BACKEND": self.backend, "OPTIONS": self.storage_options(**options)}

    def use(self, settings: Any, *, strategy: str | None = None, **options: Any) -> Site:
        """Point STORAGES["staticfiles"] here (options: location, cache_control, gzip); ``strategy``: set it."""
        self.options = options
        settings.STORAGES = {**settings.STORAGES, "staticfiles": self.storage(**options)}
        if strategy is not None:
            settings.COLLECTFAST_STRATEGY = strategy
        return self

    @abc.abstractmethod
    def sibling(self) -> Site:
        """Another, empty bucket or container on the same server (for a stock run to compare with)."""

    # The server.

    def counts(self) -> dict[str, int]:
        return dict(self.server.counts())

    def reset(self) -> None:
        self.server.reset()

    @abc.abstractmethod
    def fail_uploads(self, key_contains: str, *, transient: bool = False, times: int = -1) -> None:
        """Answer the next ``times`` uploads of matching keys with an error (-1: all of them).

        ``transient``: a 503 (retried); else a 403, which no client retries.
        """

    @abc.abstractmethod
    def clear_faults(self) -> None: ...

    # The stored objects (the test's own client: none of this is counted).

    @abc.abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]: ...

    @abc.abstractmethod
    def read(self, key: str) -> bytes:
        """The stored bytes, never decoded (gzip included)."""

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        return {key: self.read(key) for key in self.list_keys(prefix)}

    @abc.abstractmethod
    def headers(self, key: str) -> Headers: ...

    @abc.abstractmethod
    def listing(self, prefix: str = "") -> dict[str, Stored]:
        """Every object's checksum (as collectfast's backend reads it, in hex) and size."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    def put_many(self, keys: Iterable[str], data: bytes) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: self.put(key, data), keys))

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    # The cost model.

    def lists(self, n_objects: int) -> dict[str, int]:
        """One listing of ``n_objects``: a request per page, one at least."""
        return {"LIST": max(1, math.ceil(n_objects / self.page_size))}

    @abc.abstractmethod
    def deletes(self, n_keys: int) -> dict[str, int]:
        """Deleting ``n_keys`` in batches."""

    @abc.abstractmethod
    def gzip_upload(self) -> dict[str, int]:
        """One upload that django-storages gzips."""

    @abc.abstractmethod
    def large_upload(self) -> dict[str, int]:
        """One upload of ``large_size`` bytes, and what the run adds for having sent one."""

    def uploads(self, n: int) -> dict[str, int]:
        return times(n, self.upload)

    def manifest_created(self) -> dict[str, int]:
        """A new manifest: its creation (only if absent), and the one-off probe that proves the service
        applies the precondition (refused, nothing written)."""
        return times(2, self.manifest_write)


# Amazon S3, on moto.


class S3Site(Site):
    family = "s3"
    listing_strategy = "collectfast.strategies.boto3.Boto3Strategy"
    manifest_strategy = "collectfast.strategies.manifest.S3ManifestStrategy"
    page_size = 1000
    # DeleteObjects takes 1,000 keys.
    delete_batch = 1000
    # The multipart threshold and part size are set to S3's smallest part (5 MiB), so 6 MiB go in two parts.
    large_size = 6 * MIB
    upload = {"PUT": 1}
    upload_kind = "PUT"
    manifest_write = {"PUT": 1}
    stat = {"HEAD": 1}

    def __init__(self, name: str, server: Any) -> None:
        super().__init__(name, server)
        self.client = make_client(server.endpoint_url)
        self.client.create_bucket(Bucket=name)

    @property
    def backend(self) -> str:
        return "storages.backends.s3.S3Storage"

    def storage_options(self, *, location: str = "", cache_control: str | None = None, gzip: bool = False) -> dict:
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        return {
            "bucket_name": self.name,
            "endpoint_url": self.server.endpoint_url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region_name": REGION,
            # Requests are counted exactly: botocore's own retries are tested in test_s3.py.
            "client_config": Config(retries={"total_max_attempts": 1}),
            "transfer_config": TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
            "location": location,
            "gzip": gzip,
            "object_parameters": {"CacheControl": cache_control} if cache_control else {},
        }

    def sibling(self) -> Site:
        return S3Site(f"{self.name}-b", self.server)

    def fail_uploads(self, key_contains: str, *, transient: bool = False, times: int = -1) -> None:
        status, code = (503, "SlowDown") if transient else (403, "AccessDenied")
        self.server.add_fault("PUT", key_contains, status=status, code=code, times=times)

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def headers(self, key: str) -> Headers:
        head = self.client.head_object(Bucket=self.name, Key=key)
        return Headers(head.get("ContentType"), head.get("ContentEncoding"), head.get("CacheControl"))

    def listing(self, prefix: str = "") -> dict[str, Stored]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return {
            obj["Key"]: Stored(obj["ETag"].strip('"'), obj["Size"])
            for page in pages
            for obj in page.get("Contents", ())
        }

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def deletes(self, n_keys: int) -> dict[str, int]:
        return {"POST": math.ceil(n_keys / self.delete_batch)}  # DeleteObjects is a POST

    def gzip_upload(self) -> dict[str, int]:
        return {"PUT": 1}

    def large_upload(self) -> dict[str, int]:
        parts = math.ceil(self.large_size / (5 * MIB))
        # CreateMultipartUpload and CompleteMultipartUpload (POST), a PUT per part; after the run, one
        # ListMultipartUploads (GET) looks for the uploads a killed run left of the files it sent in parts.
        return {"POST": 2, "PUT": parts, "GET": 1}


# Google Cloud Storage, on the GCS emulator.


class GCSSite(Site):
    family = "gcs"
    listing_strategy = "collectfast.strategies.gcloud.GoogleCloudStrategy"
    manifest_strategy = "collectfast.strategies.gcloud.GoogleCloudManifestStrategy"
    page_size = 1000
    # GCS answers at most 100 calls in one batch request.
    delete_batch = 100
    # google-cloud-storage sends a file of known size up to 8 MiB in one multipart POST (a constant of the
    # library, no option of django-storages); over it, resumably: the smallest large file is just over.
    large_size = 8 * MIB + 64 * KIB
    # django-storages looks the blob up first (GoogleCloudFile: a GET of its metadata, 404 when new),
    # then uploads it in one multipart POST.
    upload = {"GET": 1, "POST": 1}
    upload_kind = "POST"
    # The manifest's conditional write is one multipart POST with ifGenerationMatch.
    manifest_write = {"POST": 1}
    stat = {"GET": 1}

    def __init__(self, name: str, server: Any, client: Any) -> None:
        super().__init__(name, server)
        self.client = client
        self.bucket = client.create_bucket(name)

    @property
    def backend(self) -> str:
        return "storages.backends.gcloud.GoogleCloudStorage"

    def storage_options(self, *, location: str = "", cache_control: str | None = None, gzip: bool = False) -> dict:
        from google.auth.credentials import AnonymousCredentials

        return {
            "bucket_name": self.name,
            "project_id": GCS_PROJECT,
            "credentials": AnonymousCredentials(),
            "location": location,
            "gzip": gzip,
            "object_parameters": {"cache_control": cache_control} if cache_control else {},
        }

    def sibling(self) -> Site:
        return GCSSite(f"{self.name}-b", self.server, self.client)

    def fail_uploads(self, key_contains: str, *, transient: bool = False, times: int = -1) -> None:
        status, reason = (503, "backendError") if transient else (403, "forbidden")
        self.server.add_fault("POST", key_contains, status=status, reason=reason, times=times)

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.bucket.list_blobs(prefix=prefix))

    def read(self, key: str) -> bytes:
        return bytes(self.bucket.blob(key).download_as_bytes(raw_download=True))

    def headers(self, key: str) -> Headers:
        blob = self.bucket.get_blob(key)
        return Headers(blob.content_type, blob.content_encoding, blob.cache_control)

    def listing(self, prefix: str = "") -> dict[str, Stored]:
        import base64

        return {
            blob.name: Stored(base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else "", blob.size)
            for blob in self.bucket.list_blobs(prefix=prefix)
        }

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def put_many(self, keys: Iterable[str], data: bytes) -> None:
        # The emulator serves one request at a time, and the client is not thread-safe: in order.
        for key in keys:
            self.put(key, data)

    def delete(self, key: str) -> None:
        self.bucket.delete_blob(key)

    def deletes(self, n_keys: int) -> dict[str, int]:
        return {"BATCH": math.ceil(n_keys / self.delete_batch)}

    def gzip_upload(self) -> dict[str, int]:
        # django-storages hands the client gzipped bytes of unknown size: a resumable upload (POST, then PUT).
        return {"GET": 1, "POST": 1, "PUT": 1}

    def large_upload(self) -> dict[str, int]:
        # The GET, the resumable upload's start (POST) and its bytes in one PUT.
        return {"GET": 1, "POST": 1, "PUT": 1}


GCS_PROJECT = "collectfast-test"


# Azure Blob Storage, on Azurite.


class AzureSite(Site):
    family = "azure"
    listing_strategy = "collectfast.strategies.azure.AzureStrategy"
    manifest_strategy = "collectfast.strategies.azure.AzureManifestStrategy"
    # List Blobs answers up to 5,000 blobs.
    page_size = 5000
    # A blob batch takes at most 256 sub-requests.
    delete_batch = 256
    # AzureStorage has no gzip option.
    gzips = False
    # azure-storage-blob sends a blob over max_single_put_size (a client option, set to 64 KiB here)
    # as blocks of max_block_size (64 KiB), then commits the block list.
    large_size = 200 * KIB
    block_size = 64 * KIB
    upload = {"PUT": 1}
    upload_kind = "PUT"
    manifest_write = {"PUT": 1}
    stat = {"HEAD": 1}
    # Requests are counted exactly: the SDK's own retries are tested in test_azure.py. Azurite can take
    # seconds to list or batch-delete on a loaded machine: more than collectfast's 10 s read timeout.
    client_options: ClassVar[dict[str, Any]] = {
        "retry_total": 0,
        "read_timeout": 120,
        "max_single_put_size": 64 * KIB,
        "max_block_size": 64 * KIB,
    }

    def __init__(self, name: str, server: Any) -> None:
        super().__init__(name, server)
        self.client = azure_direct_client(server).create_container(name)

    @property
    def backend(self) -> str:
        return "storages.backends.azure_storage.AzureStorage"

    def storage_options(self, *, location: str = "", cache_control: str | None = None, gzip: bool = False) -> dict:
        if gzip:
            raise ValueError("AzureStorage has no gzip option")
        return {
            "connection_string": self.server.connection_string(),
            "azure_container": self.name,
            "client_options": dict(self.client_options),
            "location": location,
            "cache_control": cache_control,
        }

    def sibling(self) -> Site:
        return AzureSite(f"{self.name}-b", self.server)

    def fail_uploads(self, key_contains: str, *, transient: bool = False, times: int = -1) -> None:
        from tests.faultproxy import Respond, Rule

        status, code = (503, "ServerBusy") if transient else (403, "AuthorizationPermissionMismatch")
        self.server.proxy.add(Rule(Respond(status, code), method="PUT", key_contains=key_contains, times=times))

    def clear_faults(self) -> None:
        self.server.proxy.clear()

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(name_starts_with=prefix or None))

    def read(self, key: str) -> bytes:
        return bytes(self.client.download_blob(key, decompress=False).readall())

    def headers(self, key: str) -> Headers:
        settings = self.client.get_blob_client(key).get_blob_properties().content_settings
        return Headers(settings.content_type, settings.content_encoding, settings.cache_control)

    def listing(self, prefix: str = "") -> dict[str, Stored]:
        return {
            blob.name: Stored(bytes(blob.content_settings.content_md5 or b"").hex(), blob.size)
            for blob in self.client.list_blobs(name_starts_with=prefix or None)
        }

    def put(self, key: str, data: bytes) -> None:
        self.client.upload_blob(key, data, overwrite=True)

    def delete(self, key: str) -> None:
        self.client.delete_blob(key)

    def deletes(self, n_keys: int) -> dict[str, int]:
        return {"POST": math.ceil(n_keys / self.delete_batch)}  # a blob batch is one POST

    def gzip_upload(self) -> dict[str, int]:
        raise NotImplementedError("AzureStorage has no gzip option")

    def large_upload(self) -> dict[str, int]:
        # A Put Block per block, then Put Block List.
        return {"PUT": math.ceil(self.large_size / self.block_size) + 1}


def azure_direct_client(server: Any) -> Any:
    """A client straight to Azurite, around the counting proxy: the test's own requests are not counted."""
    from azure.storage.blob import BlobServiceClient

    from tests.azuriteserver import ACCOUNT, KEY

    upstream = f"http://127.0.0.1:{server.proxy.upstream[1]}/{ACCOUNT}"
    return BlobServiceClient(upstream, credential={"account_name": ACCOUNT, "account_key": KEY})


# The fixture.


def new_name() -> str:
    return f"test-{uuid.uuid4().hex[:20]}"


def make_site(family: str, request: pytest.FixtureRequest) -> Site:
    site: Site
    if family == "s3":
        pytest.importorskip("boto3", reason="needs collectfast[s3]")
        site = S3Site(new_name(), request.getfixturevalue("s3_server"))
    elif family == "gcs":
        pytest.importorskip("google.cloud.storage", reason="needs collectfast[gcloud]")
        pytest.importorskip("gcp_storage_emulator", reason="needs the test group (gcp-storage-emulator)")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        server = request.getfixturevalue("gcs_server")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint_url)
        # Otherwise google-cloud-storage fetches the bucket's metadata (for tracing) in a background
        # thread, once per client: an extra GET at an unpredictable moment.
        monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
        site = GCSSite(new_name(), server, gcs.Client(project=GCS_PROJECT, credentials=AnonymousCredentials()))
    elif family == "azure":
        pytest.importorskip("azure.storage.blob", reason="needs collectfast[azure]")
        site = AzureSite(new_name(), request.getfixturevalue("azurite"))
    else:
        raise ValueError(family)
    return site


@pytest.fixture(params=FAMILIES)
def site(request: pytest.FixtureRequest, settings: Any, static_tree: Any) -> Iterator[Site]:
    """An empty bucket or container of each family, STORAGES["staticfiles"] on it, its counts reset."""
    made = make_site(request.param, request)
    made.use(settings)
    made.clear_faults()
    made.reset()
    yield made
    made.clear_faults()
