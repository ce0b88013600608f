"""Run one contender as a child process and measure its wall time and peak RSS.

The kernel carries the peak RSS of a process's old memory over ``exec`` (and
``vfork`` shares it), so a child started straight from this big process would
report this process's size. A tiny launcher is exec'd first; it forks the
contender from its own small memory, times it, and reads its rusage with wait4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = r"""
import json, os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(result, "w") as out:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, out)
"""


@dataclass
class ChildRun:
    seconds: float
    peak_rss_mb: float
    returncode: int
    log: Path
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def run_child(argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float) -> ChildRun:
    log.parent.mkdir(parents=True, exist_ok=True)
    result = log.with_suffix(".rusage.json")
    result.unlink(missing_ok=True)
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(result), *argv]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            launcher, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return ChildRun(timeout, 0.0, -9, log, timed_out=True)
    if process.returncode != 0 or not result.exists():
        return ChildRun(0.0, 0.0, process.returncode or -1, log)
    measured = json.loads(result.read_text())
    # ru_maxrss is in KiB on Linux.
    return ChildRun(measured["seconds"], measured["maxrss_kib"] / 1024, measured["code"], log)
