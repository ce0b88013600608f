"""collectfast.arenas: a deploy's threads share two glibc arenas (counted by glibc's malloc_stats)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from collectfast import arenas

pytestmark = pytest.mark.skipif(not arenas.glibc(), reason="glibc's malloc only")

# Threads that allocate at once, each from the arena glibc gives it; then glibc prints one
# "Arena N:" block per arena it made.
CHILD = """
import ctypes, sys, threading
from collectfast import arenas
print(arenas.limit() if sys.argv[1] == "limit" else None, flush=True)
barrier = threading.Barrier(12)
def work():
    held = [bytearray(4096) for _ in range(64)]
    barrier.wait()
    held.clear()
threads = [threading.Thread(target=work) for _ in range(12)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas_made(how: str, env: dict[str, str]) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, how], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return done.stdout.strip(), done.stderr.count("Arena ")


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return {**env, **extra}


def test_a_deploy_s_threads_share_two_arenas() -> None:
    assert arenas_made("limit", environment()) == ("True", arenas.ARENAS)
    said, made = arenas_made("leave", environment())
    assert made > arenas.ARENAS  # glibc's own limit, which the test would pass without limit()


def test_the_user_s_malloc_arena_max_is_left_alone() -> None:
    assert arenas_made("limit", environment(MALLOC_ARENA_MAX="3")) == ("False", 3)


def test_limit_acts_once_per_process() -> None:
    arenas.limit()
    assert arenas.limit() is False
