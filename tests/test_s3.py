"""collectstatic against a real S3-compatible server, through unpatched boto3 and django-storages."""

from __future__ import annotations

import gzip
import os
import re
import threading
from typing import Any, ClassVar

import pytest
from django.core.cache import caches
from django.core.management.base import CommandError
from storages.backends.s3 import S3Storage

from collectfast.strategies.boto3 import Boto3Strategy
from tests.fixtures import Bucket, StaticTree, collectstatic, lists_for, s3_storage

MIB = 1024 * 1024


def write_site(tree: StaticTree) -> None:
    tree.write("css/app.css", "body { color: red }\n")
    tree.write("js/app.js", "console.log('hello');\n")
    tree.write("img/deep/er/still/logo.svg", "<svg/>")
    tree.write("fonts/Ünïcode naïve file.txt", "ünïcode")
    tree.write("with space/file name.txt", "spaces")


def test_first_deploy_uploads_every_file_with_the_same_bytes(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)

    run = collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 5}
    assert "5 static files copied. 1 LIST, 5 PUT." in run.stdout
    assert bucket.objects() == static_tree.files()


def test_redeploy_with_no_change_uploads_nothing(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    collectstatic()
    bucket.server.reset()
    caches["default"].clear()

    run = collectstatic()

    assert bucket.counts() == {"LIST": 1}
    assert "0 static files copied, 5 unmodified. 1 LIST." in run.stdout


def test_redeploy_pages_the_listing_one_request_per_thousand_keys(s3_settings, bucket: Bucket, static_tree: StaticTree):
    n = 1500
    for i in range(n):
        static_tree.write(f"many/{i // 100}/file-{i}.txt", f"file {i}")
    collectstatic()
    bucket.server.reset()
    caches["default"].clear()

    collectstatic()

    assert bucket.counts() == {"LIST": lists_for(n)} == {"LIST": 2}


def test_redeploy_after_changing_k_files_uploads_exactly_k(s3_settings, bucket: Bucket, static_tree: StaticTree):
    for i in range(30):
        static_tree.write(f"f/{i}.js", f"var x = {i};")
    collectstatic()
    for i in (3, 14, 27):
        static_tree.write(f"f/{i}.js", f"var x = {i} + 1;")
    bucket.server.reset()

    run = collectstatic(verbosity=2)

    assert bucket.counts() == {"LIST": 1, "PUT": 3}
    assert "3 static files copied, 27 unmodified." in run.stdout
    assert "Skipping 'f/0.js' (not modified)" in run.stdout
    assert bucket.objects() == static_tree.files()


def test_warm_cache_redeploy_makes_no_request(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # learns the listing after the first upload
    bucket.server.reset()

    run = collectstatic()

    assert bucket.counts() == {}
    assert "No remote requests." in run.stdout


def test_cache_keys_name_the_storage_so_two_buckets_never_share_checksums(
    s3_settings, bucket: Bucket, static_tree: StaticTree
):
    write_site(static_tree)
    collectstatic()
    collectstatic()
    other = bucket.client.create_bucket(Bucket=bucket.name + "-b") and bucket.name + "-b"
    s3_settings.STORAGES = {**s3_settings.STORAGES, "staticfiles": s3_storage(bucket, bucket_name=other)}
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 5}
    assert len(bucket.client.list_objects_v2(Bucket=other)["Contents"]) == 5


def test_a_multipart_file_is_skipped_on_redeploy(s3_settings, bucket: Bucket, static_tree: StaticTree):
    big = os.urandom(9 * MIB)
    static_tree.write("video/big.bin", big)
    collectstatic()
    assert re.fullmatch(r"[0-9a-f]{32}-2", bucket.etag("video/big.bin"))
    caches["default"].clear()
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"LIST": 1}
    static_tree.write("video/big.bin", big[:-1] + b"!")
    bucket.server.reset()
    collectstatic()
    # The cache is warm: no LIST. The GET looks for multipart uploads a killed run left of it.
    assert bucket.counts() == {"POST": 2, "PUT": 2, "GET": 1}
    assert bucket.objects()["video/big.bin"] == big[:-1] + b"!"


