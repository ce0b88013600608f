"""collectstatic against Azurite, through unpatched azure-storage-blob and django-storages' AzureStorage."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

pytest.importorskip("azure.storage.blob", reason="needs collectfast[azure] (make test installs it)")

from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient  # noqa: E402
from django.contrib.staticfiles.storage import staticfiles_storage  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from storages.backends.azure_storage import AzureStorage  # noqa: E402

from collectfast.backends.azure import AzureBackend  # noqa: E402
from collectfast.checks import check_settings  # noqa: E402
from collectfast.manifest import WRITES_HONOURED, Manifest, loads  # noqa: E402
from collectfast.strategies import guess_strategy  # noqa: E402
from collectfast.strategies.azure import AzureManifestStrategy, AzureStrategy  # noqa: E402
from tests.azuriteserver import ACCOUNT, KEY, AzuriteServer  # noqa: E402
from tests.faultproxy import Respond, Rule  # noqa: E402
from tests.fixtures import StaticTree, collectstatic  # noqa: E402

STRATEGY = "collectfast.strategies.azure.AzureStrategy"
MANIFEST_STRATEGY = "collectfast.strategies.azure.AzureManifestStrategy"
MANIFEST = "collectfast-manifest.json"
# Requests are counted exactly: the SDK's own retries are tested separately. Azurite takes
# seconds to list 5,000 blobs or delete 256 on a loaded machine: more than collectfast's 10 s read timeout.
NO_RETRIES = {"retry_total": 0, "read_timeout": 120}
FAST_RETRIES = {**NO_RETRIES, "retry_total": 2, "initial_backoff": 0, "increment_base": 1, "random_jitter_range": 0}


# azurite: the session-scoped Azurite server, in tests/conftest.py.


@dataclass
class Container:
    name: str
    server: AzuriteServer
    #: The test's own client, straight to Azurite: its requests are not counted.
    client: ContainerClient

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        # The stored bytes: never decoded, also for a blob with Content-Encoding: gzip.
        return {key: self.client.download_blob(key, decompress=False).readall() for key in self.list_keys(prefix)}

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(name_starts_with=prefix or None))

    def properties(self, key: str) -> Any:
        return self.client.get_blob_client(key).get_blob_properties()

    def put(self, key: str, data: bytes) -> None:
        self.client.upload_blob(key, data, overwrite=True)

    def counts(self) -> dict[str, int]:
        return self.server.counts()


def direct_client(server: AzuriteServer) -> BlobServiceClient:
    upstream = f"http://127.0.0.1:{server.proxy.upstream[1]}/{ACCOUNT}"
    return BlobServiceClient(upstream, credential={"account_name": ACCOUNT, "account_key": KEY})


@pytest.fixture
def container(azurite: AzuriteServer) -> Iterator[Container]:
    name = f"test-{uuid.uuid4().hex[:20]}"
    client = direct_client(azurite).create_container(name)
    azurite.reset()
    yield Container(name, azurite, client)
    azurite.proxy.clear()


def azure_storage(container: Container, backend: str = "storages.backends.azure_storage.AzureStorage", **options: Any):
    return {
        "BACKEND": backend,
        "OPTIONS": {
            "connection_string": container.server.connection_string(),
            "azure_container": container.name,
            "client_options": dict(NO_RETRIES),
            **options,
        },
    }


def use_storage(settings: Any, container: Container, **options: Any) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": azure_storage(container, **options)}


@pytest.fixture
def azure_settings(settings: Any, container: Container, static_tree: StaticTree) -> Any:
    use_storage(settings, container)
    return settings


def write_site(tree: StaticTree) -> None:
    tree.write("css/app.css", "body { color: red }\n")
    tree.write("js/app.js", "console.log('hello');\n")
    tree.write("img/deep/er/logo.svg", "<svg/>")
    tree.write("fonts/Ünïcode naïve file.txt", "ünïcode")
    tree.write("with space/file name.txt", "spaces")


def headers(container: Container, key: str) -> tuple[str, str | None, str | None]:
    settings = container.properties(key).content_settings
    return settings.content_type, settings.cache_control, settings.content_encoding


# Deploys.


def test_first_deploy_stores_what_stock_collectstatic_stores(settings, container: Container, static_tree, azurite):
    write_site(static_tree)
    static_tree.write("js/lib.js.gz", gzip.compress(b"var already = 'gzipped';", mtime=0))
    use_storage(settings, container, cache_control="public, max-age=300")

    run = collectstatic()

    assert container.counts() == {"LIST": 1, "PUT": 6}
    assert "6 static files copied. 1 LIST, 6 PUT." in run.stdout
    assert container.objects() == static_tree.files()
    stock_name = f"stock-{uuid.uuid4().hex[:20]}"
    stock = Container(stock_name, azurite, direct_client(azurite).create_container(stock_name))
    use_storage(settings, stock, cache_control="public, max-age=300")
    collectstatic("--disable-collectfast")
    assert stock.objects() == container.objects()
    for key in container.list_keys():
        assert headers(container, key) == headers(stock, key), key
    assert headers(container, "css/app.css") == ("text/css", "public, max-age=300", None)
    assert headers(container, "js/lib.js.gz")[2] == "gzip"  # as mimetypes guesses, as stock does


def test_redeploy_with_no_change_uploads_nothing(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    container.server.reset()
    caches["default"].clear()

    run = collectstatic()

    assert container.counts() == {"LIST": 1}
    assert "0 static files copied, 5 unmodified. 1 LIST." in run.stdout


def test_redeploy_follows_the_listing_pages_of_five_thousand_blobs(azure_settings, container: Container, static_tree):
    # 5,000 older blobs sort before the site's files, which are therefore only on the second page.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: container.put(f"aaa/old-{i:04d}", b"old"), range(5000)))
    write_site(static_tree)
    collectstatic()
    container.server.reset()
    caches["default"].clear()

    run = collectstatic()

    assert container.counts() == {"LIST": 2}
    assert "0 static files copied, 5 unmodified." in run.stdout


def test_redeploy_after_changing_k_files_uploads_exactly_k(azure_settings, container: Container, static_tree):
    for i in range(30):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    for i in (3, 14, 27):
        static_tree.write(f"f/{i}.js", f"var x = {i} + 1;")
    container.server.reset()

    run = collectstatic(verbosity=2)

    assert container.counts() == {"LIST": 1, "PUT": 3}
    assert "3 static files copied, 27 unmodified." in run.stdout
    assert "Skipping 'f/0.js' (not modified)" in run.stdout
    assert container.objects() == static_tree.files()


def test_same_size_change_is_uploaded(azure_settings, container: Container, static_tree):
    static_tree.write("a.css", "aaaa")
    collectstatic()
    static_tree.write("a.css", "bbbb")
    caches["default"].clear()
    container.server.reset()

    collectstatic()

    assert container.counts() == {"LIST": 1, "PUT": 1}
    assert container.objects() == {"a.css": b"bbbb"}


def test_warm_cache_redeploy_makes_no_request(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # learns the listing after the first upload
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {}
    assert "0 static files copied, 5 unmodified. No remote requests." in run.stdout


def test_location_prefix(settings, container: Container, static_tree):
    use_storage(settings, container, location="assets/v1")
    write_site(static_tree)
    container.put("elsewhere/css/app.css", b"body { color: red }\n")
    collectstatic()
    caches["default"].clear()
    container.server.reset()

    collectstatic()

    assert container.counts() == {"LIST": 1}
    stored = {k.removeprefix("assets/v1/"): v for k, v in container.objects("assets/v1/").items()}
    assert stored == static_tree.files()
    assert container.list_keys("elsewhere/") == ["elsewhere/css/app.css"]


def test_a_blob_without_content_md5_is_always_uploaded(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    # The same bytes, committed from a block: Azure keeps no Content-MD5 for it.
    blob = container.client.get_blob_client("css/app.css")
    blob.stage_block("b1", static_tree.files()["css/app.css"])
    blob.commit_block_list([BlobBlock("b1")])
    assert not container.properties("css/app.css").content_settings.content_md5
    caches["default"].clear()
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"LIST": 1, "PUT": 1}
    assert "1 static file copied, 4 unmodified." in run.stdout
    md5 = container.properties("css/app.css").content_settings.content_md5
    assert bytes(md5) == hashlib.md5(static_tree.files()["css/app.css"]).digest()


def test_changed_files_overwrite_in_place_without_overwrite_files(azure_settings, container: Container, static_tree):
    # AZURE_OVERWRITE_FILES is False by default: stock collectstatic deletes first, collectfast overwrites.
    static_tree.write("a.css", "one")
    collectstatic()
    static_tree.write("a.css", "two")
    container.server.reset()

    collectstatic()

    assert container.counts() == {"LIST": 1, "PUT": 1}
    assert container.objects() == {"a.css": b"two"}


def test_clear_deletes_in_blob_batches_then_uploads_everything(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # warm cache: must not survive --clear
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: container.put(f"stale/{i}.txt", b"stale"), range(300)))
    container.server.reset()

    run = collectstatic("--clear")

    # 305 blobs: one listing, two blob batches (at most 256 deletes each), then every file uploaded.
    assert container.counts() == {"LIST": 1, "POST": 2, "PUT": 5}
    assert "1 LIST, 5 PUT, 2 POST." in run.stdout
    assert container.objects() == static_tree.files()


def test_dry_run_decides_but_writes_nothing(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")
    container.server.reset()
    caches["default"].clear()

    run = collectstatic("--dry-run")

    assert container.counts() == {"LIST": 1}
    assert "Pretending to copy" in run.stdout and "css/app.css" in run.stdout
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert container.objects()["css/app.css"] == b"body { color: red }\n"


def test_dry_run_with_clear_deletes_nothing(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    container.server.reset()

    collectstatic("--clear", "--dry-run")

    assert container.counts() == {"LIST": 1}
    assert len(container.list_keys()) == 5


# Failures.


def test_a_missing_container_is_one_clear_error(settings, container: Container, static_tree):
    use_storage(settings, container, azure_container="no-such-container")
    write_site(static_tree)

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert "The container 'no-such-container' does not exist at http://127.0.0.1:" in message
    assert "AZURE_CONTAINER" in message
    assert container.counts() == {"LIST": 1}


def test_bad_credentials_are_one_clear_error(settings, container: Container, static_tree):
    wrong = base64.b64encode(b"not the key" * 4).decode()
    use_storage(settings, container, connection_string=container.server.connection_string(wrong))
    write_site(static_tree)

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert f"Listing the blobs in container '{container.name}'" in message
    assert "the credentials are wrong or expired" in message
    assert "AZURE_ACCOUNT_KEY" in message
    assert container.counts() == {"LIST": 1}
    assert container.list_keys() == []


def test_a_failing_upload_fails_the_command_and_names_the_file(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    container.server.proxy.add(Rule(Respond(400, "InvalidHeaderValue"), method="PUT", key_contains="js/app.js"))

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert "could not upload 1 of 5 files" in message
    assert "js/app.js: HttpResponseError" in message
    assert "js/app.js" not in container.list_keys()
    assert len(container.list_keys()) == 4


def test_transient_errors_are_retried_and_every_attempt_is_counted(settings, container: Container, static_tree):
    use_storage(settings, container, client_options=dict(FAST_RETRIES))
    static_tree.write("css/app.css", "body {}")
    container.server.proxy.add(Rule(Respond(503, "ServerBusy"), method="PUT", times=1))

    run = collectstatic()

    assert container.counts() == {"LIST": 1, "PUT": 2}
    assert "1 LIST, 2 PUT." in run.stdout
    assert container.objects() == static_tree.files()


@pytest.mark.parametrize("credentials", ["connection_string", "account_key"])
def test_timeouts_default_to_collectfast_settings_where_the_storage_sets_none(azure_settings, container, credentials):
    azure_settings.COLLECTFAST_CONNECT_TIMEOUT = 3
    if credentials == "connection_string":
        options = {"connection_string": container.server.connection_string()}
    else:
        options = {"account_name": ACCOUNT, "account_key": KEY}
    storage = AzureStorage(azure_container=container.name, client_options={"read_timeout": 42}, **options)

    worker = AzureBackend(storage).worker_storage(storage)

    # Built without a request: the pipeline's transport and hooks as collectfast configured them.
    pipeline = worker.service_client._pipeline
    config = pipeline._transport.connection_config
    assert (config.timeout, config.read_timeout) == (3, 42)
    policies = [getattr(policy, "_policy", policy) for policy in pipeline._impl_policies]  # SansIO ones are wrapped
    hooks = [policy for policy in policies if type(policy).__name__ == "StorageRequestHook"]
    assert hooks and hooks[0]._request_callback is not None
    assert storage.client_options == {"read_timeout": 42}  # the user's storage is left as it was


def test_a_worker_storage_has_clients_of_its_own_and_overwrites(azure_settings, container: Container):
    storage = AzureStorage(connection_string=container.server.connection_string(), azure_container=container.name)
    main_client = storage.client
    assert copy.copy(storage)._client is main_client  # what a plain copy would share

    worker = AzureBackend(storage).worker_storage(storage)

    assert worker.client is not main_client and worker.service_client is not storage.service_client
    assert worker.overwrite_files and not storage.overwrite_files
    assert storage.client is main_client


def test_write_options_are_the_content_settings_stores_uploads_with(settings, container: Container):
    storage = AzureStorage(
        connection_string=container.server.connection_string(),
        azure_container=container.name,
        cache_control="public, max-age=60",
        object_parameters={"content_disposition": "inline"},
    )

    options = AzureBackend(storage).write_options("css/app.css")

    assert options == {
        "cache_control": "public, max-age=60",
        "content_type": "text/css",
        "content_encoding": None,
        "content_disposition": "inline",
    }


# Threads and strategy choice.


class ThreadRecordingStrategy(AzureStrategy):
    """Records which client each upload used, and on which thread."""

    used: ClassVar[list[tuple[int, int]]] = []

    def copy_file(self, path: str, prefixed_path: str, local_storage: Any, remote_storage: Any) -> None:
        super().copy_file(path, prefixed_path, local_storage, remote_storage)
        type(self).used.append((threading.get_ident(), id(remote_storage.service_client)))


def test_each_worker_thread_uploads_with_its_own_client(azure_settings, container: Container, static_tree):
    azure_settings.COLLECTFAST_THREADS = 4
    azure_settings.COLLECTFAST_STRATEGY = "tests.test_azure.ThreadRecordingStrategy"
    ThreadRecordingStrategy.used.clear()
    for i in range(40):
        static_tree.write(f"gen/{i}.css", f".c{i} {{}}")
    main_client = staticfiles_storage.service_client

    collectstatic()

    used = ThreadRecordingStrategy.used
    assert len(used) == 40
    clients_by_thread: dict[int, set[int]] = {}
    for thread, client in used:
        clients_by_thread.setdefault(thread, set()).add(client)
    assert all(len(clients) == 1 for clients in clients_by_thread.values())
    assert len({client for _, client in used}) == len(clients_by_thread) > 1
    assert id(main_client) not in {client for _, client in used}
    assert container.objects() == static_tree.files()


class SubclassedStorage(AzureStorage):
    """A project's own subclass."""


