"""Freed heap handed back to the system (`driftline/streams/memory.py`)."""

from __future__ import annotations

import platform
from pathlib import Path

from driftline.streams.memory import release_free_heap


def _rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])


def test_freed_heap_goes_back_to_the_system_on_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        assert release_free_heap() is False
        return
    # 64 MiB in 640 blocks of 100 KiB (below glibc's mmap threshold: from the heap), one kept
    # at the top so the heap cannot shrink by itself when the others are freed
    blocks = [bytearray(100 * 1024) for _ in range(640)]
    top = bytearray(100 * 1024)
    del blocks
    before = _rss_kib()
    assert release_free_heap() is True
    assert before - _rss_kib() > 32 * 1024
    del top
