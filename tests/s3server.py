"""A real S3-compatible server for tests, the demo and the benchmark.

moto's server mode behind a thin WSGI layer that counts requests by kind,
can delay every request (to turn request counts into realistic wall time),
and can inject faults. Run it in its own process::

    python -m tests.s3server --port 0 --delay-ms 20

It prints ``READY <port>`` once it listens. The control endpoints live under
``/_collectfast/`` and are not counted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.childserver import CONTROL_PREFIX, ChildServer

KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")


_LISTING_PARAMETERS = {
    "list-type",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "encoding-type",
    "continuation-token",
    "start-after",
    "fetch-owner",
}


def request_kind(method: str, path: str, query: str) -> str:
    """ListObjects (v1 or v2) counts as LIST; a GET of a bucket sub-resource (?location) stays GET."""
    params = parse_qs(query, keep_blank_values=True)
    key = path.lstrip("/").partition("/")[2]
    if method == "GET" and not key and set(params) <= _LISTING_PARAMETERS:
        return "LIST"
    return method


@dataclass
class Fault:
    method: str
    key_contains: str
    status: int
    code: str
    times: int  # -1: always
    after: bool = False  # let the request take effect, then answer the error (a lost response)
    hang: float = 0  # seconds to hold the request first (a hung request; status 0: then serve it normally)

    def matches(self, method: str, key: str) -> bool:
        return method == self.method and self.key_contains in key and self.times != 0


@dataclass
class Control:
    delay: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    faults: list[Fault] = field(default_factory=list)
    ignore_preconditions: bool = False
    # Keys with a multipart upload started and not completed or aborted, and the most at once.
    open_uploads: set[str] = field(default_factory=set)
    max_open_uploads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # S3 applies If-Match / If-None-Match atomically; moto checks then writes,
    # so conditional writes are serialised here to behave like the real thing.
    conditional_lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"counts": dict(self.counts), "bytes_in": self.bytes_in, "max_open_uploads": self.max_open_uploads}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.bytes_in = 0
            self.open_uploads.clear()
            self.max_open_uploads = 0

    def track_upload(self, method: str, key: str, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        with self.lock:
            if method == "POST" and "uploads" in params:
                self.open_uploads.add(key)
                self.max_open_uploads = max(self.max_open_uploads, len(self.open_uploads))
            elif method in ("POST", "DELETE") and "uploadId" in params:
                self.open_uploads.discard(key)

    def take_fault(self, method: str, key: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, key):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None


ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>{code}</Code><Message>Injected by the test server</Message></Error>"
)


class CountingApp:
    def __init__(self, app: Callable[..., Iterable[bytes]], control: Control) -> None:
        self.app = app
        self.control = control

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self.handle_control(environ, start_response)
        method = environ["REQUEST_METHOD"]
        kind = request_kind(method, path, environ.get("QUERY_STRING", ""))
        with self.control.lock:
            self.control.counts[kind] += 1
            if method in ("PUT", "POST"):
                self.control.bytes_in += int(environ.get("CONTENT_LENGTH") or 0)
        if self.control.delay:
            time.sleep(self.control.delay)
        key = unquote(path.lstrip("/").partition("/")[2])
        self.control.track_upload(method, key, environ.get("QUERY_STRING", ""))
        fault = self.control.take_fault(method, key)
        if fault is not None and fault.hang:
            time.sleep(min(fault.hang, 300))
            if not fault.status:
                fault = None
        if fault is not None and fault.after:
            for _ in self.app(environ, lambda *args, **kwargs: None):
                pass
        if fault is not None:
            start_response(f"{fault.status} Injected", [("Content-Type", "application/xml")])
            return [ERROR_BODY.format(code=fault.code).encode()]
        conditional = "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
        if conditional and self.control.ignore_preconditions:
            environ.pop("HTTP_IF_MATCH", None)
            environ.pop("HTTP_IF_NONE_MATCH", None)
            conditional = False
        if conditional and method in ("PUT", "POST"):
            with self.control.conditional_lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)

    def handle_control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = environ["PATH_INFO"][len(CONTROL_PREFIX) :]
        method = environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"null") if length else None
        result: Any = {}
        if name == "requests" and method == "GET":
            result = self.control.snapshot()
        elif name == "requests" and method == "DELETE":
            self.control.reset()
        elif name == "faults" and method == "POST":
            with self.control.lock:
                self.control.faults.append(Fault(**body))
        elif name == "faults" and method == "DELETE":
            with self.control.lock:
                self.control.faults.clear()
        elif name == "settings" and method == "POST":
            self.control.delay = float(body.get("delay_ms", self.control.delay * 1000)) / 1000
            self.control.ignore_preconditions = bool(
                body.get("ignore_preconditions", self.control.ignore_preconditions)
            )
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(result).encode()]


def serve(host: str, port: int, delay_ms: float) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    control = Control(delay=delay_ms / 1000)
    app = CountingApp(DomainDispatcherApplication(create_backend_app), control)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


class S3Server(ChildServer):
    """Starts the server in a child process and talks to its control endpoints."""

    module = "tests.s3server"

    def __init__(self, delay_ms: float = 0) -> None:
        super().__init__("--delay-ms", str(delay_ms))

    def bytes_in(self) -> int:
        return int(self._call("GET", "requests")["bytes_in"])

    def max_open_uploads(self) -> int:
        """The most multipart uploads that were in progress at once since the last reset."""
        return int(self._call("GET", "requests")["max_open_uploads"])

    def add_fault(
        self,
        method: str,
        key_contains: str,
        status: int = 500,
        code: str = "InternalError",
        times: int = -1,
        after: bool = False,
        hang: float = 0,
    ) -> None:
        """Answer matching requests with an error; ``after``: once the request has taken effect.

        ``hang``: hold each matching request that many seconds first (with ``status=0``, then serve it).
        """
        fault = {"method": method, "key_contains": key_contains, "status": status, "code": code, "times": times}
        self._call("POST", "faults", {**fault, "after": after, "hang": hang})

    def configure(self, **settings: Any) -> None:
        self._call("POST", "settings", settings)


def main(prepare: Callable[[], None] = lambda: None) -> None:
    """Serve until killed; ``prepare`` runs first (the benchmark's server patches moto there)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    prepare()
    serve(args.host, args.port, args.delay_ms)


if __name__ == "__main__":
    main()
