"""Count the remote requests a run makes, by kind, through botocore's event hooks."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = ("LIST", "GET", "HEAD", "PUT", "POST", "DELETE")
_HOOK_ID = "collectfast-request-counter"


def request_kind(method: str, url: str) -> str:
    if method == "GET" and "list-type" in parse_qs(urlsplit(url).query):
        return "LIST"
    return method.upper()


class RequestCounter:
    """Thread-safe tally of requests, one per HTTP attempt (retries included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def summary(self) -> str:
        with self._lock:
            parts = [f"{self.counts[kind]} {kind}" for kind in KINDS if self.counts[kind]]
            parts += [f"{n} {kind}" for kind, n in sorted(self.counts.items()) if kind not in KINDS]
        return ", ".join(parts) + "." if parts else "No remote requests."


_active: RequestCounter | None = None


def activate(counter: RequestCounter | None) -> None:
    """Make ``counter`` the one every instrumented client reports to (None: stop counting)."""
    global _active
    _active = counter


def record(kind: str) -> None:
    """Count one request of ``kind`` ("LIST", "GET", "PUT"...) in the active counter, if any."""
    counter = _active
    if counter is not None:
        counter.add(kind)


def _on_before_send(request: Any, **kwargs: Any) -> None:
    counter = _active
    if counter is not None:
        counter.add(request_kind(request.method, request.url))


def instrument(client: Any) -> None:
    """Count every request ``client`` sends from now on; safe to call repeatedly."""
    client.meta.events.register("before-send.s3", _on_before_send, unique_id=_HOOK_ID)


def instrument_storage(storage: Any) -> bool:
    """Instrument a storage's boto3 client for the calling thread; False if it has none."""
    try:
        client = storage.connection.meta.client
    except AttributeError:
        return False
    instrument(client)
    return True
