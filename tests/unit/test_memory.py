"""glibc malloc settings of the worker (`driftline/streams/memory.py`)."""

from __future__ import annotations

import platform

from driftline.streams.memory import tune_malloc


def test_malloc_is_tuned_on_glibc_unless_the_environment_says_otherwise() -> None:
    if platform.libc_ver()[0] == "glibc":
        assert tune_malloc({}) is True
    assert tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
    assert tune_malloc({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) is False
