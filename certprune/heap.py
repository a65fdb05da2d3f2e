"""Keep freed memory in the process heap (glibc): the bound passes allocate and free tensors of
tens of MB per round; by default glibc serves each from a fresh ``mmap`` and returns it on free,
so every round zero-fills new pages (measured on BM-8's fairness audit: 4.5 s of system time in
30 s, and 11 % longer to FairQuant's coverage than with the heap kept). Called once by the
command line, never on import (a library should not change its host's allocator)."""
from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GB come from the heap
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GB of free heap top instead of returning it to the OS


def keep_heap() -> bool:
    """Raise glibc's mmap and trim thresholds (``mallopt``); True when both took effect, False on
    other C libraries or where ``mallopt`` refuses (nothing changes then)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
