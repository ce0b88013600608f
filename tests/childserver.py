"""A test server in a child process, and the client side of its control endpoints.

tests/s3server.py and tests/gcsserver.py each print ``READY <port>`` once they
listen and answer JSON under ``/_collectfast/``: requests (GET counts, DELETE
resets) and faults (POST adds one, DELETE clears them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

CONTROL_PREFIX = "/_collectfast/"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ChildServer:
    module = ""

    def __init__(self, *args: str) -> None:
        # The machine's AWS and Google settings must never reach the servers.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"The test server {self.module} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.endpoint_url = f"http://{self.host}"

    def _call(self, method: str, name: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint_url}{CONTROL_PREFIX}{name}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self._call("GET", "requests")["counts"]
        return counts

    def reset(self) -> None:
        self._call("DELETE", "requests")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
