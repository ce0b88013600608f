"""collectstatic against a real GCS JSON API server, through unpatched google-cloud-storage and django-storages."""

from __future__ import annotations

import copy
import gzip
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest

pytest.importorskip("google.cloud.storage", reason="needs collectfast[test] (google-cloud-storage)")
pytest.importorskip("gcp_storage_emulator", reason="needs collectfast[test] (gcp-storage-emulator)")

from django.contrib.staticfiles.storage import staticfiles_storage  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import storage as gcs  # noqa: E402
from storages.backends.gcloud import GoogleCloudStorage  # noqa: E402

from collectfast.checks import check_settings  # noqa: E402
from collectfast.strategies import guess_strategy  # noqa: E402
from collectfast.strategies.gcloud import GoogleCloudStrategy  # noqa: E402
from collectfast.strategies.upload_all import UploadAllStrategy  # noqa: E402
from tests.fixtures import StaticTree, collectstatic  # noqa: E402
from tests.gcsserver import GCSServer  # noqa: E402

PROJECT = "collectfast-test"
STRATEGY = "collectfast.strategies.gcloud.GoogleCloudStrategy"
MIB = 1024 * 1024


# gcs_server: the session-scoped GCS test server, in tests/conftest.py.


@dataclass
class GCSBucket:
    name: str
    server: GCSServer
    client: Any

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.name)

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object's stored bytes (reads them: call after taking request counts)."""
        return {blob.name: blob.download_as_bytes(raw_download=True) for blob in self.bucket.list_blobs(prefix=prefix)}

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.bucket.list_blobs(prefix=prefix))

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def counts(self) -> dict[str, int]:
        return self.server.counts()


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCSBucket]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint_url)
    # google-cloud-storage otherwise fetches the bucket's metadata (for tracing) in a
    # background thread, once per client: an extra GET at an unpredictable moment.
    monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    client = gcs.Client(project=PROJECT, credentials=AnonymousCredentials())
    name = f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(name)
    gcs_server.clear_faults()
    gcs_server.reset()
    yield GCSBucket(name, gcs_server, client)
    gcs_server.clear_faults()


def gcs_storage(bucket: GCSBucket, backend: str = "storages.backends.gcloud.GoogleCloudStorage", **options: Any) -> Any:
    return {
        "BACKEND": backend,
        "OPTIONS": {
            "bucket_name": bucket.name,
            "project_id": PROJECT,
            "credentials": AnonymousCredentials(),
            **options,
        },
    }


@pytest.fixture
def gcs_settings(settings: Any, gcs_bucket: GCSBucket, static_tree: StaticTree) -> Any:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": gcs_storage(gcs_bucket)}
    return settings


def use_storage(settings: Any, bucket: GCSBucket, **options: Any) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": gcs_storage(bucket, **options)}


def write_site(tree: StaticTree) -> None:
    tree.write("css/app.css", "body { color: red }\n")
    tree.write("js/app.js", "console.log('hello');\n")
    tree.write("img/deep/er/still/logo.svg", "<svg/>")
    tree.write("fonts/Ünïcode naïve file.txt", "ünïcode")
    tree.write("with space/file name.txt", "spaces")


class SubclassedStorage(GoogleCloudStorage):
    """A project's own subclass, as people write to set a location."""


class ThreadRecordingStrategy(GoogleCloudStrategy):
    """Records which client each upload used, and on which thread."""

    used: list[tuple[int, int]] = []
    main_client: list[int] = []

    def start(self, *args: Any, **kwargs: Any) -> None:
        super().start(*args, **kwargs)
        type(self).main_client.append(id(self.remote_storage._client))

    def copy_file(self, path: str, prefixed_path: str, local_storage: Any, remote_storage: Any) -> None:
        super().copy_file(path, prefixed_path, local_storage, remote_storage)
        type(self).used.append((threading.get_ident(), id(remote_storage._client)))


def test_first_deploy_uploads_every_file_with_the_same_bytes(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)

    run = collectstatic()

    # One listing, then per file django-storages' metadata GET and a multipart upload POST.
    assert gcs_bucket.counts() == {"LIST": 1, "GET": 5, "POST": 5}
    assert "5 static files copied. 1 LIST, 5 GET, 5 POST." in run.stdout
    assert gcs_bucket.objects() == static_tree.files()


