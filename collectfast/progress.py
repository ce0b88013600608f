"""Progress of a run on stderr: redrawn in place on a terminal, a plain line now and then elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds between plain lines when stderr is not a terminal (a CI log shows life without flooding).
PLAIN_EVERY = 10.0
#: Seconds between redraws on a terminal.
REDRAW_EVERY = 0.1


def size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02}"


class Progress:
    """Files decided of the total, uploaded, unchanged, failed, bytes sent, elapsed and an estimate.

    ``write`` puts raw text on stderr; nothing is shown when ``enabled`` is False (``-v 0``).
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        enabled: bool,
        terminal: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.enabled = enabled
        self.terminal = terminal
        self.clock = clock
        self.started = clock()
        self.total = self.uploaded = self.skipped = self.failed = self.bytes_sent = 0
        self.phase = "starting"
        self._shown_at: float | None = None
        self._drawn = False

    def begin(self, phase: str, total: int | None = None) -> None:
        self.phase = phase
        if total is not None:
            self.total = total
        self.show(force=True)

    def add(self, *, uploaded: int = 0, skipped: int = 0, failed: int = 0, sent: int = 0) -> None:
        self.uploaded += uploaded
        self.skipped += skipped
        self.failed += failed
        self.bytes_sent += sent
        self.show()

    def line(self) -> str:
        decided = self.uploaded + self.skipped + self.failed
        elapsed = self.clock() - self.started
        counts = f"{self.uploaded} uploaded, {self.skipped} unchanged" + (
            f", {self.failed} failed" if self.failed else ""
        )
        parts = [f"collectfast: {self.phase}", f"{decided}/{self.total} files", counts, f"{size(self.bytes_sent)} sent"]
        parts.append(f"{duration(elapsed)} elapsed")
        if 0 < decided < self.total:
            parts.append(f"about {duration(elapsed / decided * (self.total - decided))} left")
        return " | ".join(parts)

    def show(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.terminal:
            if not force and self._shown_at is not None and now - self._shown_at < REDRAW_EVERY:
                return
            self.write("\r\x1b[2K" + self.line())
            self._drawn = True
        else:
            # The first plain line only once a run has gone on long enough to need one.
            if now - (self._shown_at if self._shown_at is not None else self.started) < PLAIN_EVERY:
                return
            self.write(self.line() + "\n")
        self._shown_at = now

    def end(self) -> None:
        """Wipe the redrawn line, so the summary and errors start on a clean one."""
        if self._drawn:
            self.write("\r\x1b[2K")
            self._drawn = False