def test_the_strategy_is_chosen_for_azure_storage_and_subclasses(settings, container: Container, static_tree):
    use_storage(settings, container)
    assert guess_strategy(staticfiles_storage) == STRATEGY
    assert check_settings() == []
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": azure_storage(container, backend="tests.test_azure.SubclassedStorage", location="static"),
    }
    assert guess_strategy(staticfiles_storage) == STRATEGY
    settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    assert check_settings() == []
    assert AzureStrategy.fits(staticfiles_storage) and AzureManifestStrategy.fits(staticfiles_storage)
    assert not AzureStrategy.fits_class(type("Other", (), {}))  # type: ignore[arg-type]


# The deploy manifest.


@pytest.fixture
def manifest_settings(azure_settings: Any) -> Any:
    azure_settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    return azure_settings


def stored_manifest(container: Container) -> Manifest:
    return loads(container.client.download_blob(MANIFEST).readall())


def assert_consistent(container: Container) -> Manifest:
    """Every entry describes the blob in the container: its Content-MD5, size and bytes."""
    manifest = stored_manifest(container)
    for name, entry in manifest.entries.items():
        props = container.properties(name)
        assert (bytes(props.content_settings.content_md5).hex(), props.size) == (entry.stored.etag, entry.size), name
        assert hashlib.md5(container.client.download_blob(name).readall()).hexdigest() == entry.md5, name
    return manifest


