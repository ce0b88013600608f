"""Deploy example/ to a local server of each cloud, S3, Google Cloud Storage and Azure, twice, and show the summaries.

Run it with ``make demo``. Each server (moto, the GCS emulator of tests/gcsserver.py
and Azurite, all on 127.0.0.1) lives only as long as the demo. For each cloud the
example is deployed into an empty bucket, then again with nothing changed, in a fresh
process (no warm cache); example/example_site/settings.py has the settings, picked by
EXAMPLE_CLOUD. The three clouds run side by side and are printed in order. Azure
needs Node.js for Azurite (``make azurite``, which ``make demo`` runs when npm is
there); without it the demo skips Azure.

``demo.py --precompile`` (run once by make, when it installs the demo) compiles what the
servers and the collectstatic processes import, as pip does at install: where
PYTHONDONTWRITEBYTECODE is set, each of them would otherwise compile it all again, every run.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.azuriteserver import AZURITE, AzuriteServer  # noqa: E402
from tests.gcsserver import GCSServer  # noqa: E402
from tests.s3server import S3Server  # noqa: E402

BUCKET = "example-static"  # the bucket (Azure: container) named in settings.py
# The machine's own cloud settings never reach the example: it talks to the local servers only.
MACHINE_SETTINGS = ("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "AZURE_", "EXAMPLE_")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(MACHINE_SETTINGS)}

# The modules the demo's processes spend their start-up compiling (about 1,000 files; all of the
# installed packages would be four times as many).
PRECOMPILE = (
    "django.core.management",
    "django.contrib.admin.apps",
    "django.contrib.auth.apps",
    "django.contrib.contenttypes.apps",
    "django.contrib.staticfiles.management.commands.collectstatic",
    "django.db.backends.sqlite3.base",
    "boto3.s3.transfer",
    "botocore.client",
    "storages.backends.s3",
    "google.auth.credentials",
    "google.cloud.storage",
    "storages.backends.gcloud",
    "azure.storage.blob",
    "storages.backends.azure_storage",
    "moto.moto_server.werkzeug_app",
    "moto.s3.responses",
    "werkzeug.serving",
    "gcp_storage_emulator.server",
    "gcp_storage_emulator.storage",
)


def precompile() -> None:
    sys.dont_write_bytecode = False
    for name in PRECOMPILE:
        importlib.import_module(name)


@dataclass
class Deploy:
    summary: str
    requests: dict[str, int]  # as the server counted them


@dataclass
class Result:
    cloud: str
    server: str = ""
    deploys: list[Deploy] = field(default_factory=list)
    skipped: str = ""


def collectstatic(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT / "example",
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"collectstatic ({env['EXAMPLE_CLOUD']}) failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def deploy_twice(
    result: Result, env: dict[str, str], counts: Callable[[], dict[str, int]], reset: Callable[[], None]
) -> Result:
    for _ in range(2):
        reset()
        summary = collectstatic(env)
        result.deploys.append(Deploy(summary, counts()))
    return result


def post(url: str, method: str, body: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


def s3() -> Result:
    server = S3Server()
    try:
        post(f"{server.endpoint_url}/{BUCKET}", "PUT")  # CreateBucket (moto asks for no signature)
        env = {
            "EXAMPLE_CLOUD": "s3",
            "EXAMPLE_S3_ENDPOINT": server.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        result = Result("S3", f"moto on {server.endpoint_url}, bucket '{BUCKET}'")
        return deploy_twice(result, env, server.counts, server.reset)
    finally:
        server.stop()


def gcs() -> Result:
    server = GCSServer()
    try:
        post(f"{server.endpoint_url}/storage/v1/b?project=demo", "POST", {"name": BUCKET})  # buckets.insert
        env = {
            "EXAMPLE_CLOUD": "gcs",
            "STORAGE_EMULATOR_HOST": server.endpoint_url,
            # Else google-cloud-storage 3 reads the bucket's metadata, for tracing, once per worker (docs/gcloud.rst).
            "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA": "true",
        }
        result = Result("GCS", f"gcp-storage-emulator on {server.endpoint_url}, bucket '{BUCKET}'")
        return deploy_twice(result, env, server.counts, server.reset)
    finally:
        server.stop()


def azure() -> Result:
    if not AZURITE.exists() or shutil.which("node") is None:
        return Result("Azure", skipped="skipped, Azurite needs Node.js 18+ and npm (`make azurite` installs it)")
    server = AzuriteServer()
    try:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(server.connection_string()).create_container(BUCKET)
        env = {"EXAMPLE_CLOUD": "azure", "EXAMPLE_AZURE_CONNECTION_STRING": server.connection_string()}
        result = Result("Azure", f"Azurite on {server.endpoint}, container '{BUCKET}'")
        return deploy_twice(result, env, server.counts, server.reset)
    finally:
        server.stop()


def total(deploy: Deploy) -> str:
    return str(sum(deploy.requests.values()))


def main() -> None:
    started = time.monotonic()
    failed = False
    results: list[Result] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures: list[Future[Result]] = [pool.submit(run) for run in (s3, gcs, azure)]
        for future in futures:
            try:
                result = future.result()
            except Exception as error:  # the other clouds still finish, and their servers stop
                print(f"{error}\n", file=sys.stderr)
                failed = True
                continue
            results.append(result)
            if result.skipped:
                print(f"{result.cloud}: {result.skipped}.\n")
                continue
            first, again = result.deploys
            print(f"{result.cloud} ({result.server})")
            print("  First deploy (empty bucket):")
            print(f"    {first.summary}")
            print("  Second deploy (nothing changed, fresh process so no warm cache):")
            print(f"    {again.summary}\n", flush=True)

    rows = [("cloud", "first deploy requests", "redeploy requests")]
    rows += [(r.cloud, total(r.deploys[0]), total(r.deploys[1])) for r in results if not r.skipped]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}")
    print(f"\n(requests as each server counted them; {time.monotonic() - started:.1f} s in all)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--precompile"]:
        precompile()
    else:
        main()
