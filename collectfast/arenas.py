"""Keep glibc from giving each of a deploy's threads a heap of its own.

glibc's malloc gives threads arenas of their own, up to eight per core, so that threads
need not wait for each other's allocations. Python's threads already take turns (the GIL),
so for a deploy the arenas only cost memory: the memory a worker frees stays in its own
arena, fragmented, for the rest of the run. With 20 workers that was about 15 MB of a
20,000-file first deploy's peak (docs/benchmarks.rst). Two arenas, as ``MALLOC_ARENA_MAX=2``
in the environment would give, keep it.
"""

from __future__ import annotations

import ctypes
import os
import threading

#: glibc's mallopt() parameter for the most arenas malloc may create (malloc.h).
M_ARENA_MAX = -8
ARENAS = 2

_lock = threading.Lock()
_done = False


def limit() -> bool:
    """Limit glibc's arenas to ARENAS before a deploy starts its threads; whether it was done now.

    Once per process; glibc fixes its limit when its first thread arena is made, so a process
    that has already made one keeps its own. Left alone: other C libraries, and a limit the
    user set with ``MALLOC_ARENA_MAX``.
    """
    global _done
    with _lock:
        if _done:
            return False
        _done = True
        if "MALLOC_ARENA_MAX" in os.environ or not glibc():
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_ARENA_MAX, ARENAS))


def glibc() -> bool:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not POSIX, or a name this system does not know
        return False
    return version.startswith("glibc")
