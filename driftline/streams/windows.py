"""Event-time tumbling windows: where records are assigned to windows and where windows close.

Two stages, both pure state machines (no Kafka here, the clock is passed in), both serialisable
to JSON for the checkpoint topic:

1. `PartitionWindows` (one per source partition of the predictions topic): assigns each record
   to the window `[floor(t / size) * size, + size)` of its event time, updates that window's
   partial `WindowSketch`, and tracks the partition's watermark = max event time - allowed
   lateness. A window whose end is at or below the watermark is closed: its partial sketch is
   handed on (to the repartition topic, keyed by model). A record whose window is already closed
   is late: counted, not added.
2. `ModelWindows` (one per model, wherever the repartition topic's partition for that model is
   consumed): collects the partial sketches of every source partition and closes a window when
   the watermark of every source partition that is not idle has passed its end. A source
   partition that has not reported yet holds windows open. Idleness is declared by the source
   (stage 1: no record for `idle_timeout` seconds of wall-clock time); an idle partition first
   advances its watermark to the highest one of its worker, which closes and hands on its own
   open windows, so declaring idleness loses nothing. The partials of one window are merged in
   source-partition order, so one worker and several workers give the same result.

Replays (at-least-once delivery after a crash) are harmless: stage 1 skips offsets at or below
the last one it applied; stage 2 replaces a partial by source (idempotent) and ignores partials
of windows it already closed.

Longer than ~400 lines: the two window stages (`PartitionWindows`, `ModelWindows`) and their
checkpoint forms are read together (a partial leaves one and enters the other).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.streams.outcomes import ModelOutcomes

if TYPE_CHECKING:
    from driftline.config import WindowConfig

__all__ = [
    "ClosedWindow",
    "ModelWindows",
    "PartitionWindows",
    "WindowSizes",
    "concat_batches",
    "window_starts",
]

ProfileLookup = Callable[[str, str], ReferenceProfile | None]
MAX_CLOSED_REMEMBERED = 512
# Rows of a window kept as columns before its sketch is updated: a sketch update costs ~10 numpy
# calls per feature whatever the number of rows, and with many models a batch brings only a few
# rows per (partition, model, window). Buffered rows are applied before the window closes and
# before every checkpoint, so nothing else can tell the difference.
FLUSH_ROWS = 1024


def window_starts(
    event_time: np.ndarray[Any, np.dtype[np.float64]], size: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Start of the tumbling window of each event time (vectorised).

    >>> window_starts(np.array([0.0, 59.9, 60.0, 125.0]), 60.0).tolist()
    [0.0, 0.0, 60.0, 120.0]
    """
    return np.floor(event_time / size) * size


@dataclass(frozen=True)
class WindowSizes:
    """The window size of each model, in seconds: its own if configured, else `default`. The
    one place that decides it, for the data windows and for the label join; built once from
    `windows.size_seconds` and `windows.model_sizes`.

    >>> sizes = WindowSizes(300.0, {"credit": 3600.0})
    >>> sizes.for_model("credit"), sizes.for_model("fraud")
    (3600.0, 300.0)
    >>> WindowSizes.of(60.0) == WindowSizes(60.0)
    True
    """

    default: float
    per_model: Mapping[str, float] = field(default_factory=dict)

    def for_model(self, model: str) -> float:
        return self.per_model.get(model, self.default)

    @classmethod
    def of(cls, sizes: WindowSizes | float) -> WindowSizes:
        """`sizes` itself, or one size for every model."""
        return sizes if isinstance(sizes, WindowSizes) else cls(float(sizes))

    @classmethod
    def from_config(cls, config: WindowConfig) -> WindowSizes:
        return cls(
            float(config.size_seconds),
            {model: float(size) for model, size in config.model_sizes.items()},
        )


def _key(model_version: str, window_start: float) -> str:
    return f"{model_version}@{window_start:.3f}"


def _bounds(sketch: Mapping[str, Any]) -> tuple[float, float]:
    return float(sketch["window_start"]), float(sketch["window_end"])


def _pending_sketch(encoded: bytes) -> WindowSketch:
    """The sketch of a pending partial kept as received ({"sketch": ...}, `ModelWindows`)."""
    return WindowSketch.from_dict(orjson.loads(encoded)["sketch"])


