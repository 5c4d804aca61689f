"""CPU inference settings that cost nothing in accuracy: how freed memory is kept.

Why: a TDANet forward allocates and frees hundreds of activation tensors of megabytes each
(512 channels x 1,008 frames = 2 MB per second of audio). With glibc's default malloc the
freed top of the heap is handed back to the kernel as soon as more than a few megabytes are
free there (the trim threshold follows the mmap threshold, a few MB), and the next tensor of
that size is mapped again, page by page: on the 2-core development machine a 1-s one-thread
forward took ~50,000 minor page faults and 0.10-0.13 s of system time on top of 0.28 s of
user time. Raising the two thresholds keeps the freed memory in the heap for the next
tensor: page faults fall to ~20 per forward and system time to ~2 ms. Peak RSS does not
change (the same tensors are alive at the peak); the process just does not shrink between
forwards, which is what a loop over chunks wants anyway.

Only glibc has ``mallopt``; elsewhere (macOS, Windows, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("cocktailparty")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done: tuple[int, int] | None = None


def keep_freed_memory(trim_mb: int = 1024, mmap_mb: int = 256) -> bool:
    """Tell glibc's malloc to keep up to ``trim_mb`` of freed heap and to serve allocations
    below ``mmap_mb`` from the heap (so they are reused, not re-mapped and re-faulted).

    Process-wide and idempotent; returns True when the settings are in force. Called by
    :class:`~cocktailparty.inference.separate.Separator` for CPU inference (``cocktail separate``).
    """
    global _done
    if _done == (trim_mb, mmap_mb):
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_mb << 20) == 1
    if ok:
        _done = (trim_mb, mmap_mb)
    else:
        log.debug("mallopt refused the thresholds; freed memory is returned to the kernel as usual")
    return ok
