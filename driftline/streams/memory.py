"""The worker's heap: glibc malloc settings that keep its peak RSS down.

glibc serves a request of at least `M_MMAP_THRESHOLD` bytes (128 KiB at start) with its own
`mmap`, returned to the system on `free`; but after such a block is freed it raises the
threshold to that block's size (up to 32 MiB), so later arrays of that size come from the heap,
where freed space stays mapped as long as anything above it lives. The worker allocates and
frees many such blocks: reservoirs and window columns (a 2,000 x 20 float64 array is 312 KiB),
checkpoint values of several MiB, partials. With the dynamic threshold the freed space of one
checkpoint or window close stays in the heap and the next peak lands on top of it.
`tune_malloc` fixes the threshold at 128 KiB and returns freed heap tops above 1 MiB
(`M_TRIM_THRESHOLD`, default 128 KiB but raised with the mmap threshold): measured in-process on
the packed 100-models scenario, the pipeline's peak RSS 477-504 -> 430-449 MiB at about the same
CPU (docs/BENCHMARKS.md, "Memory of the packed scenario").

The variables glibc reads itself (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`GLIBC_TUNABLES`) win: when one is set, nothing is changed. Without glibc (musl, macOS) this
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "tune_malloc"]

# mallopt parameters, glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc(environ: dict[str, str] | None = None) -> bool:
    """Fix glibc's mmap threshold and trim threshold (see the module's docstring); True if
    both were set."""
    env = os.environ if environ is None else environ
    if any(name in env for name in _ENVIRONMENT):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
