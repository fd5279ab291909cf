"""The worker's heap: freed memory handed back to the system between checkpoints.

glibc keeps freed memory in its heap for the next allocation, and serves a request above its
mmap threshold with its own mapping only until a freed block of that size raises the threshold
(dynamically, up to 32 MiB). The worker allocates and frees many blocks of 0.1-10 MiB (window
columns and reservoirs, checkpoint values and segments, partials, a batch's messages); once
freed in the middle of the heap they stay resident, and the next checkpoint or window close
does not always fit in them, so the peak grows on top of memory nobody uses. `release_free_heap`
(`malloc_trim(0)`: the free pages of every arena back to the system) is called at each
checkpoint (every `worker.checkpoint_interval_seconds`), when the previous checkpoint's
messages are confirmed and freed.

Measured on the packed 100-models scenario (docs/BENCHMARKS.md, "Memory of the packed
scenario"): in-process, the pipeline's peak RSS 477-504 -> 456 MiB. A fixed mmap threshold
(`mallopt(M_MMAP_THRESHOLD, 128 KiB)`) gave 430-449 MiB in-process, but the worker then spent
1.6x the CPU per record (every large numpy temporary a fresh mapping): not adopted.

Without glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["release_free_heap"]


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_heap() -> bool:
    """Give the free pages of the heap back to the system (glibc's ``malloc_trim(0)``; the
    GIL is released meanwhile); True if memory was released, False if none or not glibc."""
    return _TRIM is not None and bool(_TRIM(0))
