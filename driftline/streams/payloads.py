"""The internal messages of the partials topic, stage 1 -> stage 2: one module builds and parses
them (JSON, keyed by model), so neither stage reads raw keys of the other's dicts.

Every message says which source partition sent it, that partition's prediction watermark (None:
none yet, or not carried) and whether the partition is idle. Four kinds:

- ``partial``: a closed partial window sketch of the source (`WindowSketch.to_dict()`);
- ``performance``: a source's realised-performance partial of a window (`PerformancePartial`),
  provisional (``final: false``, labels still coming) or final (label horizon passed);
- ``watermark``: the watermarks alone (sent about once a second per source and model);
- ``outcomes``: joined predictions for the concept-drift stage (`outcomes.py`, columns).

``watermark`` and ``outcomes`` also carry the source's outcome watermark.

>>> message = PerformanceMessage(2, False, {"window_start": 0.0}, final=False)
>>> parse_message(message.encode()) == message
True
>>> parse_message(WatermarkMessage(0, None, True, 10.0).encode())
WatermarkMessage(source=0, watermark=None, idle=True, outcome_watermark=10.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "OutcomesMessage",
    "PartialMessage",
    "PartialsMessage",
    "PerformanceMessage",
    "WatermarkMessage",
    "parse_message",
]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class PartialMessage:
    """A source's closed partial window sketch."""

    source: int
    watermark: float | None
    idle: bool
    sketch: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "partial",
                "source": self.source,
                "watermark": _finite(self.watermark),
                "idle": self.idle,
                "sketch": self.sketch,
            }
        )


@dataclass(frozen=True)
class PerformanceMessage:
    """A source's realised-performance partial of one window (no watermark carried)."""

    source: int
    idle: bool
    partial: dict[str, Any]
    final: bool = True
    watermark: None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "performance",
                "source": self.source,
                "watermark": None,
                "idle": self.idle,
                "partial": self.partial,
                "final": self.final,
            }
        )


@dataclass(frozen=True)
class WatermarkMessage:
    """A source's watermarks: predictions and outcomes."""

    source: int
    watermark: float | None
    idle: bool
    outcome_watermark: float | None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "watermark",
                "source": self.source,
                "watermark": _finite(self.watermark),
                "idle": self.idle,
                "outcome_watermark": _finite(self.outcome_watermark),
            }
        )


@dataclass(frozen=True)
class OutcomesMessage:
    """A source's joined outcomes of one model (`outcomes.outcome_columns`)."""

    source: int
    watermark: float | None
    idle: bool
    outcome_watermark: float | None
    outcomes: dict[str, list[Any]]

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "outcomes",
                "source": self.source,
                "watermark": _finite(self.watermark),
                "idle": self.idle,
                "outcome_watermark": _finite(self.outcome_watermark),
                "outcomes": self.outcomes,
            }
        )


PartialsMessage = PartialMessage | PerformanceMessage | WatermarkMessage | OutcomesMessage


def parse_message(value: bytes | None) -> PartialsMessage:
    """A partials-topic message from its bytes (written by this module: a message of an older
    worker parses too, `performance` without ``final`` being final)."""
    d = orjson.loads(value or b"{}")
    kind = d["kind"]
    source, idle = int(d["source"]), bool(d.get("idle"))
    watermark = None if d.get("watermark") is None else float(d["watermark"])
    if kind == "partial":
        return PartialMessage(source, watermark, idle, d["sketch"])
    if kind == "performance":
        return PerformanceMessage(source, idle, d["partial"], bool(d.get("final", True)))
    mark = d.get("outcome_watermark")
    outcome_watermark = None if mark is None else float(mark)
    if kind == "watermark":
        return WatermarkMessage(source, watermark, idle, outcome_watermark)
    if kind == "outcomes":
        return OutcomesMessage(source, watermark, idle, outcome_watermark, d["outcomes"])
    raise ValueError(f"partials message of unknown kind {kind!r}")
