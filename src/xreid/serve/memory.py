"""The native memory of a long-running server, kept flat (glibc's allocator; nothing elsewhere).

A server that decodes images, runs ONNX Runtime and draws maps in many request threads grows in
memory that Python never sees (``tracemalloc`` counts little of it): memory freed inside glibc's
heaps that is not given back, spread over one heap per thread. Three settings keep it bounded
(the soak's before / after: docs/RESULTS.md#search-service):

- ``fix_mmap_threshold``: every allocation of 1 MiB or more gets its own mapping, returned to the
  system when freed (by default glibc raises that threshold to the largest block freed, up to 32 MiB,
  so freed decoded images stayed in the heaps);
- ``limit_arenas``: at most ``n`` heaps (glibc's default is 8 per core: every new request thread
  gets one, each keeping its own free memory);
- ``Trimmer``: ``malloc_trim(0)`` every few seconds, which gives back the free pages inside every
  heap (not only at its top).

The number of request threads itself is bounded by ``xreid.serve.app`` (``Limits.worker_threads``).
Each function returns False (and changes nothing) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import sys
import threading

#: malloc heaps a server keeps (glibc's default: 8 per core)
ARENAS = 2
#: seconds between two trims
TRIM_EVERY = 5.0
#: glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@functools.cache
def _glibc():
    """The C library when it is glibc (None elsewhere: musl, macOS, Windows); looked up once
    (``find_library`` may run ``ldconfig``), not on every trim."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def fix_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """Serve every allocation of ``threshold`` bytes or more with its own mmap, returned to the system
    when freed (glibc's dynamic threshold kept freed decoded uploads in the per-thread heaps, and a
    server decoding large uploads in many threads grew without bound)."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))


def limit_arenas(n: int) -> bool:
    """At most ``n`` malloc heaps from now on (``MALLOC_ARENA_MAX``; heaps already made are kept).
    Takes effect while the process has made fewer than 8 heaps (glibc fixes its limit then); the
    environment variable ``MALLOC_ARENA_MAX``, when set, wins (its value is left as it is)."""
    import os

    libc = _glibc()
    if libc is None:
        return False
    if os.environ.get("MALLOC_ARENA_MAX"):
        return True
    return bool(libc.mallopt(M_ARENA_MAX, max(1, int(n))))


def trim() -> bool:
    """Give the free memory inside every malloc heap back to the system (``malloc_trim(0)``)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class Trimmer:
    """``trim()`` every ``interval`` seconds in a daemon thread, until ``stop()``."""

    def __init__(self, interval: float = TRIM_EVERY):
        self.interval = float(interval)
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Trimmer":
        if _glibc() is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xreid-malloc-trim", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            trim()
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None


def keep_flat(arenas: int = ARENAS, trim_every: float = TRIM_EVERY) -> Trimmer:
    """All of the above for a server process (call it before the model loads, so the heap limit
    holds): the mmap threshold fixed, at most ``arenas`` heaps, a trim every ``trim_every`` seconds
    (the returned ``Trimmer``, already started where the C library is glibc)."""
    fix_mmap_threshold()
    limit_arenas(arenas)
    return Trimmer(trim_every).start()
