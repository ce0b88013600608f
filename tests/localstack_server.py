"""LocalStack's S3 for tests: a second S3 implementation, independent of moto and stricter.

Two child processes, started and stopped by :class:`LocalStackServer`:

* LocalStack's own runtime with the s3 service only, run by the python of its own
  virtualenv (``make test-s3-compat`` creates ``.venv-localstack``)::

      .venv-localstack/bin/python -m tests.localstack_server --localstack --port 4566

  It listens on 127.0.0.1 only, keeps nothing on disk beyond a temporary folder, and
  reaches nothing outside this machine (no DNS server, no analytics, no downloads).
* A counting reverse proxy in front of it, run by the test suite's python: tests.s3server's
  ``CountingApp`` over a forwarding app, so requests are counted by kind and the control
  endpoints (counts, reset, faults, settings) work exactly as they do with moto::

      python -m tests.localstack_server --port 0 --upstream-port 4566

The test suite runs against it with ``COLLECTFAST_S3_SERVER=localstack`` (see tests/fixtures.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from http.client import HTTPConnection, HTTPException
from typing import Any

from tests.childserver import ROOT, ChildServer
from tests.s3server import Control, CountingApp, S3Server

HOST = "127.0.0.1"
VENV = os.path.join(ROOT, os.environ.get("COLLECTFAST_LOCALSTACK_VENV") or ".venv-localstack")
START_TIMEOUT = 120.0

# Hop-by-hop headers: they concern one connection, so the proxy neither forwards nor returns them.
# Expect: 100-continue is answered by the proxy's own server.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


def localstack_environment(port: int, filesystem_root: str) -> dict[str, str]:
    """LocalStack's settings: s3 only, on 127.0.0.1, nothing kept, nothing fetched from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT") or k.startswith("COLLECTFAST_")
    }
    env.update(
        {
            "SERVICES": "s3",
            "EAGER_SERVICE_LOADING": "1",  # load s3 at start, not on the first request
            "GATEWAY_LISTEN": f"{HOST}:{port}",
            "LOCALSTACK_HOST": f"{HOST}:{port}",
            "PERSISTENCE": "0",
            "FILESYSTEM_ROOT": filesystem_root,  # its tmp, cache and state: removed when it stops
            "HOME": filesystem_root,  # plux's entry point cache and any ~/.localstack stay inside it too
            "DNS_ADDRESS": "0",  # its DNS server would listen on 0.0.0.0:53 and probe localstack.cloud
            "DISABLE_EVENTS": "1",  # no analytics
            "SKIP_SSL_CERT_DOWNLOAD": "1",  # a self-signed certificate instead of downloading one
            "DISABLE_CORS_CHECKS": "0",
            "DEBUG": "0",
            "LS_LOG": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def exit_with_parent() -> None:
    """Stop with the process that started this one, even if that one was killed outright."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


# --- Inside LocalStack's virtualenv -------------------------------------------------------------


def stay_on_this_machine() -> None:
    """Refuse, without a network query, every host name but localhost and every connection off 127.0.0.1.

    LocalStack's s3 looks up ``s3.<LOCALSTACK_HOST>`` at start (to choose virtual-host URLs for its
    internal client), which sends a DNS query to the machine's resolver; refused, it uses localhost.
    """

    def check_name(host: Any) -> None:
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or host == "localhost":
            return
        try:
            ipaddress.ip_address(str(host).partition("%")[0])
        except ValueError:
            print(f"collectfast: refused to resolve {host!r}", file=sys.stderr, flush=True)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (offline test server)") from None

    getaddrinfo, gethostbyname, gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def checked_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check_name(host)
        return getaddrinfo(host, *args, **kwargs)

    def checked_gethostbyname(host: str) -> str:
        check_name(host)
        return gethostbyname(host)

    def checked_gethostbyname_ex(host: str) -> Any:
        check_name(host)
        return gethostbyname_ex(host)

    def check_address(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            check_name(address[0])
            if not _is_loopback(address[0] if address[0] != "localhost" else HOST):
                print(f"collectfast: refused to connect to {address!r}", file=sys.stderr, flush=True)
                raise ConnectionRefusedError(f"{address!r} is not on this machine (offline test server)")

    def checked_connect(sock: socket.socket, address: Any) -> None:
        check_address(sock, address)
        connect(sock, address)

    def checked_connect_ex(sock: socket.socket, address: Any) -> int:
        check_address(sock, address)
        return connect_ex(sock, address)

    socket.getaddrinfo = checked_getaddrinfo
    socket.gethostbyname = checked_gethostbyname
    socket.gethostbyname_ex = checked_gethostbyname_ex
    socket.socket.connect = checked_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = checked_connect_ex  # type: ignore[method-assign]


def run_localstack(port: int) -> None:
    """LocalStack's runtime, as its container starts it, with every listening socket held to 127.0.0.1.

    LocalStack's twisted server ignores GATEWAY_LISTEN's host for IPv4 and listens on 0.0.0.0, so
    twisted's reactor is made to bind every TCP and UDP port it opens to 127.0.0.1 before LocalStack
    loads. Runs with the python of LocalStack's virtualenv, with the environment above.
    """
    from twisted.internet import reactor

    listen_tcp, listen_udp = reactor.listenTCP, reactor.listenUDP  # type: ignore[attr-defined]

    def loopback_tcp(port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if not _is_loopback(interface or "0.0.0.0"):
            interface = HOST
        listening = listen_tcp(port, factory, backlog, interface)
        assert _is_loopback(listening.getHost().host), listening.getHost()
        return listening

    def loopback_udp(port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # noqa: N803
        if not _is_loopback(interface or "0.0.0.0"):
            interface = HOST
        return listen_udp(port, protocol, interface, maxPacketSize)

    reactor.listenTCP = loopback_tcp  # type: ignore[attr-defined]
    reactor.listenUDP = loopback_udp  # type: ignore[attr-defined]
    stay_on_this_machine()

    exit_with_parent()
    from localstack.runtime import main

    main.main()


# --- The counting proxy, in the test suite's virtualenv ------------------------------------------


def _environ_key(header: str) -> str:
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


class ForwardingApp:
    """A WSGI app that forwards each request to LocalStack, headers and bytes unchanged."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def connection(self, fresh: bool = False) -> HTTPConnection:
        conn: HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = HTTPConnection(HOST, self.port, timeout=300)
            self.local.conn = conn
        return conn

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        url = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        query = environ.get("QUERY_STRING", "")
        if "?" not in url and query:
            url = f"{url}?{query}"
        stream = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):  # chunked: the server already removed the framing
            body = stream.read()
        else:
            body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        # As sent, less those that the counting app took out of the environ (ignore_preconditions).
        # Werkzeug leaves names with an underscore out of the environ (S3 metadata may have them).
        headers = [
            (k, v)
            for k, v in environ["collectfast.raw_headers"]
            if k.lower() not in _HOP_BY_HOP and ("_" in k or _environ_key(k) in environ)
        ]
        if method in ("PUT", "POST") or body:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        response = None
        for attempt in range(2):
            conn = self.connection(fresh=attempt > 0)
            try:
                conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body or None)
                response = conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, HTTPException):
                # A kept-alive connection that LocalStack closed meanwhile: once more on a new one.
                conn.close()
                if attempt:
                    raise
        assert response is not None
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        if method != "HEAD" and not any(k.lower() == "content-length" for k, _ in out):
            out.append(("Content-Length", str(len(data))))
        if response.will_close:
            conn.close()
        start_response(f"{response.status} {response.reason}", out)
        return [data]


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def serve_proxy(host: str, port: int, upstream_port: int, delay_ms: float) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class RawHeadersHandler(WSGIRequestHandler):
        """Hands the request's headers to the app as sent: names with underscores, order, repeats."""

        def make_environ(self) -> Any:
            environ = super().make_environ()
            environ["collectfast.raw_headers"] = list(self.headers.items())
            return environ

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    exit_with_parent()
    # moto needs conditional writes serialised by the counting app; LocalStack applies them atomically itself.
    control = Control(delay=delay_ms / 1000, conditional_lock=_NoLock())  # type: ignore[arg-type]
    app = CountingApp(ForwardingApp(upstream_port), control)
    server = make_server(host, port, app, threaded=True, request_handler=RawHeadersHandler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


# --- The test side ------------------------------------------------------------------------------


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net prints each 32-bit word of the address in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def bound_addresses(pgid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of each listening TCP or bound UDP socket of a process group (Linux)."""
    inodes: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[2]) != pgid:
                    continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{protocol}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            # TCP 0A: LISTEN; UDP 07: bound, not connected.
            if inode in inodes and state == ("0A" if protocol.startswith("tcp") else "07"):
                address, _, port = local.partition(":")
                found.append((protocol, _decode_address(address), int(port, 16)))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class LocalStackServer(S3Server):
    """LocalStack's S3 behind the counting proxy: an ``S3Server`` for the tests, counts and faults included."""

    module = "tests.localstack_server"

    def __init__(self, delay_ms: float = 0) -> None:
        python = os.path.join(VENV, "bin", "python")
        if not os.path.exists(python):
            raise RuntimeError(f"LocalStack's virtualenv is missing ({VENV}): run make test-s3-compat")
        self.localstack_port = _free_port()
        self.filesystem_root = tempfile.mkdtemp(prefix="collectfast-localstack-")
        self.log_path = os.path.join(self.filesystem_root, "localstack.log")
        with open(self.log_path, "wb") as log:
            # A session of its own: its process group is stopped as a whole.
            self.localstack = subprocess.Popen(
                [python, "-m", "tests.localstack_server", "--localstack", "--port", str(self.localstack_port)],
                cwd=ROOT,
                env=localstack_environment(self.localstack_port, self.filesystem_root),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process: subprocess.Popen[str] | None = None
        try:
            self.wait_for_localstack()
            ChildServer.__init__(self, "--delay-ms", str(delay_ms), "--upstream-port", str(self.localstack_port))
        except BaseException:
            self.stop()
            raise

    def log_tail(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-30:])

    def wait_for_localstack(self) -> None:
        health = f"http://{HOST}:{self.localstack_port}/_localstack/health"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.localstack.poll() is not None:
                raise RuntimeError(f"LocalStack exited with {self.localstack.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=5) as response:
                    if json.loads(response.read()).get("services", {}).get("s3") in ("running", "available"):
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"LocalStack did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        bound = bound_addresses(self.localstack.pid)
        outside = [b for b in bound if not _is_loopback(b[1])]
        if outside or not any(port == self.localstack_port for _, _, port in bound):
            raise RuntimeError(f"LocalStack must listen on {HOST}:{self.localstack_port} only; it listens on {bound}")

    def stop(self) -> None:
        if self.process is not None:
            super().stop()
        try:
            os.killpg(self.localstack.pid, signal.SIGTERM)
            self.localstack.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.localstack.pid, signal.SIGKILL)
            self.localstack.wait()
        except ProcessLookupError:
            self.localstack.wait()
        shutil.rmtree(self.filesystem_root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--localstack", action="store_true", help="run LocalStack itself (its virtualenv's python)")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-port", type=int, help="the proxy's LocalStack port")
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    if args.localstack:
        run_localstack(args.port)
    else:
        serve_proxy(args.host, args.port, args.upstream_port, args.delay_ms)


if __name__ == "__main__":
    main()
