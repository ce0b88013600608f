"""Manifest storages: hashing and rewriting run locally, uploads go through collectfast (issue 4).

Every S3 test compares with Django's stock command run on the same tree into another
bucket of the same real server, through unpatched boto3 and django-storages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import django
import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.cache import caches
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import call_command
from django.core.management.base import CommandError
from storages.backends.s3 import S3ManifestStaticStorage

from collectfast import counting
from collectfast.strategies.boto3 import Boto3Strategy
from tests.fixtures import Bucket, StaticTree, collectstatic, s3_storage

ORIGINALS = 10
ADJUSTABLE = 4  # three CSS files and one JS file


class UnhashedCSSStorage(S3ManifestStaticStorage):
    """Rewrites CSS in place: the post-processed file has the original's name."""

    def file_hash(self, name: str | None, content: Any = None) -> str | None:
        return None if name and name.endswith(".css") else super().file_hash(name, content)


# django-storages accepts only its own settings as OPTIONS: the mixin's attributes are set by subclassing.
class KeepIntermediateStorage(S3ManifestStaticStorage):
    keep_intermediate_files = True


class CustomPatternsStorage(S3ManifestStaticStorage):
    patterns = (
        ("*.css", (r"""(?P<matched>url\(['"]{0,1}\s*(?P<url>.*?)["']{0,1}\))""",)),
        ("*.html", ((r"""(?P<matched>src="(?P<url>[^"]+)")""", 'src="%(url)s"'),)),
    )


class RenamedManifestStorage(S3ManifestStaticStorage):
    manifest_name = "assets/manifest.json"
    max_post_process_passes = 2


def manifest_storage(bucket: Bucket, backend: str = "storages.backends.s3.S3ManifestStaticStorage", **options):
    return {**s3_storage(bucket, **options), "BACKEND": backend}


def write_site(tree: StaticTree) -> None:
    tree.write("css/base/reset.css", "html { margin: 0 }\n.bg { background: url('/static/img/bg.png') }\n")
    tree.write(
        "css/app.css",
        '@import "base/reset.css";\n'
        'body { background: url("../img/bg.png") }\n'
        ".logo { background: url(../img/deep/logo.svg#icon) }\n"
        '@font-face { src: url("../fonts/f.eot?#iefix") }\n'
        "/*# sourceMappingURL=app.css.map */\n",
    )
    tree.write("css/app.css.map", '{"version": 3}')
    tree.write("css/theme.css", '@import url("app.css");\n.theme { color: blue }\n')
    tree.write("js/app.js", 'console.log("hi");\n//# sourceMappingURL=app.js.map\n')
    tree.write("js/app.js.map", '{"version": 3, "sources": []}')
    tree.write("img/bg.png", b"\x89PNG fake")
    tree.write("img/deep/logo.svg", "<svg/>")
    tree.write("fonts/f.eot", b"eot")
    tree.write("with space/file name.txt", "spaces")


def edit(tree: StaticTree, path: str, content: str) -> None:
    """Change a file as a new commit would: stock compares modification times, to the second."""
    tree.write(path, content)
    later = time.time() + 60
    os.utime(tree.root / path, (later, later))


def new_bucket(bucket: Bucket, suffix: str) -> Bucket:
    other = Bucket(f"{bucket.name}-{suffix}", bucket.server, bucket.client)
    bucket.client.create_bucket(Bucket=other.name)
    return other


