"""``python -m benchmarks.backends``: collectfast on S3, GCS and Azure, each against its own floor.

``make bench`` runs this instead of the S3 contenders (benchmarks.run) when ``BENCH_BACKENDS`` is set.
For each backend in turn it starts the tests' local server on 127.0.0.1 (the moto S3 server of
benchmarks.s3server, the GCS emulator of tests/gcsserver.py, Azurite behind the fault proxy of
tests/azuriteserver.py), which adds ``BENCH_DELAY_MS`` to every request while a contender is timed
(S3 and GCS in the server, Azure in the proxy, with a Delay rule), and counts requests by kind. The
tree is benchmarks/tree.py's (Django admin's files plus N synthetic ones, 3 of them over 8 MiB).

Contenders, each timed in a fresh process:

- ``floor``: the least a deploy must do, with the family's SDK: list the location, hash every
  local file, upload the files whose checksum or size differ, 20 at a time (on S3,
  ``python -m benchmarks.floor``);
- ``listing``: collectfast's listing strategy (Boto3Strategy, GoogleCloudStrategy, AzureStrategy);
- ``verified`` and ``trusting``: collectfast's manifest strategy, in each mode.

Scenarios: ``nochange`` (the tree deployed onto itself) and ``changed`` (1% of the files edited;
repeats alternate between deploying the edited tree and the original, as benchmarks.run does).
floor and listing share one bucket (the bucket is their only state), verified and trusting another
(one manifest); each is seeded by an untimed first deploy of collectfast. Before a timed run whose
bucket does not hold the tree the scenario starts from, the contender itself deploys that tree,
untimed. After every run the bucket's listed checksums are compared with the local files'.

Environment (all optional):

- ``BENCH_BACKENDS`` comma list of ``s3,gcs,azure`` (all three when set empty, as ``all``)
- ``BENCH_N`` synthetic files besides Django admin's (2000), ``BENCH_SEED`` (5)
- ``BENCH_DELAY_MS`` per-request delay while timed (20), ``BENCH_REPEATS`` median of (3)
- ``BENCH_THREADS`` collectfast's and the floor's workers (20), ``BENCH_TIMEOUT_S`` per run (3600)
- ``BENCH_OUT`` output folder (benchmarks/out): results in ``backends-n<N>-d<delay>/``

    python -m benchmarks.backends                      # the orchestrator
    python -m benchmarks.backends floor gcs|azure ...  # one floor run (what the orchestrator times)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import mimetypes
import os
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("s3", "gcs", "azure")
CONTENDERS = ("floor", "listing", "verified", "trusting")
SCENARIOS = ("nochange", "changed")
GCS_PROJECT = "collectfast-bench"
MIB = 1 << 20

# The Django settings every collectfast run uses, written next to the results (kept free of this module's imports).
SETTINGS = '''"""Written by benchmarks/backends.py: Django settings from BENCH_* variables."""
import json
import os

_env = os.environ
SECRET_KEY = "collectfast-bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["collectfast", "django.contrib.staticfiles"]
DATABASES = {}
STATIC_URL = "/static/"
STATICFILES_DIRS = [_env["BENCH_STATIC_DIR"]]
_staticfiles = json.loads(_env["BENCH_STORAGE"])
if _env["BENCH_FAMILY"] == "gcs":
    from google.auth.credentials import AnonymousCredentials

    _staticfiles["OPTIONS"]["credentials"] = AnonymousCredentials()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": _staticfiles,
}
COLLECTFAST_THREADS = int(_env["BENCH_THREADS"])
# A loaded two-core machine can take seconds to answer a listing: not a failure here.
COLLECTFAST_READ_TIMEOUT = 120
globals().update(json.loads(_env.get("BENCH_SETTINGS", "{}")))
'''


# -- the floor, one process per run --------------------------------------------------------------


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def walk(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/") for d, _, files in os.walk(root) for f in files
    )


def content_type(rel: str) -> str:
    return mimetypes.guess_type(rel)[0] or "application/octet-stream"


def floor_sync(
    root: Path,
    threads: int,
    listing: Callable[[], dict[str, tuple[str, int]]],
    upload: Callable[[str], None],
) -> dict[str, Any]:
    """List, hash every local file, upload what differs (checksum or size) from ``threads`` workers."""
    remote = listing()
    files = walk(root)
    uploaded: list[str] = []

    def one(rel: str) -> None:
        path = root / rel
        local = (md5_of(path), path.stat().st_size)
        if remote.get(rel) != local:
            upload(rel)
            uploaded.append(rel)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, files))
    return {"listed": len(remote), "hashed": len(files), "uploaded": len(uploaded)}


def gcs_floor(root: Path, bucket_name: str, threads: int) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    def client() -> Any:
        return storage.Client(project=GCS_PROJECT, credentials=AnonymousCredentials())

    local = threading.local()

    def listing() -> dict[str, tuple[str, int]]:
        blobs = client().bucket(bucket_name).list_blobs()
        return {b.name: (base64.b64decode(b.md5_hash).hex() if b.md5_hash else "", int(b.size)) for b in blobs}

    def upload(rel: str) -> None:
        bucket = getattr(local, "bucket", None)
        if bucket is None:
            bucket = local.bucket = client().bucket(bucket_name)
        bucket.blob(rel).upload_from_filename(str(root / rel), content_type=content_type(rel))

    return floor_sync(root, threads, listing, upload)


def azure_floor(root: Path, container: str, connection_string: str, threads: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient, ContentSettings

    def client() -> Any:
        return BlobServiceClient.from_connection_string(connection_string).get_container_client(container)

    local = threading.local()

    def listing() -> dict[str, tuple[str, int]]:
        return {
            b.name: (bytes(b.content_settings.content_md5 or b"").hex(), int(b.size)) for b in client().list_blobs()
        }

    def upload(rel: str) -> None:
        own = getattr(local, "client", None)
        if own is None:
            own = local.client = client()
        with open(root / rel, "rb") as data:
            own.upload_blob(rel, data, overwrite=True, content_settings=ContentSettings(content_type=content_type(rel)))

    return floor_sync(root, threads, listing, upload)


def floor_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends floor")
    parser.add_argument("family", choices=("gcs", "azure"))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--connection-string", default="")
    parser.add_argument("--threads", type=int, default=20)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.family == "gcs":
        result = gcs_floor(args.root, args.bucket, args.threads)
    else:
        result = azure_floor(args.root, args.bucket, args.connection_string, args.threads)
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result))


# -- the servers ---------------------------------------------------------------------------------


class Family:
    """One storage family's local server, buckets, storage settings, and the cheap check of a bucket."""

    key = ""
    label = ""
    kinds: tuple[str, ...] = ()
    listing_strategy = ""
    manifest_strategy = ""

    def __init__(self) -> None:
        self.buckets = 0
        #: The test server (tests/s3server.py, tests/gcsserver.py): its delay, counts and bytes received.
        self.server: Any = None

    def name(self, label: str) -> str:
        self.buckets += 1
        return f"bench-{self.buckets}-{label}"[:63].lower()

    def new_bucket(self, label: str) -> str:
        raise NotImplementedError

    def delay(self, ms: float) -> None:
        self.server.configure(delay_ms=ms)

    def reset(self) -> None:
        self.server.reset()

    def traffic(self) -> tuple[dict[str, int], int | None]:
        return self.server.counts(), self.server.bytes_in()

    def storage(self, bucket: str) -> dict[str, Any]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        from benchmarks.s3 import child_env

        # No AWS, Google or Azure settings of the machine reach a contender.
        env = child_env("http://127.0.0.1:9")
        return {k: v for k, v in env.items() if not k.startswith(("AZURE_", "GOOGLE_", "STORAGE_EMULATOR"))}

    def floor_argv(self, root: Path, bucket: str, threads: int) -> list[str]:
        raise NotImplementedError

    def remote(self, bucket: str) -> dict[str, str]:
        """Every object's checksum as the listing reports it, hex ("" when none)."""
        raise NotImplementedError

    def download(self, bucket: str, key: str) -> bytes:
        raise NotImplementedError

    def expected(self, path: Path) -> str:
        return md5_of(path)

    def stop(self) -> None:
        raise NotImplementedError