def test_manifest_first_deploy_records_what_azure_stored(manifest_settings, container: Container, static_tree):
    write_site(static_tree)

    run = collectstatic()

    # One GET finds no manifest; 5 uploads, the manifest's creation (If-None-Match: *) and the one-off
    # probe proving Azure applies If-Match (answered 412, nothing written).
    assert container.counts() == {"GET": 1, "PUT": 7}
    assert "5 static files copied. 1 GET, 7 PUT. Manifest saved (5 entries)." in run.stdout
    assert {k: v for k, v in container.objects().items() if k != MANIFEST} == static_tree.files()
    manifest = assert_consistent(container)
    assert set(manifest.entries) == set(static_tree.files())
    assert manifest.conditional_writes == WRITES_HONOURED


def test_manifest_verified_no_change_redeploy_reads_once_and_lists(manifest_settings, container, static_tree):
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"GET": 1, "LIST": 1}
    assert "0 static files copied, 5 unmodified. 1 LIST, 1 GET. Manifest unchanged (5 entries)." in run.stdout


def test_manifest_trusting_no_change_redeploy_is_one_get(manifest_settings, container: Container, static_tree):
    manifest_settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    write_site(static_tree)
    collectstatic()
    caches["default"].clear()
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"GET": 1}
    assert "0 static files copied, 5 unmodified. 1 GET. Manifest unchanged (5 entries)." in run.stdout


