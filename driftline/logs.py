"""The processes' log handler: a log that cannot be written (disk full, file size limit, a
log file on a read-only or vanished filesystem) never stops a process, and is reported.

The standard :class:`logging.StreamHandler` prints a traceback per failed record to stderr,
which is usually the same full file. :class:`ResilientStreamHandler` counts the failure in
``driftline_log_write_errors_total`` instead, and its first record written after a failure
streak says how many records were lost and why:

>>> import io, logging
>>> class Full(io.StringIO):
...     full = True
...     def write(self, text: str) -> int:
...         if self.full:
...             raise OSError(28, "No space left on device")
...         return super().write(text)
>>> stream = Full()
>>> handler = ResilientStreamHandler(stream)
>>> log = logging.getLogger("doctest.logs")
>>> log.addHandler(handler); log.propagate = False
>>> log.warning("lost"); log.warning("lost too")
>>> stream.full = False
>>> log.warning("back")
>>> print(stream.getvalue().strip())
2 log records could not be written ([Errno 28] No space left on device)
back
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from driftline.sinks import prometheus as metrics

__all__ = ["ResilientStreamHandler"]


class ResilientStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that counts the records it could not write (see the module)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.lost = 0
        self.last_error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.lost:
            try:
                self.stream.write(
                    f"{self.lost} log records could not be written ({self.last_error})"
                    f"{self.terminator}"
                )
            except Exception as exc:
                self._failed(exc)
                return
            self.lost, self.last_error = 0, None
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self._failed(sys.exc_info()[1])

    def _failed(self, exc: BaseException | None) -> None:
        self.lost += 1
        self.last_error = exc
        metrics.LOG_WRITE_ERRORS.inc()
