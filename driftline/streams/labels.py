"""Label join of one source partition: where a label meets its prediction (pure state, no I/O).

Predictions and labels are co-partitioned (same key, same partition count), so a label is
joined on the partition that saw its prediction. Per partition:

- `pending`: prediction id -> what performance needs (model, version, window, prediction,
  score, event time), kept as compact columns (`joinindex.PendingIndex`); bounded by
  `max_pending` and `max_pending_bytes` (oldest evicted first, counted) and by a time-to-live
  in event time (expired entries are counted as unlabelled);
- `orphans`: labels that arrived before their prediction was processed, bounded the same way;
- per (model, version, window): a mergeable `PerformancePartial` (confusion counts and score
  histograms by true class, for AUC) of the joined predictions of that window;
- the joined outcomes of the batch (id, order time, event time, label, prediction, score),
  handed on to stage 2, where the concept-drift detectors of each model version see one
  ordered stream whatever the number of partitions (`outcomes.py`).

A performance partial exists for every data window the partition had (empty if no label came).
While its labels come in, it is handed on *provisionally* (`provisional_ready`: the windows
whose partial changed since the last call, once the data window is closed; the caller bounds
how often it asks), and it is handed on *finally* exactly once, when the partition's *label* watermark (latest label time seen)
passes the window end plus the label horizon, or, if labels stop coming, when the prediction
watermark passes it plus the time-to-live. A label for a window already handed on is late:
counted, not joined. Stage 2 closes a performance window once every partition that contributed
to its data window has handed on its partial.

Longer than ~400 lines: the join, its bounds and its checkpoint are one piece of state; half
of the length is docstrings and doctests (the index itself is `joinindex.py`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import numpy as np

from driftline.detectors.normalise import class_texts
from driftline.detectors.performance import ConfusionCounts
from driftline.detectors.profile import SCORE_BINS, score_bin_index
from driftline.streams.joinindex import (
    ENTRY_OVERHEAD_BYTES,
    Entries,
    PendingEntry,
    PendingIndex,
    entry_bytes,
)
from driftline.streams.windows import WindowSizes, window_starts

__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "EarlyLabel",
    "Outcome",
    "PartitionLabels",
    "PendingEntry",
    "PerformancePartial",
    "entry_bytes",
]

# one joined prediction: model, version, prediction id, order time (max of the prediction's
# and the label's time), prediction event time, label, prediction, score (NaN: none)
Outcome = tuple[str, str, str, float, float, Any, Any, float]


class EarlyLabel(NamedTuple):
    """A label that came before its prediction (an orphan, waiting)."""

    label: Any
    time: float


@dataclass
class PerformancePartial:
    """Realised performance of one window's labelled predictions; merge = add."""

    model: str
    model_version: str
    window_start: float
    window_end: float
    confusion: ConfusionCounts = field(default_factory=ConfusionCounts)
    positive_scores: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(SCORE_BINS, np.int64)
    )
    negative_scores: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(SCORE_BINS, np.int64)
    )

    def merge(self, other: PerformancePartial) -> PerformancePartial:
        return PerformancePartial(
            self.model,
            self.model_version,
            self.window_start,
            self.window_end,
            self.confusion.merge(other.confusion),
            self.positive_scores + other.positive_scores,
            self.negative_scores + other.negative_scores,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "confusion": self.confusion.to_dict(),
            "positive_scores": self.positive_scores.tolist(),
            "negative_scores": self.negative_scores.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerformancePartial:
        return cls(
            str(d["model"]),
            str(d["model_version"]),
            float(d["window_start"]),
            float(d["window_end"]),
            ConfusionCounts.from_dict(d["confusion"]),
            np.asarray(d["positive_scores"], dtype=np.int64),
            np.asarray(d["negative_scores"], dtype=np.int64),
        )


@dataclass
class PartitionLabels:
    partition: int
    window_size: InitVar[WindowSizes | float]  # a number: the same size for every model
    horizon: float
    ttl: float
    max_pending: int
    max_pending_bytes: int = 256 * 1024 * 1024  # pending + orphans, estimated (`entry_bytes`)
    max_checkpointed: int = 100_000  # newest pending entries (and orphans) in a checkpoint
    pending: PendingIndex = field(default_factory=PendingIndex)
    orphans: OrderedDict[str, EarlyLabel] = field(default_factory=OrderedDict)
    orphan_bytes: int = 0
    windows: dict[tuple[str, str, float], PerformancePartial] = field(default_factory=dict)
    joined: int = 0
    evicted: int = 0
    expired: int = 0
    unmatched_labels: int = 0
    last_label_offset: int = -1
    label_watermark: float = -math.inf
    late_labels: int = 0
    closed_before: dict[tuple[str, str], float] = field(
        default_factory=dict
    )  # handed-on windows end here
    # windows whose partial changed since the last provisional hand-on (not checkpointed: after
    # a restart the next label or the final hand-on brings stage 2 up to date)
    changed: set[tuple[str, str, float]] = field(default_factory=set)
    sizes: WindowSizes = field(init=False)

    def __post_init__(self, window_size: WindowSizes | float) -> None:
        self.sizes = WindowSizes.of(window_size)

    @property
    def pending_bytes(self) -> int:
        """Estimated bytes of the join index and the early labels (`entry_bytes`)."""
        return self.pending.nbytes + self.orphan_bytes

    # -- predictions -------------------------------------------------------------------------

    def add_predictions(self, records: list[dict[str, Any]]) -> list[Outcome]:
        """Index prediction records (any models) for the join; see `add_columns`."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault((record["model"], str(record["model_version"])), []).append(record)
        outcomes: list[Outcome] = []
        for (model, version), rows in groups.items():
            outcomes += self.add_columns(
                model,
                version,
                [str(r["prediction_id"]) for r in rows],
                np.array([r["timestamp"] for r in rows], dtype=np.float64),
                [r.get("prediction") for r in rows],
                np.array([r.get("score", math.nan) for r in rows], dtype=np.float64),
            )
        return outcomes

    def add_columns(
        self,
        model: str,
        version: str,
        prediction_ids: list[str],
        event_time: np.ndarray[Any, np.dtype[np.float64]],
        predictions: list[Any],
        scores: np.ndarray[Any, np.dtype[np.float64]] | None,
    ) -> list[Outcome]:
        """Index one model version's predictions (in offset order) for the join, from the
        columns of its batch; a prediction whose label came first joins now. A repeated id
        replaces its entry."""
        code = self.pending.code_of(model, version)
        n = len(prediction_ids)
        starts = window_starts(event_time, self.sizes.for_model(model))  # the one window rule
        score = np.full(n, math.nan) if scores is None else np.asarray(scores, dtype=np.float64)
        time = np.asarray(event_time, dtype=np.float64)
        orphans = self.orphans
        if not orphans or orphans.keys().isdisjoint(prediction_ids):
            self.pending.append(code, prediction_ids, starts, predictions, score, time)
            self._evict()
            return []
        code_column = np.full(n, code, dtype=np.int32)
        batch = Entries(prediction_ids, code_column, starts, predictions, score, time)
        # labels that came first: joined now, in offset order; the rest waits
        early, labels, times, waiting = [], [], [], []
        for row, pid in enumerate(prediction_ids):
            orphan = orphans.pop(pid, None)
            if orphan is None:
                waiting.append(row)
                continue
            self.orphan_bytes -= entry_bytes(pid, orphan.label)
            early.append(row)
            labels.append(orphan.label)
            times.append(orphan.time)
        self.pending.append(code, *_fields(batch.take(waiting)))
        self._evict()
        return self._join(batch.take(early), labels, times)

    def _evict(self) -> None:
        """Oldest first, predictions before early labels, until both bounds hold (count per
        index, bytes for the two together); evicted predictions count as `evicted`, evicted
        labels as `unmatched_labels`."""
        self.evicted += self.pending.evict(
            self.max_pending, self.max_pending_bytes - self.orphan_bytes
        )
        orphans = self.orphans
        while orphans and (
            len(orphans) > self.max_pending or self.pending_bytes > self.max_pending_bytes
        ):
            pid, (label, _) = orphans.popitem(last=False)
            self.orphan_bytes -= entry_bytes(pid, label)
            self.unmatched_labels += 1

    # -- labels --------------------------------------------------------------------------------

    def add_labels(self, labels: list[dict[str, Any]]) -> list[Outcome]:
        """Join labels (in arrival order) to pending predictions; keep the rest as orphans."""
        slots: list[int] = []
        joined: list[Any] = []
        times: list[float] = []
        pop_slot, orphans = self.pending.pop_slot, self.orphans
        watermark = self.label_watermark
        for label in labels:
            pid = str(label["prediction_id"])
            t = float(label["timestamp"])
            if t > watermark:
                watermark = t
            slot = pop_slot(pid)
            if slot is None:
                old = orphans.pop(pid, None)
                if old is not None:
                    self.orphan_bytes -= entry_bytes(pid, old.label)
                orphans[pid] = EarlyLabel(label["label"], t)
                self.orphan_bytes += entry_bytes(pid, label["label"])
                continue
            slots.append(slot)
            joined.append(label["label"])
            times.append(t)
        self.label_watermark = watermark
        entries = self.pending.take(slots)
        self._evict()
        return self._join(entries, joined, times)

    def expect_window(self, model: str, model_version: str, window_start: float) -> None:
        """A data window of this partition closed: its performance partial will be handed on."""
        key = (model, model_version, window_start)
        if key not in self.windows:
            self.windows[key] = PerformancePartial(
                model, model_version, window_start, window_start + self.sizes.for_model(model)
            )
        self.changed.add(key)  # published provisionally as soon as the data window closes

    def provisional_ready(self, open_windows: Any) -> list[PerformancePartial]:
        """Partials of closed data windows (not in `open_windows`) changed since the last call,
        to be handed on as provisional (the final hand-on is `close_ready`'s). A partial is
        sent whole each time: stage 2 replaces the previous one (idempotent).

        >>> labels = PartitionLabels(0, 60.0, 100.0, 3600.0, 10)
        >>> labels.expect_window("m", "1", 0.0)
        >>> [p.window_start for p in labels.provisional_ready(set())], labels.provisional_ready(set())
        ([0.0], [])
        """
        ready = sorted(k for k in self.changed if k not in open_windows and k in self.windows)
        self.changed.difference_update(ready)
        self.changed.intersection_update(self.windows)  # forget windows handed on finally
        return [self.windows[k] for k in ready]

    def _closed(self, model: str, window_start: float, prediction_watermark: float) -> bool:
        end = window_start + self.sizes.for_model(model)
        return (
            end + self.horizon <= self.label_watermark
            or end + self.horizon + self.ttl <= prediction_watermark
        )

    def outcome_watermark(self, prediction_watermark: float, lateness: float) -> float:
        """No outcome ordered earlier than this will come from this partition (see
        `outcomes.py`): labels come in label-time order up to `lateness`, and a label more than
        the horizon behind the predictions is late anyway. With no prediction pending, every
        outcome still to come joins a prediction not yet seen, whose event time is at least the
        prediction watermark (the bound the windows close on): a quiet partition (or one caught
        up by `mark_idle`) with nothing waiting for a label promises that, and so never holds
        stage 2 back by the horizon. A pending prediction keeps the label-based bound.

        >>> labels = PartitionLabels(0, 60.0, 100.0, 3600.0, 10)
        >>> labels.outcome_watermark(500.0, 5.0)  # nothing pending: the prediction watermark
        500.0
        >>> _ = labels.add_columns("m", "1", ["a"], np.array([450.0]), ["1"], None)
        >>> labels.outcome_watermark(500.0, 5.0)  # "a" may be labelled later: the horizon
        400.0
        >>> labels.label_watermark = 480.0
        >>> labels.outcome_watermark(500.0, 5.0)
        475.0
        """
        if not self.pending:
            return prediction_watermark
        return min(
            max(self.label_watermark - lateness, prediction_watermark - self.horizon),
            prediction_watermark,
        )

    def _join(self, entries: Entries, labels: list[Any], times: list[float]) -> list[Outcome]:
        """Add joined predictions (`entries`, with their `labels` and label `times`) to their
        windows' partials; their outcomes, grouped by model version, in order within each."""
        if not len(entries):
            return []
        self.joined += len(entries)
        codes = entries.code
        outcomes: list[Outcome] = []
        for code in dict.fromkeys(codes.tolist()):
            model, version = self.pending.pairs[code]
            rows = None if (codes == code).all() else np.flatnonzero(codes == code).tolist()
            part = entries if rows is None else entries.take(rows)
            raw = labels if rows is None else [labels[i] for i in rows]
            label_times = times if rows is None else [times[i] for i in rows]
            self._update_partials(model, version, part, raw)
            outcomes += [
                (model, version, pid, max(t, lt), t, label, prediction, score)
                for pid, t, lt, label, prediction, score in zip(
                    part.ids,
                    part.time.tolist(),
                    label_times,
                    raw,
                    part.prediction,
                    part.score.tolist(),
                    strict=True,
                )
            ]
        return outcomes

    def _update_partials(self, model: str, version: str, part: Entries, raw: list[Any]) -> None:
        # one class rule for both sides (normalise.py): True, 1, "1", "true", 1.0 are "1"
        labels = np.array(class_texts(raw), dtype=object)
        predictions = np.array(class_texts(part.prediction), dtype=object)
        scores, starts = part.score, part.start
        for start in np.unique(starts).tolist():
            mask = starts == start
            key = (model, version, start)
            if start < self.closed_before.get((model, version), -math.inf):
                self.late_labels += int(mask.sum())
                continue
            partial = self.windows.get(key)
            if partial is None:
                partial = self.windows[key] = PerformancePartial(
                    model, version, start, start + self.sizes.for_model(model)
                )
            partial.confusion.update(labels[mask], predictions[mask])
            self.changed.add(key)
            finite = mask & np.isfinite(scores)
            positive = finite & (labels == "1")
            negative = finite & (labels != "1")
            partial.positive_scores += np.bincount(
                score_bin_index(scores[positive]), minlength=SCORE_BINS
            )
            partial.negative_scores += np.bincount(
                score_bin_index(scores[negative]), minlength=SCORE_BINS
            )

    # -- closing -------------------------------------------------------------------------------

    def close_ready(self, watermark: float, open_windows: Any) -> list[PerformancePartial]:
        """Performance partials whose label horizon has passed (and whose data window is closed:
        not in `open_windows`); expire old join entries. `watermark` is the prediction one."""
        ready = sorted(
            k for k in self.windows if k not in open_windows and self._closed(k[0], k[2], watermark)
        )
        closed = [self.windows.pop(k) for k in ready]
        self.changed.difference_update(ready)
        for model, version, start in ready:
            key = (model, version)
            self.closed_before[key] = max(
                self.closed_before.get(key, -math.inf), start + self.sizes.for_model(model)
            )
        limit = watermark - self.ttl
        self.expired += self.pending.expire(limit)
        while self.orphans:
            pid, (label, t) = next(iter(self.orphans.items()))
            if t >= limit:
                break
            del self.orphans[pid]
            self.orphan_bytes -= entry_bytes(pid, label)
            self.unmatched_labels += 1
        return closed

    # -- checkpoint ------------------------------------------------------------------------------

    def to_dict(self, pending: bool = True) -> dict[str, Any]:
        """JSON-compatible state, the join index included (column-wise: one list per field,
        model versions interned), so that a label arriving after a restart still joins the
        prediction it belongs to. With `pending=False` the join index is left out: a stage-1
        checkpoint stores it in segments (`segments.JoinSegments`) and restores it as
        `pending` (`segments.restore_join_segments`).

        >>> labels = PartitionLabels(0, 60.0, 10.0, 3600.0, 100)
        >>> _ = labels.add_predictions([{"prediction_id": "a", "model": "m", "model_version": 1,
        ...     "timestamp": 61.0, "prediction": 1, "score": 0.9}])
        >>> _ = labels.add_labels([{"prediction_id": "b", "label": 0, "timestamp": 70.0}])
        >>> again = PartitionLabels(0, 60.0, 10.0, 3600.0, 100)
        >>> again.restore(labels.to_dict())
        >>> list(again.pending.items()) == list(labels.pending.items())
        True
        >>> again.orphans == labels.orphans
        True
        """
        orphans = _newest(self.orphans, self.max_checkpointed)
        checkpointed = min(len(self.pending), self.max_checkpointed)
        return {
            "partition": self.partition,
            **({"pending": self.pending.to_columns(checkpointed)} if pending else {}),
            "orphans": {
                "ids": list(orphans),
                "label": [label for label, _ in orphans.values()],
                "time": [t for _, t in orphans.values()],
            },
            "not_checkpointed": [
                len(self.pending) - checkpointed,
                len(self.orphans) - len(orphans),
            ],
            "windows": [p.to_dict() for p in self.windows.values()],
            "counters": {
                "joined": self.joined,
                "evicted": self.evicted,
                "expired": self.expired,
                "unmatched_labels": self.unmatched_labels,
            },
            "last_label_offset": self.last_label_offset,
            "label_watermark": self.label_watermark
            if math.isfinite(self.label_watermark)
            else None,
            "late_labels": self.late_labels,
            "closed_before": [[m, v, t] for (m, v), t in self.closed_before.items()],
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        """State from `to_dict` (the same form since the join index was first checkpointed); a
        checkpoint written before that (no `pending`) restores everything else."""
        if "pending" in d:
            self.pending = PendingIndex()
            self.pending.restore_columns(d["pending"])
            orphans = d["orphans"]
            self.orphans = OrderedDict(
                zip(
                    map(str, orphans["ids"]),
                    map(EarlyLabel, orphans["label"], map(float, orphans["time"])),
                    strict=True,
                )
            )
            self.orphan_bytes = sum(entry_bytes(p, o.label) for p, o in self.orphans.items())
        for raw in d["windows"]:
            partial = PerformancePartial.from_dict(raw)
            self.windows[(partial.model, partial.model_version, partial.window_start)] = partial
        # "detectors" of a checkpoint written before concept drift moved to stage 2: dropped
        counters = d["counters"]
        self.joined, self.evicted = int(counters["joined"]), int(counters["evicted"])
        self.expired, self.unmatched_labels = (
            int(counters["expired"]),
            int(counters["unmatched_labels"]),
        )
        self.last_label_offset = int(d["last_label_offset"])
        watermark = d.get("label_watermark")
        self.label_watermark = -math.inf if watermark is None else float(watermark)
        self.late_labels = int(d.get("late_labels", 0))
        self.closed_before = {(str(m), str(v)): float(t) for m, v, t in d.get("closed_before", [])}
        # what did not fit in the checkpoint is gone: counted like an eviction
        lost_predictions, lost_labels = d.get("not_checkpointed", (0, 0))
        self.evicted += int(lost_predictions)
        self.unmatched_labels += int(lost_labels)
        self._evict()  # the bounds may be smaller now


def _fields(entries: Entries) -> tuple[Any, ...]:
    """`PendingIndex.append`'s arguments after the code."""
    return entries.ids, entries.start, entries.prediction, entries.score, entries.time


def _newest(entries: OrderedDict[str, EarlyLabel], limit: int) -> OrderedDict[str, EarlyLabel]:
    """The last `limit` entries (the newest), in order."""
    if len(entries) <= limit:
        return entries
    newest = list(islice(reversed(entries.items()), limit))
    return OrderedDict(reversed(newest))