def deploy(settings, target: Bucket, *args: str, stock: bool = False, verbosity: int = 1, **options: Any):
    """collectstatic into ``target`` (stock: Django's command), with a freshly built storage."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(target, **options)}
    return collectstatic(*args, *(["--disable-collectfast"] if stock else []), verbosity=verbosity)


def snapshot(bucket: Bucket) -> dict[str, tuple[bytes, str]]:
    objects = bucket.objects()
    return {
        key: (body, bucket.client.head_object(Bucket=bucket.name, Key=key)["ContentType"])
        for key, body in objects.items()
    }


def etags(bucket: Bucket) -> dict[str, str]:
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
    return {obj["Key"]: obj["ETag"] for page in pages for obj in page.get("Contents", ())}


def manifest_paths(bucket: Bucket) -> dict[str, str]:
    body = bucket.client.get_object(Bucket=bucket.name, Key="staticfiles.json")["Body"].read()
    paths: dict[str, str] = json.loads(body)["paths"]
    return paths


def assert_same_buckets(stock: Bucket, fast: Bucket) -> None:
    expected, actual = snapshot(stock), snapshot(fast)
    assert sorted(actual) == sorted(expected)
    assert actual == expected
    assert json.loads(actual["staticfiles.json"][0]) == json.loads(expected["staticfiles.json"][0])


class Sent:
    """The requests collectfast's clients send, in order, seen by botocore's before-send hook.

    When the PUT of staticfiles.json is about to leave, the bucket is listed (with
    the test's own client) to see what is in place at that moment.
    """

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.requests: list[tuple[str, str]] = []
        self.at_manifest_put: dict[str, str] | None = None
        self._lock = threading.Lock()

    def __call__(self, request: Any, **kwargs: Any) -> None:
        key = unquote(urlsplit(request.url).path).lstrip("/").partition("/")[2]
        if request.method == "PUT" and key == "staticfiles.json":
            self.at_manifest_put = etags(self.bucket)
        with self._lock:
            self.requests.append((request.method, key))

    def puts(self) -> list[str]:
        return [key for method, key in self.requests if method == "PUT"]


@pytest.fixture
def sent(monkeypatch, bucket: Bucket) -> Sent:
    recorder = Sent(bucket)
    instrument = counting.instrument

    def instrument_and_record(client: Any) -> None:
        instrument(client)
        client.meta.events.register("before-send.s3", recorder, unique_id="test-manifest-order")

    monkeypatch.setattr(counting, "instrument", instrument_and_record)
    return recorder


def assert_manifest_put_last_with_its_files_in_place(sent: Sent, bucket: Bucket) -> None:
    assert sent.puts()[-1] == "staticfiles.json"
    assert sent.requests[-1] == ("PUT", "staticfiles.json")
    assert ("DELETE", "staticfiles.json") not in sent.requests
    assert sent.at_manifest_put is not None
    final = etags(bucket)
    for hashed in manifest_paths(bucket).values():
        assert sent.at_manifest_put.get(hashed) == final[hashed], hashed


def test_first_deploy_gives_the_stock_bucket_key_for_key_and_byte_for_byte(
    settings, bucket: Bucket, static_tree: StaticTree, sent: Sent
):
    write_site(static_tree)
    stock = new_bucket(bucket, "stock")
    stock_run = deploy(settings, stock, stock=True)
    bucket.server.reset()

    run = deploy(settings, bucket, verbosity=2)

    # Building S3ManifestStaticStorage looks for the old staticfiles.json (HEAD, 404), as with stock.
    # Then one LIST, and one PUT per original, per hashed name and for the manifest.
    assert bucket.counts() == {"HEAD": 1, "LIST": 1 + 1, "PUT": ORIGINALS + ORIGINALS + 1}  # 1 LIST: the test's
    assert run.stdout.splitlines()[-1].startswith(stock_run.stdout.strip() + " ")
    assert stock_run.stdout.strip() == f"{ORIGINALS} static files copied, {ORIGINALS} post-processed."
    assert_same_buckets(stock, bucket)
    assert_manifest_put_last_with_its_files_in_place(sent, bucket)
    paths = manifest_paths(bucket)
    assert re.fullmatch(r"css/app\.[0-9a-f]{12}\.css", paths["css/app.css"])
    app = bucket.objects()[paths["css/app.css"]].decode()
    assert f'@import url("base/{paths["css/base/reset.css"].rpartition("/")[2]}")' in app
    assert f'url("../{paths["fonts/f.eot"]}?#iefix")' in app
    assert "sourceMappingURL=app.css." in app and ".map */" in app


def test_no_change_redeploy_puts_nothing_and_reads_no_object(settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    deploy(settings, bucket)
    caches["default"].clear()
    bucket.server.reset()

    run = collectstatic()

    assert bucket.counts() == {"LIST": 1}
    assert run.stdout.strip() == f"0 static files copied, {ORIGINALS} unmodified, {ADJUSTABLE} post-processed. 1 LIST."
    collectstatic()  # the cache learns the listing
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {}


def test_a_freshly_built_storage_reads_the_old_manifest_once_as_stock_does(
    settings, bucket: Bucket, static_tree: StaticTree
):
    write_site(static_tree)
    deploy(settings, bucket)
    caches["default"].clear()
    settings.STORAGES = {**settings.STORAGES}  # as in a new process: the storage is built again
    bucket.server.reset()

    hashed_files = dict(staticfiles_storage.hashed_files)
    built = bucket.counts()
    bucket.server.reset()
    collectstatic()

    # ManifestFilesMixin.__init__ reads staticfiles.json, for stock too: S3File's HEAD, then s3transfer's HEAD and GET.
    assert built == {"HEAD": 2, "GET": 1}
    assert bucket.counts() == {"LIST": 1}
    assert hashed_files == manifest_paths(bucket)


def test_changing_one_css_file_uploads_it_the_names_that_change_and_the_manifest_last(
    settings, bucket: Bucket, static_tree: StaticTree, sent: Sent
):
    write_site(static_tree)
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True)
    deploy(settings, bucket)
    old = manifest_paths(bucket)
    before = etags(bucket)
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    deploy(settings, stock, stock=True)
    sent.requests.clear()
    bucket.server.reset()

    deploy(settings, bucket)

    counts = bucket.counts()
    new = manifest_paths(bucket)
    after = etags(bucket)
    changed = {key for key, etag in after.items() if before.get(key) != etag}
    # reset.css changed; app.css imports it and theme.css imports app.css, so all three get new names.
    renamed = {"css/base/reset.css", "css/app.css", "css/theme.css"}
    assert {name for name in new if new[name] != old[name]} == renamed
    assert changed == {"css/base/reset.css", "staticfiles.json"} | {new[name] for name in renamed}
    assert sorted(sent.puts()) == sorted(changed)
    # Building the storage reads the old manifest as with stock (HEAD, HEAD, GET); 1 LIST is the test's.
    assert counts == {"HEAD": 2, "GET": 1, "LIST": 1 + 1, "PUT": 5}
    assert set(before) <= set(after)  # old hashed names stay for pages still being served
    assert_manifest_put_last_with_its_files_in_place(sent, bucket)
    assert_same_buckets(stock, bucket)


def test_post_processed_files_are_decided_on_the_main_thread_too(settings, bucket: Bucket, static_tree: StaticTree):
    from tests.test_s3 import ThreadRecordingStrategy

    write_site(static_tree)
    deploy(settings, bucket)
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    caches["default"].clear()
    settings.COLLECTFAST_STRATEGY = "tests.test_s3.ThreadRecordingStrategy"
    ThreadRecordingStrategy.calls.clear()

    deploy(settings, bucket)

    calls = ThreadRecordingStrategy.calls
    uploaded = {name for kind, name, _ in calls if kind == "upload"}
    new = manifest_paths(bucket)
    renamed = {new[name] for name in ("css/base/reset.css", "css/app.css", "css/theme.css")}
    assert uploaded == {"css/base/reset.css", "staticfiles.json"} | renamed
    assert {name for kind, name, _ in calls if kind == "decide"} >= uploaded
    assert {on_main for kind, _, on_main in calls if kind == "decide"} == {True}
    assert {on_main for kind, _, on_main in calls if kind == "upload"} == {False}


@pytest.mark.parametrize(
    ("location", "reference", "counts", "stderr", "message"),
    [
        (
            "",
            "../img/missing.png",
            # Stock's own question, asked here too: did an earlier deploy leave the file in the bucket?
            {"HEAD": 1},
            "Post-processing 'css/broken.css' failed!",
            "The file 'img/missing.png' could not be found with <storages.backends.s3.S3ManifestStaticStorage",
        ),
        ("site", "../../../secret.png", {}, "", "Attempted access to '../../secret.png' denied."),
    ],
    ids=["missing", "outside-the-location"],
)
def test_a_post_processing_error_is_djangos_and_the_old_manifest_stays_live(
    settings, bucket: Bucket, static_tree: StaticTree, location, reference, counts, stderr, message
):
    write_site(static_tree)
    deploy(settings, bucket, location=location)
    before = etags(bucket)
    static_tree.write("css/broken.css", f".x {{ background: url({reference}) }}\n")
    edit(static_tree, "img/bg.png", "PNG changed")
    settings.STORAGES = {**settings.STORAGES}
    staticfiles_storage.hashed_files  # noqa: B018 - build the storage before counting
    bucket.server.reset()
    err = StringIO()

    with pytest.raises(Exception) as error:
        call_command("collectstatic", interactive=False, verbosity=0, stdout=StringIO(), stderr=err)

    assert bucket.counts() == counts
    assert etags(bucket) == before
    assert err.getvalue().startswith(stderr)
    assert message in str(error.value)
    with pytest.raises(Exception) as stock_error:
        deploy(settings, bucket, stock=True, location=location)
    # For a missing file 6.1 raises CommandError from the ValueError, 5.2 and 6.0 the ValueError: as stock does.
    assert type(error.value) is type(stock_error.value)
    address = re.compile(r" at 0x[0-9a-f]+>")
    assert address.sub(">", str(error.value)) == address.sub(">", str(stock_error.value))


@pytest.mark.parametrize(
    ("failing", "aftermath", "retry"),
    [
        # Retried: what failed, what was never tried, then the manifest. An attempted upload
        # drops the cached listing, even one that failed: the retry lists again.
        (
            "original",
            "No post-processed file was uploaded, and the old manifest stays live.",
            {"LIST": 1, "PUT": 5},
        ),
        (
            "hashed",
            "The manifest was not uploaded, so the old one stays live.",
            {"LIST": 1, "PUT": 2},
        ),
        ("manifest", "Every file it names is in place; the old manifest stays live.", {"LIST": 1, "PUT": 1}),
    ],
)
def test_a_failed_upload_leaves_the_old_manifest_live(
    settings, bucket: Bucket, static_tree: StaticTree, failing, aftermath, retry
):
    write_site(static_tree)
    deploy(settings, bucket)
    old_manifest = bucket.objects()["staticfiles.json"]
    content = "html { margin: 1px }\n"  # no reference left: its hashed name is the md5 of these bytes
    edit(static_tree, "css/base/reset.css", content)
    hashed = f"css/base/reset.{hashlib.md5(content.encode()).hexdigest()[:12]}.css"
    key = {"original": "css/base/reset.css", "hashed": hashed, "manifest": "staticfiles.json"}[failing]
    bucket.server.add_fault("PUT", key, status=403, code="AccessDenied")

    with pytest.raises(CommandError) as error:
        collectstatic()

    assert f"{key}: AccessDenied" in str(error.value)
    assert aftermath in str(error.value)
    assert bucket.objects()["staticfiles.json"] == old_manifest
    assert (hashed in bucket.list_keys()) is (failing == "manifest")
    bucket.server.clear_faults()
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == retry
    assert manifest_paths(bucket)["css/base/reset.css"] == hashed


def test_a_reference_to_a_file_only_in_the_bucket_is_resolved_as_stock_does(
    settings, bucket: Bucket, static_tree: StaticTree
):
    write_site(static_tree)
    static_tree.write("img/old.png", b"old")
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True)
    deploy(settings, bucket)
    (static_tree.root / "img/old.png").unlink()
    static_tree.write("css/legacy.css", ".old { background: url(../img/old.png) }\n")

    deploy(settings, stock, stock=True)
    deploy(settings, bucket)

    assert_same_buckets(stock, bucket)
    paths = manifest_paths(bucket)
    assert "img/old.png" not in paths
    assert re.search(r'url\("../img/old\.[0-9a-f]{12}\.png"\)', bucket.objects()[paths["css/legacy.css"]].decode())


def test_dry_run_writes_nothing(settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)
    deploy(settings, bucket)
    before = snapshot(bucket)
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    caches["default"].clear()
    bucket.server.reset()

    run = collectstatic("--dry-run")

    assert bucket.counts() == {"LIST": 1}
    assert "Pretending to copy" in run.stdout and "reset.css" in run.stdout
    assert run.stdout.splitlines()[-1] == f"1 static file copied, {ORIGINALS - 1} unmodified. 1 LIST."
    assert snapshot(bucket) == before


def test_no_post_process_uploads_only_the_originals(settings, bucket: Bucket, static_tree: StaticTree):
    write_site(static_tree)

    deploy(settings, bucket, "--no-post-process")

    assert bucket.counts() == {"HEAD": 1, "LIST": 1, "PUT": ORIGINALS}
    assert bucket.objects() == static_tree.files()


@pytest.mark.parametrize(
    ("storage", "options"),
    [
        (KeepIntermediateStorage, {}),
        (CustomPatternsStorage, {}),
        (RenamedManifestStorage, {"location": "site"}),
    ],
)
def test_storage_options_give_the_stock_bucket(settings, bucket: Bucket, static_tree: StaticTree, storage, options):
    backend = f"{__name__}.{storage.__name__}"
    write_site(static_tree)
    static_tree.write("page.html", '<img src="img/bg.png">')
    stock = new_bucket(bucket, "stock")

    deploy(settings, stock, stock=True, backend=backend, **options)
    deploy(settings, bucket, backend=backend, **options)

    expected, actual = snapshot(stock), snapshot(bucket)
    assert actual == expected
    if storage is KeepIntermediateStorage:
        # Each rewritten file also keeps the name of its original's hash, with rewritten content.
        assert len(actual) == ORIGINALS + 1 + (ORIGINALS + 1) + ADJUSTABLE + 1
    if storage is CustomPatternsStorage:
        html = next(body for key, (body, _) in actual.items() if key.startswith("page."))
        assert re.fullmatch(rb'<img src="img/bg\.[0-9a-f]{12}\.png">', html)
    if storage is RenamedManifestStorage:
        assert "site/assets/manifest.json" in actual and "site/staticfiles.json" not in actual


def test_a_css_file_rewritten_under_its_own_name_stays_rewritten(settings, bucket: Bucket, static_tree: StaticTree):
    backend = f"{__name__}.UnhashedCSSStorage"
    write_site(static_tree)
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True, backend=backend)
    deploy(settings, bucket, backend=backend)
    caches["default"].clear()

    deploy(settings, bucket, backend=backend)  # the bucket holds the rewritten app.css, not the original

    assert_same_buckets(stock, bucket)
    assert b'@import url("base/reset.css")' in bucket.objects()["css/app.css"]


def test_a_manifest_kept_in_another_storage_is_written_there_by_the_storage(
    settings, bucket: Bucket, static_tree: StaticTree, tmp_path: Path
):
    write_site(static_tree)
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True, manifest_storage=FileSystemStorage(location=tmp_path / "stock"))

    deploy(settings, bucket, manifest_storage=FileSystemStorage(location=tmp_path / "collectfast"))

    assert snapshot(bucket) == snapshot(stock)
    assert "staticfiles.json" not in bucket.list_keys()
    manifest = (tmp_path / "collectfast" / "staticfiles.json").read_bytes()
    assert manifest == (tmp_path / "stock" / "staticfiles.json").read_bytes()


def test_a_path_the_cached_listing_lacks_is_never_skipped(settings, bucket: Bucket, static_tree: StaticTree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(bucket)}
    for name in ("a.css", "b.css"):
        static_tree.write(name, "same")
    bucket.client.put_object(Bucket=bucket.name, Key="a.css", Body=b"same")
    storage = storages["staticfiles"]
    Boto3Strategy(storage).start(["a.css"])  # lists, and caches the listing
    bucket.client.put_object(Bucket=bucket.name, Key="b.css", Body=b"same")  # behind the cache's back
    bucket.server.reset()

    strategy = Boto3Strategy(storage)
    strategy.start(["a.css"])
    local = FileSystemStorage(location=static_tree.root)

    assert bucket.counts() == {}  # the cache answered
    assert strategy.should_copy_file("a.css", "a.css", local) is False
    assert strategy.remote_size("a.css") == 4
    assert strategy.should_copy_file("b.css", "b.css", local) is True
    assert strategy.remote_size("b.css") is None


def test_kms_hashed_names_already_in_place_are_skipped_by_size(settings, bucket: Bucket, static_tree: StaticTree):
    options = {"object_parameters": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/test"}}
    write_site(static_tree)
    deploy(settings, bucket, **options)
    caches["default"].clear()
    bucket.server.reset()

    collectstatic()

    # KMS ETags prove nothing: originals and the manifest go again, hashed names are proven by name and size.
    assert bucket.counts() == {"LIST": 1, "PUT": ORIGINALS + 1}


def test_clear_then_deploy_gives_the_bucket_stock_gives_an_empty_one(settings, bucket: Bucket, static_tree: StaticTree):
    # Stock --clear fails on S3 (it asks exists("") of the bucket), so compare with a fresh bucket.
    write_site(static_tree)
    deploy(settings, bucket)
    bucket.client.put_object(Bucket=bucket.name, Key="stale.txt", Body=b"stale")
    edit(static_tree, "js/app.js", "console.log('changed');\n")
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True)
    bucket.server.reset()

    deploy(settings, bucket, "--clear")

    # Building the storage reads the old manifest; one LIST and one DeleteObjects clear the location.
    assert bucket.counts() == {"HEAD": 2, "GET": 1, "LIST": 1, "POST": 1, "PUT": ORIGINALS + ORIGINALS + 1}
    assert_same_buckets(stock, bucket)


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "backend",
    [
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
        "whitenoise.storage.CompressedManifestStaticFilesStorage",
    ],
)
def test_local_manifest_storages_give_the_stock_static_root(settings, static_tree: StaticTree, tmp_path: Path, backend):
    if backend.startswith("whitenoise"):
        pytest.importorskip("whitenoise")
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    write_site(static_tree)
    roots = {"stock": tmp_path / "stock_root", "collectfast": tmp_path / "collectfast_root"}

    def both() -> None:
        for name, root in roots.items():
            settings.STATIC_ROOT = str(root)
            collectstatic(*(["--disable-collectfast"] if name == "stock" else []))

    both()
    assert tree_files(roots["collectfast"]) == tree_files(roots["stock"])
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    both()

    files = tree_files(roots["collectfast"])
    assert files == tree_files(roots["stock"])
    paths = json.loads(files["staticfiles.json"])["paths"]
    assert files["css/base/reset.css"] == b"html { margin: 1px }\n"
    assert paths["css/base/reset.css"].rpartition("/")[2].encode() in files[paths["css/app.css"]]
    if backend.startswith("whitenoise"):
        assert paths["css/app.css"] + ".gz" in files


def redeploy_requests(settings, target: Bucket, *, stock: bool) -> dict[str, int]:
    """The requests of a no-change redeploy from a new process (cache cold), once its storage is built."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(target)}
    staticfiles_storage.hashed_files  # noqa: B018 - building it reads staticfiles.json, as any process does
    caches["default"].clear()
    target.server.reset()
    collectstatic(*(["--disable-collectfast"] if stock else []))
    return target.counts()


@pytest.mark.parametrize(
    "with_admin",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not os.environ.get("COLLECTFAST_MEASURE"), reason="slow measurement: set COLLECTFAST_MEASURE=1"
            ),
        ),
    ],
    ids=["site", "site-and-admin"],
)
def test_no_change_redeploy_requests_stock_and_collectfast(
    settings, bucket: Bucket, static_tree: StaticTree, tmp_path: Path, with_admin: bool
):
    write_site(static_tree)
    if with_admin:
        # A copy of Django admin's static files (CSS with url(), JS with sourceMappingURL), so its times can change.
        admin = tmp_path / "admin_static"
        shutil.copytree(Path(django.__file__).parent / "contrib" / "admin" / "static", admin)
        settings.STATICFILES_DIRS = [*settings.STATICFILES_DIRS, str(admin)]
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True)
    deploy(settings, bucket)

    measured = {
        "stock": redeploy_requests(settings, stock, stock=True),
        "collectfast": redeploy_requests(settings, bucket, stock=False),
    }
    later = time.time() + 60
    for path in tmp_path.rglob("*"):
        os.utime(path, (later, later))
    measured["stock, fresh checkout"] = redeploy_requests(settings, stock, stock=True)
    measured["collectfast, fresh checkout"] = redeploy_requests(settings, bucket, stock=False)
    print(f"\nNo-change redeploy, {len(stock.list_keys())} keys in the bucket, Django {django.get_version()}:")
    for name, counts in measured.items():
        print(f"  {name}: {sum(counts.values())} requests {counts}")

    assert measured["collectfast"] == measured["collectfast, fresh checkout"] == {"LIST": 1}
    assert_same_buckets(stock, bucket)
    if not with_admin:
        # Stock: 2 HEAD per original, and post-processing asks about each hashed name, reads back the CSS it
        # has not hashed yet, deletes and re-saves each rewritten file on each pass and the manifest.
        assert measured["stock"] == {"HEAD": 52, "GET": 3, "DELETE": 9, "PUT": 9}
        # A fresh checkout has newer times: stock also deletes and uploads every original.
        assert measured["stock, fresh checkout"] == {"HEAD": 52, "GET": 3, "DELETE": 19, "PUT": 19}


def test_the_deploy_manifest_strategy_decides_the_hashed_files_too(settings, bucket: Bucket, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.manifest.S3ManifestStrategy"
    write_site(static_tree)
    deploy(settings, bucket)
    bucket.server.reset()

    run = collectstatic()

    # Its GET of collectfast-manifest.json and, in verified mode, one LIST: the hashed names are in it.
    assert bucket.counts() == {"GET": 1, "LIST": 1}
    assert "Manifest unchanged (21 entries)." in run.stdout
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    bucket.server.reset()
    collectstatic()
    # The original, three new hashed names and staticfiles.json, then collectfast-manifest.json.
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": 5 + 1}
    stock = new_bucket(bucket, "stock")
    deploy(settings, stock, stock=True)
    # Stock into a fresh bucket has no old hashed names: compare the keys it has.
    objects, expected = bucket.objects(), stock.objects()
    assert {key: objects[key] for key in expected} == expected
