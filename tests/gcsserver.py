"""A real Google Cloud Storage JSON API server for tests.

gcp-storage-emulator, in memory, behind a thin layer that counts requests by
kind, can inject faults, and behaves like GCS where the emulator does not:
listings come a page at a time (1,000 objects unless ``maxResults`` says
fewer), composed objects have no ``md5Hash``, uploads honour ``ifGenerationMatch``
(0: only if absent; else 412), and downloads say their generation
(``X-Goog-Generation``). It can delay every request (the benchmark's
``BENCH_DELAY_MS``): the delay is served in the request's own thread, so
parallel requests wait in parallel, as on GCS; the emulator itself still
serves one request at a time. Run it in its own process::

    python -m tests.gcsserver --port 0 [--delay-ms 20]

It prints ``READY <port>`` once it listens. The control endpoints live under
``/_collectfast/`` and are not counted.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.childserver import CONTROL_PREFIX, ChildServer

PAGE_SIZE = 1000
KINDS = ("LIST", "GET", "POST", "PUT", "PATCH", "DELETE", "BATCH")

_LIST = re.compile(r"^/storage/v1/b/(?P<bucket>[-.\w]+)/o$")
_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/(?P<bucket>[-.\w]+)/o/(?P<name>.+?)(?P<compose>/compose)?$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/(?P<bucket>[-.\w]+)/o$")


def request_kind(method: str, path: str) -> str:
    if method == "GET" and _LIST.match(path):
        return "LIST"
    if method == "POST" and path.startswith("/batch/"):
        return "BATCH"
    return method


def upload_name(query: dict[str, list[str]], content_type: str, body: bytes) -> str:
    """The object name of an upload: in the query, or in a multipart upload's JSON part."""
    if "name" in query:
        return query["name"][0]
    if content_type.startswith("multipart/"):
        message = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        parts = message.get_payload()
        if isinstance(parts, list) and parts:
            return str(json.loads(parts[0].get_payload()).get("name", ""))
    return ""


@dataclass
class Fault:
    kind: str
    key_contains: str
    status: int
    reason: str
    times: int  # -1: always

    def matches(self, kind: str, key: str) -> bool:
        return kind == self.kind and self.key_contains in key and self.times != 0


@dataclass
class Control:
    delay: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    #: The bodies of uploads (POST, PUT), in bytes, as sent (a multipart upload's JSON part included).
    bytes_in: int = 0
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The emulator's store is not thread-safe: it serves one request at a time.
    storage_lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, kind: str, key: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(kind, key):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None


def error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }


def make_handler(storage: Any, control: Control) -> type:
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.server import RequestHandler

    class Handler(RequestHandler):  # type: ignore[misc]
        def __init__(self, *args: Any) -> None:
            super().__init__(storage, *args)

        def do_GET(self) -> None:
            self.dispatch("GET")

        def do_POST(self) -> None:
            self.dispatch("POST")

        def do_PUT(self) -> None:
            self.dispatch("PUT")

        def do_PATCH(self) -> None:
            self.dispatch("PATCH")

        def do_DELETE(self) -> None:
            self.dispatch("DELETE")

        def send_json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            if url.path.startswith(CONTROL_PREFIX):
                return self.control(method, url.path[len(CONTROL_PREFIX) :])
            query = parse_qs(url.query)
            body = b""
            if self.headers.get("Content-Length"):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # The emulator reads the body again.
                self.rfile = io.BytesIO(body)
            kind = request_kind(method, url.path)
            with control.lock:
                control.counts[kind] += 1
                if method in ("POST", "PUT"):
                    control.bytes_in += len(body)
                delay = control.delay
            if delay:
                time.sleep(delay)
            with control.storage_lock:
                return self.serve(method, url.path, query, body, kind)

        def serve(self, method: str, url_path: str, query: dict[str, list[str]], body: bytes, kind: str) -> None:
            object_match = _OBJECT.match(url_path)
            key = unquote(object_match["name"]) if object_match else ""
            if _UPLOAD.match(url_path):
                key = upload_name(query, self.headers.get("Content-Type", ""), body)
            fault = control.take_fault(kind, key)
            if fault is not None:
                message = "Injected by the test server"
                return self.send_json(fault.status, error_body(fault.status, fault.reason, message))
            listing = _LIST.match(url_path)
            if listing and method == "GET" and "softDeleted" not in query:
                return self.list_page(listing["bucket"], query)
            upload = _UPLOAD.match(url_path)
            if upload and method == "POST" and "ifGenerationMatch" in query:
                wanted = query["ifGenerationMatch"][0]
                if self.generation(upload["bucket"], key) != wanted:
                    message = "At least one of the pre-conditions you specified did not hold."
                    return self.send_json(412, error_body(412, "conditionNotMet", message))
            self.extra_headers = {}
            if object_match and method == "GET" and (url_path.startswith("/download/") or "alt" in query):
                generation = self.generation(object_match["bucket"], key)
                if generation != "0":
                    self.extra_headers["X-Goog-Generation"] = generation
            getattr(super(), f"do_{method}")()
            if object_match and object_match["compose"] and method == "POST":
                self.mark_composite(object_match["bucket"], key)
            return None

        def generation(self, bucket: str, name: str) -> str:
            """The object's generation, "0" when it does not exist (as ``ifGenerationMatch`` has it)."""
            try:
                return str(storage.get_file_obj(bucket, name)["generation"])
            except NotFound:
                return "0"

        def end_headers(self) -> None:
            for name, value in getattr(self, "extra_headers", {}).items():
                self.send_header(name, value)
            self.extra_headers = {}
            super().end_headers()

        def list_page(self, bucket: str, query: dict[str, list[str]]) -> None:
            # The emulator returns every object at once; GCS pages them, in name order.
            def first(name: str) -> str | None:
                return query[name][0] if name in query else None

            try:
                items, prefixes = storage.get_file_list(bucket, first("prefix"), first("delimiter"))
            except NotFound:
                return self.send_json(404, error_body(404, "notFound", "The specified bucket does not exist."))
            token = first("pageToken")
            after = base64.urlsafe_b64decode(token).decode() if token else None
            if after is not None:
                items = [item for item in items if item["name"] > after]
            size = min(int(first("maxResults") or PAGE_SIZE), PAGE_SIZE)
            page: dict[str, Any] = {"kind": "storage#objects", "items": items[:size]}
            if prefixes and token is None:
                page["prefixes"] = prefixes
            if len(items) > size:
                page["nextPageToken"] = base64.urlsafe_b64encode(items[size - 1]["name"].encode()).decode()
            return self.send_json(200, page)

        def mark_composite(self, bucket: str, name: str) -> None:
            # GCS gives composed objects a component count and no md5Hash.
            try:
                obj = dict(storage.get_file_obj(bucket, name))
            except NotFound:
                return
            obj.pop("md5Hash", None)
            obj["componentCount"] = 2
            storage.patch_object(bucket, name, obj)

        def control(self, method: str, name: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            result: Any = {}
            if name == "requests" and method == "GET":
                with control.lock:
                    result = {"counts": dict(control.counts), "bytes_in": control.bytes_in}
            elif name == "requests" and method == "DELETE":
                with control.lock:
                    control.counts.clear()
                    control.bytes_in = 0
            elif name == "settings" and method == "POST":
                with control.lock:
                    control.delay = float(body.get("delay_ms", control.delay * 1000)) / 1000
            elif name == "faults" and method == "POST":
                with control.lock:
                    control.faults.append(Fault(**body))
            elif name == "faults" and method == "DELETE":
                with control.lock:
                    control.faults.clear()
            else:
                return self.send_json(404, {})
            return self.send_json(200, result)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    # A thread per connection, for the delay; the emulator behind Control.storage_lock. Let clients queue.
    request_queue_size = 128
    daemon_threads = True


def serve(host: str, port: int, delay_ms: float = 0) -> None:
    from gcp_storage_emulator.storage import Storage

    storage = Storage(use_memory_fs=True)
    # In memory, the emulator re-serialises every object's metadata on each write,
    # which makes a run quadratic and is never read back.
    storage._write_config_to_file = lambda: None
    server = _HTTPServer((host, port), make_handler(storage, Control(delay=delay_ms / 1000)))
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


class GCSServer(ChildServer):
    """Starts the server in a child process and talks to its control endpoints."""

    module = "tests.gcsserver"

    def add_fault(
        self, kind: str, key_contains: str, status: int = 500, reason: str = "backendError", times: int = -1
    ) -> None:
        """Answer requests of this kind (see KINDS) whose object name contains ``key_contains`` with an error."""
        self._call(
            "POST",
            "faults",
            {"kind": kind, "key_contains": key_contains, "status": status, "reason": reason, "times": times},
        )

    def configure(self, *, delay_ms: float) -> None:
        """Delay every request (control endpoints excepted) by ``delay_ms`` from now on."""
        self._call("POST", "settings", {"delay_ms": delay_ms})

    def bytes_in(self) -> int:
        """The bytes of upload bodies since the last reset."""
        return int(self._call("GET", "requests")["bytes_in"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    serve(args.host, args.port, args.delay_ms)


if __name__ == "__main__":
    main()