def test_redeploy_with_no_change_uploads_nothing(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    collectstatic()
    gcs_bucket.server.reset()
    caches["default"].clear()

    run = collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1}
    assert "0 static files copied, 5 unmodified. 1 LIST." in run.stdout
    # The storage outlives the run: its client no longer counts into the finished run.
    assert staticfiles_storage._client._http.hooks["response"] == []


def test_redeploy_follows_the_listing_pages_of_a_thousand_objects(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    # 1,001 older objects sort before the site's files, which are therefore only on the second page.
    gcs_bucket.put("aaa/seed", b"old")
    bucket = gcs_bucket.bucket
    for start in range(0, 1000, 100):
        with gcs_bucket.client.batch():
            for i in range(start, start + 100):
                bucket.copy_blob(bucket.blob("aaa/seed"), bucket, f"aaa/old-{i:04d}")
    write_site(static_tree)
    collectstatic()
    gcs_bucket.server.reset()
    caches["default"].clear()

    run = collectstatic()

    assert gcs_bucket.counts() == {"LIST": 2}
    assert "0 static files copied, 5 unmodified." in run.stdout


def test_redeploy_after_changing_k_files_uploads_exactly_k(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    for i in range(30):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    for i in (3, 14, 27):
        static_tree.write(f"f/{i}.js", f"var x = {i} + 1;")
    gcs_bucket.server.reset()

    run = collectstatic(verbosity=2)

    assert gcs_bucket.counts() == {"LIST": 1, "GET": 3, "POST": 3}
    assert "3 static files copied, 27 unmodified." in run.stdout
    assert "Skipping 'f/0.js' (not modified)" in run.stdout
    assert gcs_bucket.objects() == static_tree.files()


def test_same_size_change_is_uploaded(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    static_tree.write("a.css", "aaaa")
    collectstatic()
    static_tree.write("a.css", "bbbb")
    caches["default"].clear()
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "POST": 1}
    assert gcs_bucket.objects() == {"a.css": b"bbbb"}


def test_warm_cache_redeploy_makes_no_request(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # learns the listing after the first upload
    gcs_bucket.server.reset()

    run = collectstatic()

    assert gcs_bucket.counts() == {}
    assert "0 static files copied, 5 unmodified. No remote requests." in run.stdout


def test_location_prefix(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket, location="assets/v1")
    write_site(static_tree)
    gcs_bucket.put("elsewhere/css/app.css", b"body { color: red }\n")
    collectstatic()
    caches["default"].clear()
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1}
    stored = {k.removeprefix("assets/v1/"): v for k, v in gcs_bucket.objects("assets/v1/").items()}
    assert stored == static_tree.files()
    assert gcs_bucket.list_keys("elsewhere/") == ["elsewhere/css/app.css"]


def test_gzipped_files_are_stored_compressed_and_skipped_when_unchanged(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket, gzip=True)
    static_tree.write("css/app.css", "body { color: red }\n" * 100)
    static_tree.write("img/a.png", b"\x89PNG not gzipped")
    precompressed = gzip.compress(b"var already = 'gzipped';", mtime=0)
    static_tree.write("js/lib.js.gz", precompressed)

    collectstatic()

    # django-storages hands the client compressed bytes of unknown size: a resumable upload (POST, PUT).
    assert gcs_bucket.counts() == {"LIST": 1, "GET": 3, "POST": 3, "PUT": 1}
    stored = gcs_bucket.objects()
    assert gzip.decompress(stored["css/app.css"]) == static_tree.files()["css/app.css"]
    assert gcs_bucket.bucket.get_blob("css/app.css").content_encoding == "gzip"
    assert stored["img/a.png"] == b"\x89PNG not gzipped"
    assert stored["js/lib.js.gz"] == precompressed  # never compressed twice
    caches["default"].clear()
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1}
    static_tree.write("css/app.css", "body { color: blue }\n" * 100)
    gcs_bucket.server.reset()
    collectstatic()
    assert gcs_bucket.counts() == {"GET": 1, "POST": 1, "PUT": 1}  # the cache was warm: no listing
    assert gzip.decompress(gcs_bucket.objects()["css/app.css"]) == static_tree.files()["css/app.css"]


def test_turning_gzip_off_uploads_the_gzipped_files_again(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket, gzip=True)
    static_tree.write("css/app.css", "body { color: red }\n" * 100)
    static_tree.write("img/a.png", b"\x89PNG")
    collectstatic()
    use_storage(settings, gcs_bucket, gzip=False)
    caches["default"].clear()
    gcs_bucket.server.reset()

    collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "POST": 1}
    assert gcs_bucket.objects() == static_tree.files()