def test_multipart_uploads_run_one_at_a_time_while_small_files_go_on(
    s3_settings, bucket: Bucket, static_tree: StaticTree
):
    # Each holds up to 10 parts of 8 MiB in memory: a tree of many large files must not multiply that.
    s3_settings.COLLECTFAST_THREADS = 8
    for i in range(3):
        static_tree.write(f"video/big-{i}.bin", os.urandom(9 * MIB))
    for i in range(20):
        static_tree.write(f"css/small-{i}.css", f".c{i} {{}}")
    bucket.server.configure(delay_ms=30)
    try:
        collectstatic()
    finally:
        bucket.server.configure(delay_ms=0)

    assert bucket.server.max_open_uploads() == 1
    assert bucket.counts() == {"LIST": 1, "POST": 6, "PUT": 6 + 20, "GET": 1}  # GET: ListMultipartUploads
    assert bucket.objects() == static_tree.files()


def test_location_prefix(settings, bucket: Bucket, static_tree: StaticTree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, location="assets/v1")}
    write_site(static_tree)
    bucket.client.put_object(Bucket=bucket.name, Key="elsewhere/css/app.css", Body=b"body { color: red }\n")
    collectstatic()
    caches["default"].clear()
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"LIST": 1}
    assert {k.removeprefix("assets/v1/"): v for k, v in bucket.objects("assets/v1/").items()} == static_tree.files()


def test_threads_on_and_off_give_the_same_bucket(settings, s3_server, static_tree: StaticTree):
    from tests.fixtures import make_client

    write_site(static_tree)
    for i in range(40):
        static_tree.write(f"gen/{i}.css", f".c{i} {{}}")
    results = []
    for threads in (0, 1, 8):
        name = f"threads-{threads}-{os.getpid()}-{id(results)}"
        client = make_client(s3_server.endpoint_url)
        client.create_bucket(Bucket=name)
        target = Bucket(name, s3_server, client)
        settings.COLLECTFAST_THREADS = threads
        settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(target)}
        collectstatic()
        results.append(target.objects())
    assert results[0] == results[1] == results[2] == static_tree.files()


def test_gzipped_files_are_skipped_when_unchanged(settings, bucket: Bucket, static_tree: StaticTree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, gzip=True)}
    static_tree.write("css/app.css", "body { color: red }\n" * 100)
    static_tree.write("img/a.png", b"\x89PNG not gzipped")
    collectstatic()
    stored = bucket.objects()
    assert gzip.decompress(stored["css/app.css"]) == static_tree.files()["css/app.css"]
    caches["default"].clear()
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"LIST": 1}


def object_metadata(bucket: Bucket) -> dict[str, tuple[object, ...]]:
    heads = {key: bucket.client.head_object(Bucket=bucket.name, Key=key) for key in bucket.list_keys()}
    fields = ("ContentType", "ContentEncoding", "CacheControl", "Metadata", "ETag", "ContentLength")
    return {key: tuple(head.get(field) for field in fields) for key, head in heads.items()}


@pytest.mark.parametrize("gzip_on", [False, True])
def test_objects_are_stored_as_django_storages_stores_them(
    settings, s3_server, bucket: Bucket, static_tree: StaticTree, gzip_on: bool
):
    from tests.fixtures import make_client

    write_site(static_tree)
    static_tree.write("css/big.css", "body { color: red }\n" * 5000)
    static_tree.write("data/archive.tar.gz", b"\x1f\x8b not really")
    options = {
        "gzip": gzip_on,
        "object_parameters": {"CacheControl": "max-age=86400", "Metadata": {"deploy": "v42"}},
    }
    stock_bucket = Bucket(f"{bucket.name}-stock", s3_server, make_client(s3_server.endpoint_url))
    stock_bucket.client.create_bucket(Bucket=stock_bucket.name)

    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(stock_bucket, **options)}
    collectstatic("--disable-collectfast")
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    collectstatic()

    assert object_metadata(bucket) == object_metadata(stock_bucket)
    assert bucket.objects() == stock_bucket.objects()
    if gzip_on:
        assert gzip.decompress(bucket.objects()["css/big.css"]) == static_tree.files()["css/big.css"]


class CustomSaveStorage(S3Storage):
    saved: list[str] = []

    def _save(self, name, content):  # type: ignore[no-untyped-def]
        CustomSaveStorage.saved.append(name)
        return super()._save(name, content)


def test_a_storage_that_overrides_save_uploads_through_its_own_save(settings, bucket: Bucket, static_tree: StaticTree):
    storage = s3_storage(bucket)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {**storage, "BACKEND": "tests.test_s3.CustomSaveStorage"}}
    write_site(static_tree)
    CustomSaveStorage.saved.clear()

    collectstatic()

    assert sorted(CustomSaveStorage.saved) == sorted(static_tree.files())
    assert bucket.objects() == static_tree.files()


