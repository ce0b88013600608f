"""A fault-injecting HTTP proxy between a real S3 client and the test S3 server.

The proxy listens on a free port of 127.0.0.1 and forwards every request to
one upstream endpoint (the moto server of tests/s3server.py). Rules, small
dataclasses set from the test, decide what happens to a request instead:

* :class:`Respond`: answer an S3 error (500 InternalError, 503 SlowDown, 403 AccessDenied...)
  without forwarding;
* :class:`DropRequest`: read part of the body, then close the connection: the request never
  takes effect;
* :class:`DropResponse`: forward the request (it takes effect), then close the connection
  before or while sending the answer;
* :class:`Hang`: hold the request unanswered until :meth:`FaultProxy.release`, the rule's
  time or :data:`MAX_HOLD` seconds pass, then close the connection;
* :class:`Delay`: wait, then forward as usual;
* :class:`Disappear`: from this request on, the endpoint is gone: the listening socket is
  closed (new connections are refused) and open connections are closed.

A :class:`Rule` picks requests by method, request kind, key and query, then fires for a
``fraction`` of them (decided by a seeded hash of the request and its attempt number, so a
run repeats whatever order the threads send in), or only for the ``nth`` match, at most
``times`` times. Every request is logged (:class:`LogEntry`) and counted by kind, as
tests/s3server.py counts them.

Everything is bounded: reads have socket timeouts, holds end after at most MAX_HOLD
seconds, and :meth:`FaultProxy.stop` closes every socket and joins every thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, cast
from urllib.parse import unquote, urlsplit

from tests.s3server import ERROR_BODY, request_kind

#: The longest any request is held (Hang), whatever a rule says.
MAX_HOLD = 120.0
#: How long a client connection may stay idle, or a read from it may wait.
IDLE_TIMEOUT = 120.0
#: How long the upstream server may take to answer one request.
UPSTREAM_TIMEOUT = 60.0
#: Connections served at once; more are closed on arrival.
MAX_CONNECTIONS = 128
MAX_LINE = 65536
MAX_HEADERS = 200

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


@dataclass(frozen=True)
class Respond:
    """Answer this error, without forwarding the request."""

    status: int = 500
    code: str = "InternalError"

    def describe(self) -> str:
        return f"respond {self.status} {self.code}"


@dataclass(frozen=True)
class DropRequest:
    """Read this share of the body (0 to 1), then close the connection: nothing is forwarded."""

    read: float = 0.5

    def describe(self) -> str:
        return f"drop request after {self.read:.0%} of the body"


@dataclass(frozen=True)
class DropResponse:
    """Forward the request (it takes effect), then send ``sent`` bytes of the answer and close."""

    sent: int = 0

    def describe(self) -> str:
        return f"drop response after {self.sent} bytes"


@dataclass(frozen=True)
class Hang:
    """Hold the request unanswered for ``seconds`` (at most MAX_HOLD) or until released, then close."""

    seconds: float = MAX_HOLD

    def describe(self) -> str:
        return f"hang {self.seconds:g} s"


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then forward the request as usual."""

    seconds: float = 0.1

    def describe(self) -> str:
        return f"delay {self.seconds:g} s"


@dataclass(frozen=True)
class Disappear:
    """From this request on the endpoint is gone: connections are refused and closed."""

    def describe(self) -> str:
        return "disappear"


Fault = Respond | DropRequest | DropResponse | Hang | Delay | Disappear


@dataclass
class Rule:
    """Which requests get ``fault``: every condition given must hold."""

    fault: Fault
    method: str | None = None
    kind: str | None = None  # as request_kind() names it: GET, HEAD, PUT, LIST, DELETE, POST
    key_contains: str = ""
    query_contains: str = ""
    #: Fire for this share of the matching requests (a seeded hash of the request decides).
    fraction: float = 1.0
    #: Fire only for the nth matching request (1-based).
    nth: int | None = None
    #: Fire at most this many times; -1: no limit.
    times: int = -1
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def matches(self, method: str, kind: str, key: str, query: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.kind is None or self.kind == kind)
            and self.key_contains in key
            and self.query_contains in query
        )