def test_a_composite_object_is_always_uploaded(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    collectstatic()
    # The same bytes, composed from two parts: GCS keeps no md5 for it, so nothing proves it unchanged.
    content = static_tree.files()["css/app.css"]
    gcs_bucket.put("parts/1", content[:5])
    gcs_bucket.put("parts/2", content[5:])
    target = gcs_bucket.bucket.blob("css/app.css")
    target.compose([gcs_bucket.bucket.blob("parts/1"), gcs_bucket.bucket.blob("parts/2")])
    assert gcs_bucket.bucket.get_blob("css/app.css").md5_hash is None
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic(verbosity=2)

    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "POST": 1}
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert gcs_bucket.bucket.get_blob("css/app.css").md5_hash is not None


def test_a_large_file_goes_up_resumably_and_is_skipped_on_redeploy(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    big = os.urandom(9 * MIB)
    static_tree.write("video/big.bin", big)

    run = collectstatic()

    # Over 8 MiB the client starts a resumable upload (POST) and sends the bytes (PUT).
    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "PUT": 1, "POST": 1}
    assert "1 LIST, 1 GET, 1 PUT, 1 POST." in run.stdout
    caches["default"].clear()
    gcs_bucket.server.reset()
    collectstatic()
    assert gcs_bucket.counts() == {"LIST": 1}
    assert gcs_bucket.objects()["video/big.bin"] == big


