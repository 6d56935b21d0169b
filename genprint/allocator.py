"""How the processes that run genprint's torch work (the CLI, Ray workers, Serve replicas) keep freed memory.

glibc serves each large allocation (above a threshold that grows to 32 MiB) with its own mmap and unmaps it when it is
freed, so the large activations of every decode, training step or reader step are faulted in again page by page at the
next one. On the 2-core CPU that made a batch of 16 decodes take twice as long, and the inversion reader pay 3.1 times
as much per image on a batch of 8 images of 256 px as on one (README, "Memory allocation").
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process for reuse: no mmap for large blocks, no trimming of the heap. The
    process keeps up to its peak memory instead of handing it back. Nothing is changed off glibc, or where the operator
    chose an allocator already (a `MALLOC_*` variable, or one preloaded). Returns whether the setting was applied."""
    if (
        not sys.platform.startswith("linux")
        or "LD_PRELOAD" in os.environ
        or any(k.startswith("MALLOC_") for k in os.environ)
    ):
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (musl has its own allocator)
        return False
    # Both documented in mallopt(3): M_MMAP_MAX 0 disables mmap for large requests; M_TRIM_THRESHOLD -1 disables
    # trimming.
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