class S3(Family):
    key, label = "s3", "Amazon S3 (moto)"
    kinds = ("LIST", "GET", "HEAD", "PUT", "POST", "DELETE")
    listing_strategy = "collectfast.strategies.boto3.Boto3Strategy"
    manifest_strategy = "collectfast.strategies.manifest.S3ManifestStrategy"

    def __init__(self) -> None:
        from benchmarks.s3 import make_client
        from benchmarks.s3server import BenchS3Server

        super().__init__()
        self.server = BenchS3Server(delay_ms=0)
        self.client = make_client(self.server.endpoint_url)

    def new_bucket(self, label: str) -> str:
        name = self.name(label)
        self.client.create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        from benchmarks.s3 import child_env

        return child_env(self.server.endpoint_url)

    def storage(self, bucket: str) -> dict[str, Any]:
        from benchmarks.s3 import ACCESS_KEY, REGION, SECRET_KEY

        options = {
            "bucket_name": bucket,
            "endpoint_url": self.server.endpoint_url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region_name": REGION,
        }
        return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}

    def floor_argv(self, root: Path, bucket: str, threads: int) -> list[str]:
        return [sys.executable, "-m", "benchmarks.floor", "--root", str(root), "--threads", str(threads),
                "--bucket", bucket, "--endpoint", self.server.endpoint_url]  # fmt: skip

    def remote(self, bucket: str) -> dict[str, str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o["ETag"].strip('"') for page in pages for o in page.get("Contents", ())}

    def download(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def expected(self, path: Path) -> str:
        from benchmarks.floor import etag_of

        return etag_of(path)[0]  # multipart ETags included (boto3's default 8 MiB parts)

    def stop(self) -> None:
        self.server.stop()


class GCS(Family):
    key, label = "gcs", "Google Cloud Storage (gcp-storage-emulator)"
    kinds = ("LIST", "GET", "POST", "PUT", "PATCH", "DELETE", "BATCH")
    listing_strategy = "collectfast.strategies.gcloud.GoogleCloudStrategy"
    manifest_strategy = "collectfast.strategies.gcloud.GoogleCloudManifestStrategy"

    def __init__(self) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from tests.gcsserver import GCSServer

        super().__init__()
        self.server = GCSServer()
        os.environ["STORAGE_EMULATOR_HOST"] = self.server.endpoint_url
        os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
        self.client = storage.Client(project=GCS_PROJECT, credentials=AnonymousCredentials())

    def new_bucket(self, label: str) -> str:
        name = self.name(label)
        self.client.create_bucket(name)
        return name

    def env(self) -> dict[str, str]:
        env = super().env()
        # The second variable: else google-cloud-storage fetches the bucket's metadata in a background thread.
        env.update(
            STORAGE_EMULATOR_HOST=self.server.endpoint_url, DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA="true"
        )
        return env

    def storage(self, bucket: str) -> dict[str, Any]:
        return {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": {"bucket_name": bucket, "project_id": GCS_PROJECT},  # credentials: see SETTINGS
        }

    def floor_argv(self, root: Path, bucket: str, threads: int) -> list[str]:
        return [sys.executable, "-m", "benchmarks.backends", "floor", "gcs", "--root", str(root),
                "--bucket", bucket, "--threads", str(threads)]  # fmt: skip

    def remote(self, bucket: str) -> dict[str, str]:
        blobs = self.client.bucket(bucket).list_blobs()
        return {b.name: base64.b64decode(b.md5_hash).hex() if b.md5_hash else "" for b in blobs}

    def download(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.bucket(bucket).blob(key).download_as_bytes(raw_download=True))

    def stop(self) -> None:
        self.server.stop()


class Azure(Family):
    key, label = "azure", "Azure Blob Storage (Azurite)"
    kinds = ("LIST", "GET", "HEAD", "PUT", "POST", "DELETE")
    listing_strategy = "collectfast.strategies.azure.AzureStrategy"
    manifest_strategy = "collectfast.strategies.azure.AzureManifestStrategy"

    def __init__(self) -> None:
        from azure.storage.blob import BlobServiceClient

        from tests.azuriteserver import ACCOUNT, KEY, AzureProxy, AzuriteServer

        class Proxy(AzureProxy):
            """The counting proxy, also adding up the bodies it forwards of uploads (PUT, POST)."""

            bytes_in = 0

            def _forward(self, request: Any, body: bytes) -> tuple[int, bytes]:
                if request.method in ("PUT", "POST"):
                    with self._lock:
                        self.bytes_in += len(body)
                return super()._forward(request, body)

            def reset(self, seed: int | None = None) -> None:
                super().reset(seed)
                with self._lock:
                    self.bytes_in = 0

        super().__init__()
        self.server = AzuriteServer()
        upstream = self.server.proxy.upstream[1]
        self.server.proxy.stop()
        self.proxy = self.server.proxy = Proxy(f"http://127.0.0.1:{upstream}")
        # The benchmark's own requests (containers, checks) go around the proxy: never counted, never delayed.
        direct = f"http://127.0.0.1:{upstream}/{ACCOUNT}"
        self.client = BlobServiceClient(direct, credential={"account_name": ACCOUNT, "account_key": KEY})

    def new_bucket(self, label: str) -> str:
        name = self.name(label)
        self.client.create_container(name)
        return name

    def delay(self, ms: float) -> None:
        from tests.faultproxy import Delay, Rule

        self.proxy.clear()
        if ms:
            self.proxy.add(Rule(Delay(ms / 1000)))

    def reset(self) -> None:
        rules = list(self.proxy._rules)  # reset() drops the delay rule: keep it
        self.proxy.reset()
        self.proxy.add(*rules)

    def traffic(self) -> tuple[dict[str, int], int | None]:
        return self.proxy.counts(), self.proxy.bytes_in

    def storage(self, bucket: str) -> dict[str, Any]:
        options = {"connection_string": self.server.connection_string(), "azure_container": bucket}
        return {"BACKEND": "storages.backends.azure_storage.AzureStorage", "OPTIONS": options}

    def floor_argv(self, root: Path, bucket: str, threads: int) -> list[str]:
        return [sys.executable, "-m", "benchmarks.backends", "floor", "azure", "--root", str(root),
                "--bucket", bucket, "--threads", str(threads),
                "--connection-string", self.server.connection_string()]  # fmt: skip

    def remote(self, bucket: str) -> dict[str, str]:
        blobs = self.client.get_container_client(bucket).list_blobs()
        return {b.name: bytes(b.content_settings.content_md5 or b"").hex() for b in blobs}

    def download(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_container_client(bucket).download_blob(key, decompress=False).readall())

    def stop(self) -> None:
        self.server.stop()


FAMILY_CLASSES: dict[str, type[Family]] = {"s3": S3, "gcs": GCS, "azure": Azure}


# -- the orchestrator ----------------------------------------------------------------------------


@dataclass
class Config:
    backends: list[str]
    n: int
    seed: int
    delay_ms: float
    repeats: int
    threads: int
    timeout: float
    out: Path

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        wanted = [b.strip().lower() for b in env.get("BENCH_BACKENDS", "").split(",") if b.strip()]
        if not wanted or wanted == ["all"]:
            wanted = list(FAMILIES)
        unknown = [b for b in wanted if b not in FAMILIES]
        if unknown:
            raise SystemExit(f"BENCH_BACKENDS: unknown {', '.join(unknown)} (choose from {', '.join(FAMILIES)})")
        return cls(
            backends=wanted,
            n=int(env.get("BENCH_N", "2000")),
            seed=int(env.get("BENCH_SEED", "5")),
            delay_ms=float(env.get("BENCH_DELAY_MS", "20")),
            repeats=max(1, int(env.get("BENCH_REPEATS", "3"))),
            threads=int(env.get("BENCH_THREADS", "20")),
            timeout=float(env.get("BENCH_TIMEOUT_S", "3600")),
            out=Path(env.get("BENCH_OUT", ROOT / "benchmarks" / "out")).resolve(),
        )


@dataclass
class Cell:
    backend: str
    contender: str
    scenario: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    note: str = ""

    @property
    def seconds(self) -> float | None:
        return statistics.median(r["seconds"] for r in self.runs) if self.runs else None


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.run_dir = config.out / f"backends-n{config.n}-d{config.delay_ms:g}"
        self.logs = self.run_dir / "logs"
        self.cells: list[Cell] = []
        self.log_count = 0
        self.started = time.time()
        self.tree: Any = None
        self.backend_info: dict[str, dict[str, Any]] = {}
        self._md5: dict[tuple[str, int, int, int], str] = {}

    def say(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # -- runs -----------------------------------------------------------------------------------

    def command(self, family: Family, contender: str, bucket: str, tree_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = family.env()
        if contender == "floor":
            env["PYTHONPATH"] = str(ROOT)
            return family.floor_argv(tree_dir, bucket, self.config.threads), env
        settings: dict[str, Any] = {"COLLECTFAST_STRATEGY": family.listing_strategy}
        if contender in ("verified", "trusting"):
            settings = {"COLLECTFAST_STRATEGY": family.manifest_strategy, "COLLECTFAST_MANIFEST_MODE": contender}
        env.update(
            PYTHONPATH=str(self.run_dir),
            DJANGO_SETTINGS_MODULE="bench_backend_settings",
            BENCH_FAMILY=family.key,
            BENCH_STORAGE=json.dumps(family.storage(bucket)),
            BENCH_STATIC_DIR=str(tree_dir),
            BENCH_THREADS=str(self.config.threads),
            BENCH_SETTINGS=json.dumps(settings),
        )
        return [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v", "1"], env

    def child(self, family: Family, contender: str, bucket: str, variant: str, label: str) -> Any:
        from benchmarks import tree
        from benchmarks.measure import run_child

        directory = self.tree.variant(variant)
        # A fresh checkout's times, as on a new CI runner (benchmarks.run does the same).
        tree.touch(directory, self.tree.variant_files(variant), time.time() + 2)
        argv, env = self.command(family, contender, bucket, directory)
        self.log_count += 1
        log = self.logs / f"{self.log_count:04d}-{family.key}-{contender}-{label}.log"
        cwd = ROOT if contender == "floor" else self.run_dir
        run = run_child(argv, env, cwd, log, self.config.timeout)
        if not run.ok:
            raise RuntimeError(
                f"{family.key} {contender} {label} failed (exit {run.returncode}); log {log}:\n{run.tail()}"
            )
        return run

    def timed(self, family: Family, contender: str, bucket: str, variant: str) -> dict[str, Any]:
        family.delay(self.config.delay_ms)
        family.reset()
        try:
            run = self.child(family, contender, bucket, variant, f"timed-{variant}")
            counts, bytes_in = family.traffic()
        finally:
            family.delay(0)
        requests = {k: v for k, v in counts.items() if v}
        return {
            "seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb,
            "requests": requests,
            "requests_total": sum(requests.values()),
            "bytes_uploaded": bytes_in,
            "deployed": variant,
            "check": self.check(family, bucket, variant),
            "log": str(run.log),
        }

    # -- the cheap check ------------------------------------------------------------------------

    def expected(self, family: Family, path: Path) -> str:
        stat = path.stat()
        # Not the mtime: every run touches the tree, and its files never change (a variant's edits are new files).
        key = (family.key if family.key == "s3" else "md5", stat.st_ino, stat.st_size, 0)
        if key not in self._md5:
            self._md5[key] = family.expected(path)
        return self._md5[key]

    def check(self, family: Family, bucket: str, variant: str) -> dict[str, Any]:
        """The bucket's listed checksums against the local files' (an object listed without one is downloaded)."""
        directory = self.tree.variant(variant)
        files = self.tree.variant_files(variant)
        remote = family.remote(bucket)
        missing, mismatched = [], []
        for rel in files:
            listed = remote.get(rel)
            if listed is None:
                missing.append(rel)
                continue
            path = directory / rel
            if listed == self.expected(family, path):
                continue
            plain = len(listed) == 32 and "-" not in listed
            if plain or hashlib.md5(family.download(bucket, rel), usedforsecurity=False).hexdigest() != md5_of(path):
                mismatched.append(rel)
        extra = sorted(set(remote) - set(files))
        result = {"objects": len(remote), "missing": len(missing), "mismatched": len(mismatched), "extra": extra[:5]}
        result["ok"] = not missing and not mismatched
        if not result["ok"]:
            result["examples"] = {"missing": missing[:5], "mismatched": mismatched[:5]}
        return result

    # -- one backend ----------------------------------------------------------------------------

    def seed(self, family: Family, contender: str, label: str) -> tuple[str, dict[str, str]]:
        bucket = family.new_bucket(label)
        started = time.perf_counter()
        self.child(family, contender, bucket, "base", "seed")
        check = self.check(family, bucket, "base")
        if not check["ok"]:
            raise RuntimeError(f"{family.key}: seeding {bucket} left it unlike the tree: {check}")
        self.say(f"  seeded {bucket} with {contender} in {time.perf_counter() - started:.1f} s")
        return bucket, {"holds": "base"}

    def run_backend(self, key: str) -> None:
        self.say(f"{key}: starting the server")
        family = FAMILY_CLASSES[key]()
        try:
            self.backend_info[key] = {"label": family.label, "kinds": list(family.kinds)}
            stateless = self.seed(family, "listing", "listing")
            manifest = self.seed(family, "verified", "manifest")
            buckets = {"floor": stateless, "listing": stateless, "verified": manifest, "trusting": manifest}
            for scenario in SCENARIOS:
                for contender in CONTENDERS:
                    self.run_cell(family, contender, scenario, *buckets[contender])
        finally:
            family.stop()

    def run_cell(self, family: Family, contender: str, scenario: str, bucket: str, state: dict[str, str]) -> None:
        cell = Cell(family.key, contender, scenario)
        self.cells.append(cell)
        self.say(f"{family.key} / {contender} / {scenario}")
        try:
            for i in range(self.config.repeats):
                if scenario == "nochange":
                    previous = current = "base"
                else:
                    previous, current = ("base", "changed") if i % 2 == 0 else ("changed", "base")
                if state["holds"] != previous:
                    self.child(family, contender, bucket, previous, f"prep-{previous}")
                    state["holds"] = previous
                state["holds"] = "?"
                result = self.timed(family, contender, bucket, current)
                cell.runs.append(result)
                if not result["check"]["ok"]:
                    raise RuntimeError(f"the bucket does not hold the tree after the run: {result['check']}")
                state["holds"] = current
        except Exception as error:
            cell.status = "failed"
            cell.note = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            self.say(f"  FAILED: {error}")
            (self.logs / f"failure-{family.key}-{contender}-{scenario}.txt").write_text(traceback.format_exc())
        else:
            first = cell.runs[0]
            self.say(f"  {cell.seconds:.2f} s, {first['requests_total']} requests {first['requests']}")
        self.save()

    # -- the whole run --------------------------------------------------------------------------

    def main(self) -> None:
        from benchmarks import tree

        cfg = self.config
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "bench_backend_settings.py").write_text(SETTINGS)
        self.say(f"tree: Django admin + {cfg.n} synthetic files (seed {cfg.seed}); backends: {', '.join(cfg.backends)}")
        self.tree = tree.build(cfg.out / "trees" / f"n{cfg.n}-s{cfg.seed}", cfg.n, cfg.seed)
        for key in cfg.backends:
            try:
                self.run_backend(key)
            except Exception as error:
                self.say(f"{key}: FAILED: {error}")
                (self.logs / f"failure-{key}.txt").write_text(traceback.format_exc())
                self.cells.append(Cell(key, "all", "all", status="failed", note=str(error).splitlines()[0]))
        self.save(final=True)
        print()
        print(render(self.data()))
        self.say(f"done in {time.time() - self.started:.0f} s: {self.run_dir / 'results.md'}")

    def data(self) -> dict[str, Any]:
        t = self.tree
        return {
            "config": {
                "backends": self.config.backends,
                "n": self.config.n,
                "files": len(t.files),
                "large_files": len(t.large),
                "changed": len(t.changed),
                "delay_ms": self.config.delay_ms,
                "repeats": self.config.repeats,
                "threads": self.config.threads,
                "seed": self.config.seed,
            },
            "machine": machine(),
            "backends": self.backend_info,
            "elapsed_s": time.time() - self.started,
            "cells": [{**cell.__dict__, "seconds": cell.seconds} for cell in self.cells],
        }

    def save(self, final: bool = False) -> None:
        data = self.data()
        data["finished"] = final
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
        if final:
            (self.run_dir / "results.md").write_text(render(data))


def machine() -> dict[str, Any]:
    import platform

    return {
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# -- the tables ----------------------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    """One table per backend: requests by kind (the server's count), bytes uploaded, median wall, ratio to the floor."""
    cfg = data["config"]
    lines = [
        f"# collectfast per backend: N = {cfg['n']:,} ({cfg['files']:,} files, {cfg['large_files']} over 8 MiB), "
        f"{cfg['changed']} changed for 1%, {cfg['delay_ms']:g} ms per request, median of {cfg['repeats']}",
        "",
    ]
    for key in cfg["backends"]:
        cells = [c for c in data["cells"] if c["backend"] == key]
        info = data["backends"].get(key, {})
        kinds = [k for k in info.get("kinds", []) if any(r["requests"].get(k) for c in cells for r in c["runs"][:1])]
        floors = {c["scenario"]: c["seconds"] for c in cells if c["contender"] == "floor" and c["seconds"]}
        head = ["contender", "scenario", *kinds, "requests", "bytes up", "wall s", "x floor", "check"]
        rows = []
        for c in cells:
            if not c["runs"]:
                rows.append([c["contender"], c["scenario"], *["" for _ in kinds], "", "", "", "", c["note"][:60]])
                continue
            first = c["runs"][0]
            spread = [r["seconds"] for r in c["runs"]]
            wall = f"{c['seconds']:.2f}" + (f" ({min(spread):.2f}-{max(spread):.2f})" if len(spread) > 1 else "")
            floor = floors.get(c["scenario"])
            ratio = f"{c['seconds'] / floor:.2f}" if floor else ""
            up = first["bytes_uploaded"]
            ok = all(r["check"]["ok"] for r in c["runs"]) and c["status"] == "ok"
            rows.append(
                [
                    c["contender"],
                    c["scenario"],
                    *[str(first["requests"].get(k, 0)) for k in kinds],
                    str(first["requests_total"]),
                    "?" if up is None else f"{up:,}",
                    wall,
                    ratio,
                    "ok" if ok else (c["note"][:60] or "FAILED"),
                ]
            )
        lines += [f"## {info.get('label', key)}", "", *markdown(head, rows), ""]
    lines.append(
        "Requests by kind and bytes uploaded from the first timed run (the counts repeat; 1% changed alternates "
        "between the edited and the original files, whose sizes differ a little); wall: median (min-max); "
        "x floor: median over the floor's median on the same backend and scenario; check: every local file's "
        "object holds its bytes after every run."
    )
    return "\n".join(lines) + "\n"


def markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *[line(r) for r in rows]]


def main() -> None:
    if sys.argv[1:2] == ["floor"]:
        floor_main(sys.argv[2:])
    elif len(sys.argv) > 2 and sys.argv[1] == "render":
        print(render(json.loads(Path(sys.argv[2]).read_text())))
    else:
        import signal

        # Killed, it still stops the servers it started (run_backend's finally).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        Bench(Config.from_env()).main()


if __name__ == "__main__":
    main()