def test_manifest_verified_mode_repairs_a_blob_replaced_by_hand(manifest_settings, container, static_tree):
    write_site(static_tree)
    collectstatic()
    container.put("css/app.css", b"replaced by hand")
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"GET": 1, "LIST": 1, "PUT": 2}
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert container.objects()["css/app.css"] == static_tree.files()["css/app.css"]
    assert_consistent(container)


def test_manifest_with_a_missing_container_is_one_clear_error(settings, container: Container, static_tree):
    use_storage(settings, container, azure_container="no-such-container")
    settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    write_site(static_tree)

    with pytest.raises(CommandError, match="The container 'no-such-container' does not exist"):
        collectstatic()

    assert container.counts() == {"GET": 1}


def rival_deploy(container: Container, tree: StaticTree) -> None:
    """Another machine's whole deploy of ``tree``, through the strategy's API, with a storage of its own."""
    storage = AzureStorage(connection_string=container.server.connection_string(), azure_container=container.name)
    strategy = AzureManifestStrategy(storage)
    paths = sorted(tree.files())
    strategy.start(paths)
    source = FileSystemStorage(location=str(tree.root))
    worker = strategy.worker_storage(storage)
    for path in paths:
        if strategy.should_copy_file(path, path, source):
            strategy.forget(path)
            strategy.copy_file(path, path, source, worker)
    strategy.finish(succeeded=True)


