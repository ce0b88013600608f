"""Azurite (the Azure Storage emulator, npm package ``azurite``) for tests, behind a counting proxy.

``make test`` installs the pinned Azurite into tests/azurite/node_modules
(``make azurite``). The server runs in memory on a free port of 127.0.0.1, its
own process, stopped by PID; requests reach it through a
:class:`tests.faultproxy.FaultProxy`, which counts them by kind (List Blobs is
LIST, the blob batch POST) and can inject faults.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

from tests.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 60.0


def request_kind(method: str, query: str) -> str:
    if method == "GET" and parse_qs(query).get("comp") == ["list"]:
        return "LIST"
    return method


class AzureProxy(FaultProxy):
    """The fault proxy, counting requests as Azure's kinds (its log keeps each request's method and query)."""

    def counts(self) -> dict[str, int]:
        return dict(Counter(request_kind(entry.method, entry.query) for entry in self.log()))


class AzuriteServer:
    def __init__(self) -> None:
        if not AZURITE.exists():
            raise RuntimeError(
                f"Azurite is not installed ({AZURITE} is missing): run `make azurite` "
                "(npm ci in tests/azurite; `make test` does it first). The Azure tests need it and node."
            )
        if shutil.which("node") is None:
            raise RuntimeError("Azurite needs node on PATH: install Node.js 18 or newer.")
        self.workdir = tempfile.mkdtemp(prefix="collectfast-azurite-")
        self.log_path = Path(self.workdir) / "azurite.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZURITE_"))}
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    str(AZURITE),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    "0",
                    "--inMemoryPersistence",
                    "--extentMemoryLimit",
                    "1024",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                    "--silent",
                ],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        port = self._wait_for_port()
        self.proxy = AzureProxy(f"http://127.0.0.1:{port}")

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            found = _LISTENING.search(text)
            if found:
                return int(found[1])
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self._stop_process()
        raise RuntimeError(f"Azurite did not start: {self.log_path.read_text(errors='replace')[-2000:]!r}")

    @property
    def endpoint(self) -> str:
        """The account's blob endpoint, through the counting proxy."""
        return f"{self.proxy.endpoint_url}/{ACCOUNT}"

    def connection_string(self, key: str = KEY) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={self.endpoint};"

    def counts(self) -> dict[str, int]:
        return self.proxy.counts()

    def reset(self) -> None:
        self.proxy.reset()

    def stop(self) -> None:
        self.proxy.stop()
        self._stop_process()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_process(self) -> None:
        self.process.terminate()  # by PID: the one process this object started
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