def test_a_file_that_gzip_grows_past_the_multipart_threshold_is_sent_in_parts(
    settings, bucket: Bucket, static_tree: StaticTree
):
    # Random bytes do not compress: gzipped, a file just under 8 MiB is just over it,
    # so s3transfer splits it, and the ETag predicted for the next deploy must be multipart too.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, gzip=True)}
    noise = os.urandom(8 * MIB - 1024)
    static_tree.write("js/noise.js", noise)
    collectstatic()
    assert re.fullmatch(r"[0-9a-f]{32}-2", bucket.etag("js/noise.js"))
    assert gzip.decompress(bucket.objects()["js/noise.js"]) == noise
    caches["default"].clear()
    bucket.server.reset()

    collectstatic()

    assert bucket.counts() == {"LIST": 1}


def test_kms_encrypted_objects_are_always_uploaded(settings, bucket: Bucket, static_tree: StaticTree):
    options = {"object_parameters": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/test"}}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}
    static_tree.write("a.css", "a")
    collectstatic()
    bucket.server.reset()
    caches["default"].clear()

    collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 1}


def test_a_failing_upload_fails_the_command_and_names_the_file(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    bucket.server.add_fault("PUT", "js/app.js", status=403, code="AccessDenied")

    with pytest.raises(CommandError) as error:
        collectstatic()

    message = str(error.value)
    assert "could not upload 1 of 5 files" in message
    assert "js/app.js: AccessDenied: An error occurred (AccessDenied)" in message
    assert "js/app.js" not in bucket.list_keys()
    assert len(bucket.list_keys()) == 4


def test_transient_errors_are_retried(s3_settings, bucket: Bucket, static_tree: StaticTree):
    static_tree.write("css/app.css", "body {}")
    bucket.server.add_fault("PUT", "css/app.css", status=503, code="SlowDown", times=2)

    collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 3}
    assert bucket.objects() == static_tree.files()


def test_an_unreadable_local_file_is_named(s3_settings, bucket: Bucket, static_tree: StaticTree):
    static_tree.write("ok.css", "ok")
    # A link to nowhere: listed by the finder, unreadable whoever runs the tests.
    os.symlink(static_tree.root / "gone.css", static_tree.root / "secret.css")
    bucket.client.put_object(Bucket=bucket.name, Key="secret.css", Body=b"old")
    bucket.server.reset()

    with pytest.raises(CommandError, match=r"secret\.css: FileNotFoundError"):
        collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 1}
    assert bucket.objects() == {"ok.css": b"ok", "secret.css": b"old"}


def test_a_missing_bucket_is_a_clear_error(settings, bucket: Bucket, static_tree: StaticTree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, bucket_name="no-such-bucket-here")}
    static_tree.write("a.css", "a")

    with pytest.raises(CommandError, match="The bucket 'no-such-bucket-here' does not exist"):
        collectstatic()