@dataclass
class PartitionWindows:
    """Open windows of one source partition, for every model seen on it (stage 1)."""

    partition: int
    size: InitVar[WindowSizes | float]  # a number: the same size for every model
    lateness: float
    max_event_time: float = -math.inf
    last_offset: int = -1
    open: dict[tuple[str, str, float], WindowSketch] = field(default_factory=dict)
    late_records: int = 0
    unknown_records: int = 0  # records of model versions without a reference profile
    # rows accepted into open windows, not yet in their sketches (see FLUSH_ROWS)
    buffered: dict[tuple[str, str, float], list[RecordBatch]] = field(
        default_factory=dict, repr=False
    )

    sizes: WindowSizes = field(init=False)

    def __post_init__(self, size: WindowSizes | float) -> None:
        self.sizes = WindowSizes.of(size)

    @property
    def watermark(self) -> float:
        return self.max_event_time - self.lateness

    def add(
        self,
        model: str,
        model_version: str,
        batch: RecordBatch,
        profile: ReferenceProfile,
    ) -> None:
        """Add one model version's records (in offset order) to their windows."""
        size = self.sizes.for_model(model)
        starts = window_starts(batch.event_time, size)
        for start in np.unique(starts[np.isfinite(starts)]).tolist():
            mask = starts == start
            if start + size <= self.watermark:
                self.late_records += int(mask.sum())
                continue
            key = (model, model_version, start)
            if key not in self.open:
                self.open[key] = WindowSketch.empty(
                    profile, start, start + size, seed=self.partition
                )
            pieces = self.buffered.setdefault(key, [])
            pieces.append(batch if len(starts) == 1 or mask.all() else batch.take(mask))
            if sum(len(piece) for piece in pieces) >= FLUSH_ROWS:
                self._flush(key)

    def _flush(self, key: tuple[str, str, float]) -> None:
        pieces = self.buffered.pop(key, None)
        if pieces:
            self.open[key].update(pieces[0] if len(pieces) == 1 else concat_batches(pieces))

    def flush(self) -> None:
        """Apply every buffered row to its window's sketch."""
        for key in list(self.buffered):
            self._flush(key)

    def advance(self, max_event_time: float, last_offset: int) -> None:
        """Move the watermark after a batch (never backwards) and remember the last offset."""
        if math.isfinite(max_event_time):
            self.max_event_time = max(self.max_event_time, max_event_time)
        self.last_offset = max(self.last_offset, last_offset)

    def mark_idle(self, watermark: float) -> None:
        """No records for a while: let the watermark catch up with `watermark` (the worker's
        highest), so that this partition's open windows up to there close now."""
        if math.isfinite(watermark):
            self.max_event_time = max(self.max_event_time, watermark + self.lateness)

    def close_ready(self) -> list[WindowSketch]:
        """Pop the windows whose end the watermark has passed, oldest first."""
        ready = sorted(
            (key for key, sketch in self.open.items() if sketch.window_end <= self.watermark),
            key=lambda k: (k[2], k[0], k[1]),
        )
        for key in ready:
            self._flush(key)
        return [self.open.pop(key) for key in ready]

    def to_dict(
        self, sketch_dict: Callable[[WindowSketch], dict[str, Any]] = WindowSketch.to_dict
    ) -> dict[str, Any]:
        """JSON-compatible state, buffered rows applied first; ``sketch_dict`` writes each open
        window (a checkpoint's leaves the reservoir to segments: streams/segments.py)."""
        self.flush()
        return {
            "partition": self.partition,
            "size": self.sizes.default,
            "model_sizes": dict(self.sizes.per_model),
            "lateness": self.lateness,
            "max_event_time": None
            if not math.isfinite(self.max_event_time)
            else self.max_event_time,
            "last_offset": self.last_offset,
            "late_records": self.late_records,
            "unknown_records": self.unknown_records,
            "open": [sketch_dict(sketch) for sketch in self.open.values()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartitionWindows:
        state = cls(
            partition=int(d["partition"]),
            size=WindowSizes(
                float(d["size"]),
                {str(k): float(v) for k, v in d.get("model_sizes", {}).items()},
            ),
            lateness=float(d["lateness"]),
            max_event_time=-math.inf if d["max_event_time"] is None else float(d["max_event_time"]),
            last_offset=int(d["last_offset"]),
            late_records=int(d["late_records"]),
            unknown_records=int(d.get("unknown_records", 0)),
        )
        for raw in d["open"]:
            sketch = WindowSketch.from_dict(raw)
            state.open[(sketch.model, sketch.model_version, sketch.window_start)] = sketch
        return state


def concat_batches(pieces: list[RecordBatch]) -> RecordBatch:
    """One batch of the rows of several (same schema, as built for one model version).

    >>> a = RecordBatch({"x": np.array([1.0])}, {}, np.array([0.0]), np.array(["0"], dtype=object))
    >>> b = RecordBatch({"x": np.array([2.0])}, {}, np.array([1.0]), np.array(["1"], dtype=object),
    ...                 score=np.array([0.5]))
    >>> both = concat_batches([a, b])
    >>> both.numeric["x"].tolist(), both.score.tolist()
    ([1.0, 2.0], [nan, 0.5])
    >>> c = RecordBatch({"x": np.array([3.0])}, {}, np.array([2.0]), np.array(["0"], dtype=object),
    ...                 absent={"y": np.array([True])})
    >>> concat_batches([a, c]).absent["y"].tolist()  # every key that `a` lacked not: False
    [False, True]
    """

    def cat(columns: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        return np.concatenate(columns)

    def missing(n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.full(n, np.nan)

    first = pieces[0]
    score = None
    if any(p.score is not None for p in pieces):
        score = cat([missing(len(p)) if p.score is None else p.score for p in pieces])
    attributions = None
    names = sorted({k for p in pieces for k in (p.attributions or {})})
    if names:
        attributions = {
            k: cat([(p.attributions or {}).get(k, missing(len(p))) for p in pieces]) for k in names
        }

    def masks(field: str) -> dict[str, np.ndarray[Any, Any]] | None:
        # absent/extra key masks: a piece that does not name a key had it as expected (False)
        names = sorted({k for p in pieces for k in (getattr(p, field) or {})})
        if not names:
            return None
        return {
            k: cat([(getattr(p, field) or {}).get(k, np.zeros(len(p), dtype=bool)) for p in pieces])
            for k in names
        }

    probabilities = None
    classes = sorted({k for p in pieces for k in (p.probabilities or {})})
    if classes:
        probabilities = {
            k: cat([(p.probabilities or {}).get(k, missing(len(p))) for p in pieces])
            for k in classes
        }
    keys = [p.record_keys for p in pieces if p.record_keys is not None]
    return RecordBatch(
        numeric={k: cat([p.numeric[k] for p in pieces]) for k in first.numeric},
        categorical={k: cat([p.categorical[k] for p in pieces]) for k in first.categorical},
        event_time=cat([p.event_time for p in pieces]),
        prediction=cat([p.prediction for p in pieces]),
        score=score,
        latency_seconds=cat([p.latency_seconds for p in pieces]),
        error=cat([p.error for p in pieces]),
        attributions=attributions,
        record_keys=cat(keys) if len(keys) == len(pieces) else None,
        absent=masks("absent"),
        extra=masks("extra"),
        probabilities=probabilities,
    )


@dataclass(frozen=True)
class ClosedWindow:
    """A window of one model version, merged over every source partition that reported."""

    sketch: WindowSketch
    sources: tuple[int, ...]


@dataclass
class ModelWindows:
    """Partial sketches of one model from every source partition (stage 2)."""

    model: str
    n_sources: int
    source_watermarks: dict[int, float] = field(default_factory=dict)
    idle_sources: set[int] = field(default_factory=set)
    # window -> source -> the partial as received: the JSON of an object whose "sketch" is the
    # partial sketch (the partials message itself), parsed when the window closes and written
    # into the checkpoint unchanged (`to_json`), never re-serialised
    pending: dict[str, dict[int, bytes]] = field(default_factory=dict)
    pending_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # start, end
    closed: list[str] = field(default_factory=list)  # recent closed keys, oldest first
    late_partials: int = 0
    carry: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> too-small window
    performance_pending: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # closed data window -> (records, contributing sources), until its performance closes
    window_records: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    outcomes: ModelOutcomes | None = None  # the concept-drift stage (outcomes.py), once used
    # performance windows with a provisional partial not yet published, and (not checkpointed:
    # at worst one more provisional after a restart) when each was last published
    performance_changed: set[str] = field(default_factory=set)
    provisional_at: dict[str, float] = field(default_factory=dict)
    performance_alerted: list[str] = field(default_factory=list)  # one performance_drop each

    def outcome_state(self) -> ModelOutcomes:
        if self.outcomes is None:
            self.outcomes = ModelOutcomes(self.n_sources)
        return self.outcomes

    def add_watermark(self, source: int, watermark: float, idle: bool = False) -> None:
        if math.isfinite(watermark):
            self.source_watermarks[source] = max(
                self.source_watermarks.get(source, -math.inf), watermark
            )
        else:
            self.source_watermarks.setdefault(source, -math.inf)
        if idle:
            self.idle_sources.add(source)
        else:
            self.idle_sources.discard(source)

    def add_partial(
        self, source: int, sketch: Mapping[str, Any], encoded: bytes | None = None
    ) -> bool:
        """Keep a source's partial sketch of a window; False if that window is already closed.
        `encoded`: the JSON of an object whose "sketch" is `sketch` (the partials message it
        was parsed from), kept instead of the parsed sketch."""
        key = _key(str(sketch["model_version"]), float(sketch["window_start"]))
        if key in self.closed:
            self.late_partials += 1
            return False
        if encoded is None:
            encoded = orjson.dumps({"sketch": sketch})
        self.pending.setdefault(key, {})[source] = encoded  # replace: replays are idempotent
        self.pending_bounds[key] = _bounds(sketch)
        return True

    def add_performance(self, source: int, partial: Mapping[str, Any], final: bool = True) -> None:
        """A source's realised-performance partial of a window, provisional or final (replace:
        idempotent; a provisional one never replaces a final one, so a replay cannot undo it)."""
        key = _key(str(partial["model_version"]), float(partial["window_start"]))
        if key in self.closed and key not in self.window_records:
            return  # a replay: this window's performance is already published
        parts = self.performance_pending.setdefault(key, {})
        if not final and source in parts and parts[source].get("final", True):
            return
        parts[source] = {**partial, "final": final}
        self.performance_changed.add(key)

    def close_performance_ready(self) -> list[tuple[dict[int, dict[str, Any]], int]]:
        """(partials by source, records in the data window) of the performance windows whose
        every contributing source (those of the closed data window) has handed on its final
        partial (a partial checkpointed before provisional ones existed is final)."""
        ready = []
        for key, parts in self.performance_pending.items():
            window = self.window_records.get(key)
            if window is not None and all(
                s in parts and parts[s].get("final", True) for s in window[1]
            ):
                ready.append((float(next(iter(parts.values()))["window_start"]), key))
        closed = []
        for _, key in sorted(ready):
            n_records, _ = self.window_records.pop(key)
            closed.append((self.performance_pending.pop(key), n_records))
            self.performance_changed.discard(key)
            self.provisional_at.pop(key, None)
        return closed

    def provisional_performance_ready(
        self, now: float, interval: float
    ) -> list[tuple[dict[int, dict[str, Any]], int]]:
        """(partials by source so far, records in the data window) of the performance windows
        whose data window is closed and whose partials changed since they were last published,
        at most once per `interval` seconds (of `now`'s clock) each.

        >>> state = ModelWindows("m", n_sources=1)
        >>> state.window_records["1@0.000"] = (10, [0])
        >>> part = {"model_version": "1", "window_start": 0.0}
        >>> state.add_performance(0, part, final=False)
        >>> [n for _, n in state.provisional_performance_ready(100.0, 10.0)]
        [10]
        >>> state.add_performance(0, part, final=False)
        >>> state.provisional_performance_ready(105.0, 10.0)  # 5 s later: not yet
        []
        >>> [n for _, n in state.provisional_performance_ready(110.0, 10.0)]
        [10]
        """
        ready = []
        for key in self.performance_changed:
            window = self.window_records.get(key)
            if window is None or key not in self.performance_pending:
                continue  # the data window is still open here (or the window is gone)
            if now - self.provisional_at.get(key, -math.inf) < interval:
                continue
            parts = self.performance_pending[key]
            ready.append((float(next(iter(parts.values()))["window_start"]), key))
        published = []
        for _, key in sorted(ready):
            self.performance_changed.discard(key)
            self.provisional_at[key] = now
            published.append((dict(self.performance_pending[key]), self.window_records[key][0]))
        # bounded: windows forgotten (see `close_ready`) leave no trace
        self.performance_changed.intersection_update(self.performance_pending)
        return published

    def alert_performance_once(self, model_version: str, window_start: float) -> bool:
        """True the first time a performance_drop is raised for a window (provisional or
        final: one event per window)."""
        key = _key(model_version, window_start)
        if key in self.performance_alerted:
            return False
        self.performance_alerted.append(key)
        del self.performance_alerted[:-MAX_CLOSED_REMEMBERED]
        return True

    def effective_watermark(self) -> float:
        """The lowest watermark among the sources that are not idle (all idle: the highest).

        >>> state = ModelWindows("m", n_sources=2)
        >>> state.add_watermark(0, 100.0)
        >>> state.effective_watermark()  # source 1 has not reported: it holds windows open
        -inf
        >>> state.add_watermark(1, 50.0)
        >>> state.effective_watermark()
        50.0
        >>> state.add_watermark(1, 50.0, idle=True)
        >>> state.effective_watermark()
        100.0
        """
        if len(self.source_watermarks) < self.n_sources:
            return -math.inf
        active = [w for s, w in self.source_watermarks.items() if s not in self.idle_sources]
        if active:
            return min(active)
        return max(self.source_watermarks.values(), default=-math.inf)

    def close_ready(self) -> list[ClosedWindow]:
        watermark = self.effective_watermark()
        ready = []
        for key in self.pending:
            start, end = self.pending_bounds[key]
            if end <= watermark:
                ready.append((start, key))
        closed = []
        for _, key in sorted(ready):
            partials = self.pending.pop(key)
            del self.pending_bounds[key]
            sources = tuple(sorted(partials))
            sketch = _pending_sketch(partials[sources[0]])
            for source in sources[1:]:
                sketch = sketch.merge(_pending_sketch(partials[source]))
            closed.append(ClosedWindow(sketch, sources))
            self.closed.append(key)
            self.window_records[key] = (sketch.n_records, list(sources))
        del self.closed[:-MAX_CLOSED_REMEMBERED]
        for stale in list(self.window_records)[:-MAX_CLOSED_REMEMBERED]:
            del self.window_records[stale]
        return closed

    def to_json(self) -> bytes:
        """`to_dict` as JSON, the pending partials written as they were received (not parsed
        and serialised again: they are most of a stage-2 checkpoint)."""
        return orjson.dumps(self.to_dict(pending=lambda raw: orjson.Fragment(raw)))

    def to_dict(self, pending: Callable[[bytes], Any] | None = None) -> dict[str, Any]:
        """The state as JSON-able values; `pending` maps each pending partial's received JSON
        to what is written (default: the parsed object, {"sketch": ...})."""
        if pending is None:
            pending = orjson.loads
        return {
            "model": self.model,
            "n_sources": self.n_sources,
            "source_watermarks": {
                str(k): v if math.isfinite(v) else None for k, v in self.source_watermarks.items()
            },
            "idle_sources": sorted(self.idle_sources),
            "pending": {
                key: {str(s): pending(p) for s, p in parts.items()}
                for key, parts in self.pending.items()
            },
            "closed": list(self.closed),
            "late_partials": self.late_partials,
            "carry": self.carry,
            "performance_pending": {
                key: {str(s): p for s, p in parts.items()}
                for key, parts in self.performance_pending.items()
            },
            "window_records": {k: [n, s] for k, (n, s) in self.window_records.items()},
            "performance_changed": sorted(self.performance_changed),
            "performance_alerted": list(self.performance_alerted),
            "outcomes": None if self.outcomes is None else self.outcomes.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelWindows:
        # a pending partial is {"sketch": ...} (a partials message); in checkpoints of older
        # versions, the sketch itself
        pending = {
            key: {int(s): p if "sketch" in p else {"sketch": p} for s, p in parts.items()}
            for key, parts in d["pending"].items()
        }
        return cls(
            model=str(d["model"]),
            n_sources=int(d["n_sources"]),
            source_watermarks={
                int(k): -math.inf if v is None else float(v)
                for k, v in d["source_watermarks"].items()
            },
            idle_sources={int(s) for s in d["idle_sources"]},
            pending={
                key: {s: orjson.dumps(p) for s, p in parts.items()}
                for key, parts in pending.items()
            },
            pending_bounds={
                key: _bounds(next(iter(parts.values()))["sketch"])
                for key, parts in pending.items()
                if parts
            },
            closed=[str(k) for k in d["closed"]],
            late_partials=int(d["late_partials"]),
            carry=dict(d.get("carry", {})),
            performance_pending={
                key: {int(s): p for s, p in parts.items()}
                for key, parts in d.get("performance_pending", {}).items()
            },
            window_records={
                k: (int(v[0]), [int(s) for s in v[1]])
                for k, v in d.get("window_records", {}).items()
            },
            outcomes=None if d.get("outcomes") is None else ModelOutcomes.from_dict(d["outcomes"]),
            performance_changed={str(k) for k in d.get("performance_changed", [])},
            performance_alerted=[str(k) for k in d.get("performance_alerted", [])],
        )