def test_a_failing_upload_fails_the_command_and_names_the_file(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    gcs_bucket.server.add_fault("POST", "js/app.js", status=403, reason="forbidden")

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert "could not upload 1 of 5 files" in message
    assert "js/app.js: Forbidden: 403 POST" in message
    assert "js/app.js" not in gcs_bucket.list_keys()
    assert len(gcs_bucket.list_keys()) == 4


def test_transient_errors_are_retried_by_the_client(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    static_tree.write("css/app.css", "body {}")
    gcs_bucket.server.add_fault("POST", "css/app.css", status=503, reason="backendError", times=1)

    run = collectstatic()

    # django-storages uploads with google's DEFAULT_RETRY: the client tries again by itself.
    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "POST": 2}
    assert "1 LIST, 1 GET, 2 POST." in run.stdout
    assert gcs_bucket.objects() == static_tree.files()


def test_a_missing_bucket_is_a_clear_error(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket, bucket_name="no-such-bucket-here")
    static_tree.write("a.css", "a")

    with pytest.raises(CommandError, match="The bucket 'no-such-bucket-here' does not exist"):
        collectstatic()


def test_a_refused_listing_is_a_clear_error(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    static_tree.write("a.css", "a")
    gcs_bucket.server.add_fault("LIST", "", status=403, reason="forbidden", times=1)

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert f"Listing the objects in bucket '{gcs_bucket.name}'" in message
    assert "was refused (403" in message
    assert "storage.objects.list" in message
    assert gcs_bucket.list_keys() == []


def test_missing_credentials_are_a_clear_error():
    from google.auth.exceptions import DefaultCredentialsError

    from collectfast.strategies.gcloud import gcs_error_message

    storage = GoogleCloudStorage(bucket_name="static-bucket")
    message = gcs_error_message(storage, "Listing the objects", DefaultCredentialsError("no credentials found"))

    assert "Listing the objects in bucket 'static-bucket'" in message
    assert "could not authenticate: no credentials found" in message
    assert "GS_CREDENTIALS" in message


def test_dry_run_decides_but_writes_nothing(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")
    gcs_bucket.server.reset()
    caches["default"].clear()

    run = collectstatic("--dry-run")

    assert gcs_bucket.counts() == {"LIST": 1}
    assert "Pretending to copy" in run.stdout and "css/app.css" in run.stdout
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert gcs_bucket.objects()["css/app.css"] == b"body { color: red }\n"


def test_clear_deletes_in_batches_then_uploads_everything(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # warm cache: must not survive --clear
    for i in range(120):
        gcs_bucket.put(f"stale/{i}.txt", b"stale")
    gcs_bucket.server.reset()

    run = collectstatic("--clear")

    # 125 objects: one listing, two batch requests of at most 100 deletes, then every file uploaded.
    assert gcs_bucket.counts() == {"LIST": 1, "BATCH": 2, "GET": 5, "POST": 5}
    assert "1 LIST, 5 GET, 5 POST, 2 BATCH." in run.stdout
    assert gcs_bucket.objects() == static_tree.files()


def test_changed_files_overwrite_in_place_even_without_file_overwrite(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket, file_overwrite=False)
    static_tree.write("a.css", "one")
    collectstatic()
    static_tree.write("a.css", "two")
    gcs_bucket.server.reset()

    collectstatic()

    # No DELETE first, no renamed copy.
    assert gcs_bucket.counts() == {"LIST": 1, "GET": 1, "POST": 1}
    assert gcs_bucket.objects() == {"a.css": b"two"}


def test_each_worker_thread_uploads_with_its_own_client(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    gcs_settings.COLLECTFAST_THREADS = 4
    gcs_settings.COLLECTFAST_STRATEGY = "tests.test_gcloud.ThreadRecordingStrategy"
    ThreadRecordingStrategy.used.clear()
    ThreadRecordingStrategy.main_client.clear()
    for i in range(40):
        static_tree.write(f"gen/{i}.css", f".c{i} {{}}")

    collectstatic()

    used = ThreadRecordingStrategy.used
    assert len(used) == 40
    clients_by_thread: dict[int, set[int]] = {}
    for thread, client in used:
        clients_by_thread.setdefault(thread, set()).add(client)
    assert all(len(clients) == 1 for clients in clients_by_thread.values())
    clients = {client for thread, client in used}
    assert len(clients) == len(clients_by_thread)
    assert ThreadRecordingStrategy.main_client[0] not in clients
    assert gcs_bucket.objects() == static_tree.files()


def test_a_worker_storage_has_a_client_of_its_own(gcs_settings, gcs_bucket: GCSBucket):
    storage = GoogleCloudStorage(bucket_name=gcs_bucket.name, project_id=PROJECT, credentials=AnonymousCredentials())
    strategy = GoogleCloudStrategy(storage)
    strategy.start([])
    assert copy.copy(storage)._client is storage._client  # what a plain copy would share

    worker = cast(GoogleCloudStorage, strategy.worker_storage(storage))

    assert worker.client is not storage._client
    assert worker.bucket.client is worker.client
    assert storage.bucket.client is storage._client


def test_the_strategy_is_chosen_for_google_cloud_storage_and_subclasses(settings, gcs_bucket: GCSBucket, static_tree):
    use_storage(settings, gcs_bucket)
    assert guess_strategy(staticfiles_storage) == STRATEGY
    assert check_settings() == []
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": gcs_storage(gcs_bucket, backend="tests.test_gcloud.SubclassedStorage", location="static"),
    }
    assert guess_strategy(staticfiles_storage) == STRATEGY
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic()

    # Stock collectstatic would ask about each file; collectfast lists once.
    assert gcs_bucket.counts() == {"LIST": 1}
    assert "0 static files copied, 5 unmodified." in run.stdout
    assert len(gcs_bucket.list_keys("static/")) == 5


def test_the_collectfast_2_2_dotted_path_works(gcs_settings, gcs_bucket: GCSBucket, static_tree):
    gcs_settings.COLLECTFAST_STRATEGY = STRATEGY
    assert check_settings() == []
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    gcs_bucket.server.reset()

    run = collectstatic()

    assert gcs_bucket.counts() == {"LIST": 1}
    assert "0 static files copied, 5 unmodified." in run.stdout


def test_the_strategy_refuses_other_storages(gcs_settings, static_tree):
    from django.core.files.storage import FileSystemStorage

    assert not GoogleCloudStrategy.fits(FileSystemStorage())
    gcs_settings.COLLECTFAST_STRATEGY = "collectfast.strategies.boto3.Boto3Strategy"
    static_tree.write("a.css", "a")
    with pytest.raises(CommandError, match="does not work with the configured storage GoogleCloudStorage"):
        collectstatic()


def test_collectfast_works_without_google_cloud_storage_installed():
    script = (
        "import sys\n"
        # A None entry makes the import fail, as if the package were not installed.
        "sys.modules['google.cloud.storage'] = None\n"
        "import django\n"
        "django.setup()\n"
        "from django.core.files.storage import FileSystemStorage\n"
        "from collectfast.strategies import guess_strategy\n"
        "print(guess_strategy(FileSystemStorage()))\n"
        "print('storages.backends.gcloud' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["collectfast.strategies.filesystem.FileSystemStrategy", "False"]


class UploadAllRecordingStrategy(UploadAllStrategy):
    """Records which client each upload used, and on which thread."""

    used: ClassVar[list[tuple[int, int]]] = []

    def copy_file(self, path: str, prefixed_path: str, local_storage: Any, remote_storage: Any) -> None:
        super().copy_file(path, prefixed_path, local_storage, remote_storage)
        type(self).used.append((threading.get_ident(), id(remote_storage._client)))


def test_upload_all_workers_have_clients_of_their_own(gcs_settings, gcs_bucket: GCSBucket) -> None:
    storage = GoogleCloudStorage(bucket_name=gcs_bucket.name, project_id=PROJECT, credentials=AnonymousCredentials())
    strategy = UploadAllStrategy(storage)
    main_client = storage.client  # as after any earlier use of the storage in this process
    workers: list[GoogleCloudStorage] = []

    def build() -> None:
        workers.append(cast(GoogleCloudStorage, strategy.worker_storage(storage)))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    clients = [worker.client for worker in workers]
    assert len({id(client) for client in clients}) == 4 and main_client not in clients
    assert all(worker.bucket.client is worker.client for worker in workers)
    assert {worker.bucket.name for worker in workers} == {gcs_bucket.name}
    assert storage.bucket.client is main_client


def test_upload_all_uploads_with_one_client_per_worker_thread(gcs_settings, gcs_bucket: GCSBucket, static_tree) -> None:
    gcs_settings.COLLECTFAST_THREADS = 4
    gcs_settings.COLLECTFAST_STRATEGY = "tests.test_gcloud.UploadAllRecordingStrategy"
    UploadAllRecordingStrategy.used.clear()
    for i in range(40):
        static_tree.write(f"gen/{i}.css", f".c{i} {{}}")
    main_client = staticfiles_storage.client  # the storage was used before this run

    collectstatic()

    used = UploadAllRecordingStrategy.used
    assert len(used) == 40
    clients_by_thread: dict[int, set[int]] = {}
    for thread, client in used:
        clients_by_thread.setdefault(thread, set()).add(client)
    assert all(len(clients) == 1 for clients in clients_by_thread.values())
    assert len({client for _, client in used}) == len(clients_by_thread) > 1
    assert id(main_client) not in {client for _, client in used}
    assert gcs_bucket.objects() == static_tree.files()


# The private parts of google-cloud-storage and django-storages the backend relies on, each behind one function.


def test_the_response_hooks_see_every_response_of_the_client(gcs_bucket: GCSBucket):
    from collectfast.backends.gcs import _response_hooks

    client = gcs.Client(project=PROJECT, credentials=AnonymousCredentials())
    seen: list[str] = []
    _response_hooks(client).append(lambda response, *args, **kwargs: seen.append(response.request.method))

    list(client.bucket(gcs_bucket.name).list_blobs())
    client.bucket(gcs_bucket.name).blob("a").upload_from_string(b"a")

    assert seen == ["GET", "POST"]


def test_a_batch_keeps_one_response_per_call_in_order(gcs_bucket: GCSBucket):
    from collectfast.backends.gcs import _batch_responses

    gcs_bucket.put("here", b"x")
    bucket = gcs_bucket.client.bucket(gcs_bucket.name)
    with gcs_bucket.client.batch(raise_exception=False) as batch:
        bucket.delete_blob("missing")
        bucket.delete_blob("here")

    assert [response.status_code for response in _batch_responses(batch)] == [404, 204]


def test_a_worker_copy_builds_its_own_client_and_bucket(gcs_bucket: GCSBucket):
    from collectfast.backends.gcs import worker_copy

    storage = GoogleCloudStorage(bucket_name=gcs_bucket.name, project_id=PROJECT, credentials=AnonymousCredentials())
    storage.bucket  # noqa: B018 - built, as after any use

    worker = worker_copy(storage)

    assert worker.client is not storage.client and worker.bucket.client is worker.client