def test_dry_run_decides_but_writes_nothing(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    collectstatic()
    static_tree.write("css/app.css", "changed")
    bucket.server.reset()
    caches["default"].clear()

    run = collectstatic("--dry-run")

    assert bucket.counts() == {"LIST": 1}
    assert "Pretending to copy" in run.stdout and "css/app.css" in run.stdout
    assert "1 static file copied, 4 unmodified." in run.stdout
    assert bucket.objects()["css/app.css"] == b"body { color: red }\n"


def test_clear_deletes_then_uploads_everything(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    collectstatic()
    collectstatic()  # warm cache: must not survive --clear
    bucket.client.put_object(Bucket=bucket.name, Key="stale.txt", Body=b"stale")
    bucket.server.reset()

    collectstatic("--clear")

    # One LIST and one batched DELETE for the clear, then every file uploaded.
    assert bucket.counts() == {"LIST": 1, "POST": 1, "PUT": 5}
    assert bucket.objects() == static_tree.files()


def test_link_is_refused_for_a_remote_storage(s3_settings, static_tree: StaticTree):
    static_tree.write("a.css", "a")
    with pytest.raises(CommandError, match="Can't symlink to a remote destination"):
        collectstatic("--link")


def test_disable_collectfast_is_stock_collectstatic(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)

    run = collectstatic("--disable-collectfast")

    assert run.stdout.strip() == "5 static files copied."
    assert bucket.objects() == static_tree.files()
    bucket.server.reset()
    collectstatic("--disable-collectfast")
    # Stock asks about every file and, on a fresh checkout, deletes and re-uploads it.
    assert bucket.counts()["HEAD"] >= 5


def test_collectfast_enabled_false_is_stock_collectstatic(s3_settings, bucket: Bucket, static_tree: StaticTree):
    s3_settings.COLLECTFAST_ENABLED = False
    static_tree.write("a.css", "a")

    run = collectstatic()

    assert run.stdout.strip() == "1 static file copied."
    assert bucket.counts().get("LIST") is None


def test_summary_counts_match_the_server(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    static_tree.write("big.bin", os.urandom(9 * MIB))

    run = collectstatic()

    counts = bucket.counts()
    assert counts == {"LIST": 1, "GET": 1, "POST": 2, "PUT": 7}
    assert "1 LIST, 1 GET, 7 PUT, 2 POST." in run.stdout


def test_changed_files_overwrite_in_place_even_without_file_overwrite(
    settings, bucket: Bucket, static_tree: StaticTree
):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, file_overwrite=False)}
    static_tree.write("a.css", "one")
    collectstatic()
    static_tree.write("a.css", "two")
    bucket.server.reset()

    collectstatic()

    # Overwritten in one PUT: no DELETE first, no window where the asset 404s, no renamed copy.
    assert bucket.counts() == {"LIST": 1, "PUT": 1}
    assert bucket.objects() == {"a.css": b"two"}


def test_ignore_options_keep_their_meaning(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    static_tree.write("css/.hidden", "dotfile")
    static_tree.write("css/app.css~", "backup")

    collectstatic("--ignore", "*.js", "--ignore", "with space")

    assert bucket.list_keys() == ["css/app.css", "fonts/Ünïcode naïve file.txt", "img/deep/er/still/logo.svg"]
    collectstatic("--no-default-ignore")
    assert "css/.hidden" in bucket.list_keys() and "css/app.css~" in bucket.list_keys()


def test_verbosity_0_prints_nothing(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    run = collectstatic(verbosity=0)
    assert run.stdout == run.stderr == ""
    assert len(bucket.list_keys()) == 5


# Where files are decided.


class ThreadRecordingStrategy(Boto3Strategy):
    """Records the thread of every local hashing, decision and upload."""

    calls: ClassVar[list[tuple[str, str, bool]]] = []

    def prefetch(self, path: str, prefixed_path: str, local_storage: Any) -> None:
        type(self).calls.append(("prefetch", prefixed_path, threading.current_thread() is threading.main_thread()))
        super().prefetch(path, prefixed_path, local_storage)

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Any) -> bool:
        type(self).calls.append(("decide", prefixed_path, threading.current_thread() is threading.main_thread()))
        return super().should_copy_file(path, prefixed_path, local_storage)

    def copy_file(self, path: str, prefixed_path: str, local_storage: Any, remote_storage: Any) -> None:
        type(self).calls.append(("upload", prefixed_path, threading.current_thread() is threading.main_thread()))
        super().copy_file(path, prefixed_path, local_storage, remote_storage)


class RequestingStrategy(ThreadRecordingStrategy):
    """A strategy whose decisions may make requests: they stay on the workers."""

    decides_locally = False


@pytest.mark.parametrize("strategy", [ThreadRecordingStrategy, RequestingStrategy])
def test_local_decisions_run_on_the_main_thread_and_uploads_on_the_workers(
    s3_settings, bucket: Bucket, static_tree: StaticTree, strategy: type[ThreadRecordingStrategy]
):
    for i in range(30):
        static_tree.write(f"f/{i:02d}.css", f".c{i} {{}}")
    collectstatic()
    for i in range(0, 30, 3):
        static_tree.write(f"f/{i:02d}.css", f".changed{i} {{}}")
    caches["default"].clear()
    bucket.server.reset()
    s3_settings.COLLECTFAST_STRATEGY = f"tests.test_s3.{strategy.__name__}"
    strategy.calls.clear()

    run = collectstatic()

    calls = {
        kind: {name: on_main for k, name, on_main in strategy.calls if k == kind}
        for kind in ("prefetch", "decide", "upload")
    }
    changed = {f"f/{i:02d}.css" for i in range(0, 30, 3)}
    # Files hashed while the listing was under way and proven unchanged are not asked about again.
    assert set(calls["upload"]) == changed <= set(calls["decide"])
    assert set(calls["decide"]) | set(calls["prefetch"]) == set(static_tree.files())
    assert set(calls["prefetch"].values()) <= {True}
    assert set(calls["decide"].values()) == {strategy.decides_locally}
    assert set(calls["upload"].values()) == {False}
    assert bucket.counts() == {"LIST": 1, "PUT": 10}
    assert "10 static files copied, 20 unmodified." in run.stdout
    assert bucket.objects() == static_tree.files()