class RacingStrategy(AzureManifestStrategy):
    """Another deploy runs to completion after this one read the manifest and before it writes."""

    rival: ClassVar[tuple[Container, StaticTree] | None] = None

    def finish(self, *, succeeded: bool, dry_run: bool = False) -> None:
        assert self.rival is not None
        rival_deploy(*self.rival)
        super().finish(succeeded=succeeded, dry_run=dry_run)


def test_two_deploys_racing_for_the_manifest_merge(manifest_settings, container: Container, static_tree, tmp_path):
    static_tree.write("shared.css", "shared")
    collectstatic()
    rival = StaticTree(tmp_path / "rival")
    rival.write("shared.css", "shared")
    rival.write("theirs.css", "only theirs")
    static_tree.write("mine.css", "only mine")
    RacingStrategy.rival = (container, rival)
    manifest_settings.COLLECTFAST_STRATEGY = "tests.test_azure.RacingStrategy"
    container.server.reset()

    run = collectstatic()

    # The conditional write (If-Match) was refused once: read again, merged, written.
    assert "merged with a concurrent deploy" in run.stdout
    manifest = assert_consistent(container)
    assert set(manifest.entries) == {"shared.css", "mine.css", "theirs.css"}


def test_manifest_clear_deletes_the_manifest_too(manifest_settings, container: Container, static_tree):
    write_site(static_tree)
    collectstatic()
    container.server.reset()

    run = collectstatic("--clear")

    # A new manifest: created, then the one-off probe of If-Match.
    assert container.counts() == {"LIST": 1, "POST": 1, "PUT": 5 + 2}
    assert "Manifest saved (5 entries)." in run.stdout
    assert_consistent(container)


