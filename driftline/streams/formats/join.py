"""The bounded join of two halves of one inference: requests waiting for their response and
responses waiting for their request, keyed by request id (used by `oip.py`).

Explicit and small: an ordered dict of waiting halves, bounded in count, bytes and age (oldest
dropped first, reported as an `unjoined` rejection), and JSON-serialisable so a caller can
checkpoint it with its offsets.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from driftline.streams.formats.base import RejectedRecord

__all__ = ["Half", "PendingHalves", "Waiting"]

Half = Literal["request", "response"]


@dataclass(slots=True)
class Waiting:
    half: Half
    body: dict[str, Any]
    time: float | None
    attributes: dict[str, str]
    size: int
    arrived: float


class PendingHalves:
    """Requests waiting for their response and responses waiting for their request.

    >>> join = PendingHalves(max_pending=1, max_pending_bytes=100, max_wait_seconds=60,
    ...                      clock=lambda: 0.0)
    >>> join.offer("a", Waiting("request", {}, None, {}, 10, 0.0))
    (None, [])
    >>> other, evicted = join.offer("b", Waiting("request", {}, None, {}, 10, 0.0))
    >>> other, [r.kind for r in evicted], len(join)
    (None, ['unjoined'], 1)
    """

    def __init__(
        self,
        max_pending: int,
        max_pending_bytes: int,
        max_wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_wait_seconds = max_wait_seconds
        self._clock = clock
        self._waiting: OrderedDict[str, Waiting] = OrderedDict()
        self.pending_bytes = 0
        self.evicted = 0  # counter, for a metric

    def __len__(self) -> int:
        return len(self._waiting)

    def to_dict(self) -> dict[str, Any]:
        """The waiting halves as JSON-ready data (ages, not clock readings), oldest first, so a
        caller can checkpoint the join with its offsets and `restore` it after a restart."""
        now = self._clock()
        return {
            "version": 1,
            "waiting": [
                {
                    "key": key,
                    "half": w.half,
                    "body": w.body,
                    "time": w.time,
                    "attributes": w.attributes,
                    "size": w.size,
                    "age": now - w.arrived,
                }
                for key, w in self._waiting.items()
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load what `to_dict` wrote (replacing the current halves); the bounds still apply.
        An unreadable state is ignored entry by entry, never raised: a join restarts empty.

        >>> join = PendingHalves(10, 1000, 60, clock=lambda: 5.0)
        >>> _ = join.offer("a", Waiting("request", {"inputs": []}, 1.0, {}, 10, 4.0))
        >>> again = PendingHalves(10, 1000, 60, clock=lambda: 100.0)
        >>> again.restore(join.to_dict())
        >>> len(again), again.to_dict()["waiting"][0]["age"]
        (1, 1.0)
        """
        self._waiting.clear()
        self.pending_bytes = 0
        now = self._clock()
        entries = state.get("waiting") if state.get("version") == 1 else None
        for entry in entries if type(entries) is list else []:
            try:
                half = Waiting(
                    entry["half"] if entry["half"] == "request" else "response",
                    dict(entry["body"]),
                    None if entry["time"] is None else float(entry["time"]),
                    {str(k): str(v) for k, v in entry["attributes"].items()},
                    int(entry["size"]),
                    now - float(entry["age"]),
                )
                key = str(entry["key"])
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            self._waiting[key] = half
            self.pending_bytes += half.size
        while len(self._waiting) > self.max_pending or self.pending_bytes > self.max_pending_bytes:
            self._evict("more than the bound of waiting halves")

    def offer(self, key: str, half: Waiting) -> tuple[Waiting | None, list[RejectedRecord]]:
        """Pair `half` with its waiting counterpart (returned), or park it."""
        evicted = self._expire(self._clock())
        other = self._waiting.get(key)
        if other is not None and other.half != half.half:
            del self._waiting[key]
            self.pending_bytes -= other.size
            return other, evicted
        if other is not None:  # the same half again (a redelivery): the latest wins
            del self._waiting[key]
            self.pending_bytes -= other.size
        self._waiting[key] = half
        self.pending_bytes += half.size
        while len(self._waiting) > self.max_pending or self.pending_bytes > self.max_pending_bytes:
            evicted.append(self._evict("more than the bound of waiting halves"))
        return None, evicted

    def _expire(self, now: float) -> list[RejectedRecord]:
        out = []
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if now - oldest.arrived <= self.max_wait_seconds:
                break
            out.append(self._evict(f"waited more than {self.max_wait_seconds:g} s"))
        return out

    def _evict(self, why: str) -> RejectedRecord:
        key, gone = self._waiting.popitem(last=False)
        self.pending_bytes -= gone.size
        self.evicted += 1
        missing = "response" if gone.half == "request" else "request"
        return RejectedRecord(
            "unjoined", f"inference {gone.half} {key!r} dropped without its {missing}: {why}", None
        )
