"""Allocator setting for the bound passes: keep large coefficient buffers in the heap.

glibc's malloc hands out blocks above its mmap threshold (at most 32 MiB, adjusted on the fly)
as fresh mappings and returns them to the kernel when freed, so a backward pass that allocates
and frees the same 16 MiB tensors layer after layer page-faults every page of every one
(oval21, 4 boxes: ~10,000 minor faults and 15 ms of system time in an 85 ms CROWN call).
:func:`keep_large_buffers` raises the mmap threshold to ``MMAP_THRESHOLD`` and the trim
threshold to ``TRIM_THRESHOLD`` once per process, so such blocks are reused from the heap
(measured: oval21 85 -> 73 ms per call, sri_resnet_a 5.8 -> 5.5 s). It changes no value, only
where memory comes from; the process keeps up to ``TRIM_THRESHOLD`` of freed heap. A no-op
where the C library has no ``mallopt`` (not glibc) or with ``CERTPRUNE_MALLOPT=0``.
"""
from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
_state: list[bool] = []


def keep_large_buffers() -> bool:
    """Apply the setting once per process; True where glibc accepted it."""
    if _state:
        return _state[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("CERTPRUNE_MALLOPT", "1") != "0":
        try:
            import ctypes  # here, not at import: start-up time
            libc = ctypes.CDLL(None)
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    _state.append(ok)
    return ok