@dataclass
class LogEntry:
    method: str
    key: str
    kind: str
    query: str
    #: What the proxy did instead of forwarding plainly (None: forwarded).
    injected: str | None = None
    #: The status sent to the client (None: no answer, the connection was closed).
    status: int | None = None
    done: bool = False


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    length: int
    chunked: bool
    expects_continue: bool

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Closed(Exception):
    """The client connection is gone, or must be closed now."""


class FaultProxy:
    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the proxy forwards to 127.0.0.1 only, not {upstream!r}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seed = seed
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._log: list[LogEntry] = []
        self._counts: Counter[str] = Counter()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._refusing = False
        self._clients: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self.port = 0
        self._listen()

    # The test's side.

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *rules: Rule) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule and release held requests; the log and counts stay."""
        with self._lock:
            self._rules.clear()
        self.release()

    def reset(self, seed: int | None = None) -> None:
        """No rules, no log, no counts, connections accepted again."""
        self.clear()
        with self._lock:
            self._log.clear()
            self._counts.clear()
            self._attempts.clear()
            if seed is not None:
                self.seed = seed
        self.restore()

    def release(self) -> None:
        """Let every held request go (its connection is closed)."""
        self._release.set()
        with self._lock:
            self._release = threading.Event()

    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def injected(self) -> list[LogEntry]:
        return [entry for entry in self.log() if entry.injected]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def wait_for(self, predicate: Callable[[list[LogEntry]], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate(log)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._log)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
        return True

    def refuse(self) -> None:
        """The endpoint disappears: the port refuses connections, open ones are closed."""
        with self._lock:
            self._refusing = True
            listener, self._listener = self._listener, None
            clients = list(self._clients)
        if listener is not None:
            listener.close()
        for client in clients:
            _shutdown(client)
        if self._accepter is not None and self._accepter is not threading.current_thread():
            self._accepter.join(timeout=5)

    def restore(self) -> None:
        """Accept connections again on the same port, after :meth:`refuse`."""
        with self._lock:
            if not self._refusing or self._stopping.is_set():
                return
            self._refusing = False
        self._listen()

    def stop(self) -> None:
        self._stopping.set()
        self.release()
        self.refuse()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    # The proxy's side.

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._accepter = threading.Thread(target=self._accept, args=(listener,), name="faultproxy-accept", daemon=True)
        self._accepter.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._clients) >= MAX_CONNECTIONS or self._refusing:
                    client.close()
                    continue
                self._clients.add(client)
                thread = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True)
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(IDLE_TIMEOUT)
        reader = cast(BinaryIO, client.makefile("rb", buffering=65536))
        try:
            for _ in range(100_000):  # requests on one keep-alive connection
                if self._stopping.is_set() or not self._handle(client, reader):
                    break
        except (_Closed, OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            reader.close()
            _shutdown(client)
            client.close()
            with self._lock:
                self._clients.discard(client)
                self._threads.discard(threading.current_thread())

    def _handle(self, client: socket.socket, reader: BinaryIO) -> bool:
        """Serve one request; False when the connection must close."""
        request = _read_head(reader)
        if request is None:
            return False
        split = urlsplit(request.target)
        path, query = split.path, split.query
        key = unquote(path.lstrip("/").partition("/")[2])
        kind = request_kind(request.method, path, query)
        entry = LogEntry(request.method, key, kind, query)
        with self._changed:
            self._counts[kind] += 1
            self._log.append(entry)
            fault = self._pick(request.method, kind, key, query)
            entry.injected = fault.describe() if fault is not None else None
            release = self._release
            self._changed.notify_all()
        try:
            return self._apply(client, reader, request, entry, fault, release)
        finally:
            with self._changed:
                entry.done = True
                self._changed.notify_all()

    def _pick(self, method: str, kind: str, key: str, query: str) -> Fault | None:
        """Called with the lock held: the first rule that fires for this request."""
        signature = (method, f"{key}?{query}")
        self._attempts[signature] += 1
        attempt = self._attempts[signature]
        for index, rule in enumerate(self._rules):
            if not rule.matches(method, kind, key, query) or rule.times == 0:
                continue
            rule.matched += 1
            if rule.nth is not None and rule.matched != rule.nth:
                continue
            if rule.fraction < 1.0:
                digest = hashlib.sha256(f"{self.seed}:{index}:{method}:{key}?{query}:{attempt}".encode()).digest()
                if int.from_bytes(digest[:8], "big") / 2**64 >= rule.fraction:
                    continue
            if rule.times > 0:
                rule.times -= 1
            rule.fired += 1
            return rule.fault
        return None

    def _apply(
        self,
        client: socket.socket,
        reader: BinaryIO,
        request: _Request,
        entry: LogEntry,
        fault: Fault | None,
        release: threading.Event,
    ) -> bool:
        if isinstance(fault, Hang):
            # Told to send its body (so it waits for the answer, not for 100 Continue), then never answered.
            if request.expects_continue:
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._hold(release, fault.seconds)
            return False
        if isinstance(fault, Disappear):
            self.refuse()
            return False
        if isinstance(fault, DropRequest):
            if request.expects_continue:
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            _read_exactly(reader, int(request.length * min(max(fault.read, 0.0), 1.0)))
            return False
        if request.expects_continue:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _read_body(reader, request)
        if isinstance(fault, Respond):
            payload = ERROR_BODY.format(code=fault.code).encode()
            head = [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))]
            client.sendall(_response(fault.status, "Injected", head) + (b"" if request.method == "HEAD" else payload))
            self._answered(entry, fault.status)
            return True
        if isinstance(fault, Delay):
            self._hold(threading.Event(), fault.seconds)
        status, raw = self._forward(request, body)
        if isinstance(fault, DropResponse):
            client.sendall(raw[: max(fault.sent, 0)])
            return False
        client.sendall(raw)
        self._answered(entry, status)
        return True

    def _answered(self, entry: LogEntry, status: int) -> None:
        with self._lock:
            entry.status = status

    def _hold(self, release: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + min(seconds, MAX_HOLD)
        while not release.is_set() and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            release.wait(min(remaining, 0.2))

    def _forward(self, request: _Request, body: bytes) -> tuple[int, bytes]:
        """Send the request upstream; the status and the raw answer to send to the client."""
        connection = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            connection.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or request.method in ("PUT", "POST") or request.length:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if request.method != "HEAD" and response.status not in (204, 304):
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(payload))))
            return response.status, _response(response.status, response.reason, headers) + payload
        finally:
            connection.close()


def _response(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _readline(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _Closed("line too long")
    return line


def _read_head(reader: BinaryIO) -> _Request | None:
    line = _readline(reader)
    if not line:
        return None
    try:
        method, target, _ = line.decode("latin-1").split(" ", 2)
    except ValueError:
        raise _Closed(f"not an HTTP request line: {line[:80]!r}") from None
    headers: list[tuple[str, str]] = []
    for _ in range(MAX_HEADERS + 1):
        raw = _readline(reader)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    else:
        raise _Closed("too many headers")
    request = _Request(method, target, headers, 0, False, False)
    request.length = int(request.header("content-length") or 0)
    request.chunked = "chunked" in (request.header("transfer-encoding") or "").lower()
    request.expects_continue = (request.header("expect") or "").lower() == "100-continue"
    return request


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size) if size > 0 else b""
    if len(data) < size:
        raise _Closed("the client closed mid-body")
    return data


def _read_body(reader: BinaryIO, request: _Request) -> bytes:
    if not request.chunked:
        return _read_exactly(reader, request.length)
    chunks = []
    for _ in range(1_000_000):
        size = int(_readline(reader).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while _readline(reader) not in (b"\r\n", b"\n", b""):
                pass
            break
        chunks.append(_read_exactly(reader, size))
        _readline(reader)
    return b"".join(chunks)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