def test_two_containers_never_share_a_cached_listing(settings, container: Container, static_tree, azurite):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # the listing of the first container is now cached
    other_name = f"other-{uuid.uuid4().hex[:20]}"
    other = Container(other_name, azurite, direct_client(azurite).create_container(other_name))
    use_storage(settings, other)

    run = collectstatic()

    assert "5 static files copied." in run.stdout
    assert other.objects() == static_tree.files()


# Pruning.


def test_prune_deletes_what_no_deploy_produces_in_one_blob_batch(azure_settings, container: Container, static_tree):
    azure_settings.COLLECTFAST_PRUNE_GRACE = 0
    for i in range(10):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    (static_tree.root / "f/7.js").unlink()
    container.put("f/stale.js", b"stale")
    container.server.reset()
    caches["default"].clear()

    run = collectstatic("--prune")

    # The deploy's listing, then the prune's listing and one blob batch.
    assert container.counts() == {"LIST": 2, "POST": 1}
    assert "Pruned 2 objects" in run.stdout
    assert container.list_keys() == sorted(static_tree.files())


def test_an_unreachable_endpoint_is_one_clear_error(azure_settings, container: Container, static_tree):
    write_site(static_tree)
    container.server.proxy.refuse()
    try:
        with pytest.raises(CommandError) as error:
            collectstatic()
    finally:
        container.server.proxy.restore()

    message = str(error.value)
    assert f"Listing the blobs in container '{container.name}': http://127.0.0.1:" in message
    assert "could not be reached" in message and "BlobEndpoint" in message


def test_an_unreadable_manifest_uploads_everything_and_is_left_alone(manifest_settings, container, static_tree):
    write_site(static_tree)
    collectstatic()
    before = container.client.download_blob(MANIFEST).readall()
    container.server.reset()
    container.server.proxy.add(Rule(Respond(500, "InternalError"), method="GET", key_contains=MANIFEST))

    run = collectstatic()

    assert container.counts() == {"GET": 1, "PUT": 5}
    assert "Every file is uploaded, and the manifest is left as it is." in run.stderr
    assert container.client.download_blob(MANIFEST).readall() == before


def test_upload_all_uploads_every_file_in_place(azure_settings, container, static_tree):
    azure_settings.COLLECTFAST_STRATEGY = "collectfast.strategies.upload_all.UploadAllStrategy"
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"PUT": 5}
    assert "5 static files copied." in run.stdout
    assert container.objects() == static_tree.files()
