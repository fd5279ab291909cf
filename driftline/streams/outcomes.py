"""Stage 2 of concept drift: one ordered outcome stream per model version (pure state, no I/O).

Stage 1 (`labels.py`) joins a label to its prediction on the source partition that saw both and
hands the joined *outcome* on, on the partials topic keyed by model (payload kind
``"outcomes"``): prediction id, order time, prediction event time, label, prediction, score.
Here, per model (inside `windows.ModelWindows`), outcomes are buffered until every source
partition's *outcome watermark* has passed them, then fed to the model version's
`ConceptStage` (`detectors/concept/stage.py`) sorted by (order time, prediction id). So the detectors
see the same sequence whatever the number of partitions or workers, and a detection's index
(its position in that sequence) is the same after a restart or a rebalance.

Order time and watermark. An outcome exists once both its prediction (event time t) and its
label (label time L) exist: it is ordered at max(t, L). A source promises nothing earlier from
now on than min(max(label watermark - lateness, prediction watermark - horizon), prediction
watermark): labels arrive in label-time order up to `windows.allowed_lateness_seconds`, and a
label more than `labels.horizon_seconds` behind the predictions is late anyway (as for
performance windows). Ordering by the prediction's own time instead would hold every outcome
back for the whole label horizon (an hour by default).

Exactly once in effect. Outcomes are replaced by (order time, id, version) while buffered and
dropped (counted as `late`) once the fed frontier has passed them: a replay after a crash of
either stage changes nothing, and an outcome arriving after its sources' watermark promised
otherwise (a label later than the lateness allows) is counted instead of reordering history.

Wiring only: `ModelOutcomes`' release, pruning and checkpoint share the buffer's key (order
time, id, version) and change together; besides it, the outcome payload (`outcome_payloads`)
and the concept-drift config's loader. What is fed at release is pure and lives with the
detectors (`detectors/concept/inputs.py`: `outcome_streams`, `error_ranks`); the event of a
detection is an event rule (`events.concept_event`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from driftline.detectors.concept import (
    CheckpointVersionError,
    ConceptDriftConfig,
    ConceptSettings,
    ConceptStage,
    Detection,
    concept_config_from_dict,
    error_ranks,
    outcome_streams,
)
from driftline.streams.payloads import OutcomesMessage

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BUFFERED",
    "STALE_HORIZONS",
    "ModelOutcomes",
    "load_concept_config",
    "outcome_columns",
    "outcome_payloads",
]

STALE_HORIZONS = 24  # a version fed nothing for this many label horizons is pruned (1 h: a day)
MAX_BUFFERED = 200_000  # per model: beyond, the oldest are fed even if a source lags (counted)
OUTCOME_FIELDS = ("version", "id", "time", "event_time", "label", "prediction", "score")
# one joined outcome in stage 1: model, version, id, order time, event time, label, prediction,
# score (NaN: none)
Outcome = tuple[str, str, str, float, float, Any, Any, float]
# what a model version's suite is and whether the model is a regression
SuiteLookup = Callable[[str], tuple[ConceptSettings, bool]]


def load_concept_config(path: str | Path) -> ConceptDriftConfig:
    """The ``concept_drift`` section of the thresholds file (built-in defaults when the file or
    the section is absent); a wrong key fails here, at start, naming the file and the key."""
    file = Path(path)
    if not file.exists():
        return ConceptDriftConfig()
    with open(file, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    try:
        return concept_config_from_dict(data.get("concept_drift") if isinstance(data, dict) else {})
    except ValueError as exc:
        raise type(exc)(f"{file}: {exc}") from None


def outcome_payloads(
    outcomes: Sequence[Outcome],
    source: int,
    watermark: float,
    idle: bool,
    outcome_watermark: float | None,
    max_rows: int = 2000,
) -> list[tuple[str, bytes]]:
    """(model, ``outcomes`` payload) messages of a source's joined outcomes, at most `max_rows`
    per message (far below Kafka's 1 MB)."""
    by_model: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_model.setdefault(outcome[0], []).append(outcome)
    messages = []
    for model, rows in by_model.items():
        for first in range(0, len(rows), max_rows):
            columns = outcome_columns(rows[first : first + max_rows])
            message = OutcomesMessage(source, watermark, idle, outcome_watermark, columns)
            messages.append((model, message.encode()))
    return messages


def outcome_columns(rows: Sequence[Outcome]) -> dict[str, list[Any]]:
    """One model's joined outcomes as the columns of an ``outcomes`` payload."""
    return {
        "version": [r[1] for r in rows],
        "id": [r[2] for r in rows],
        "time": [r[3] for r in rows],
        "event_time": [r[4] for r in rows],
        "label": [r[5] for r in rows],
        "prediction": [r[6] for r in rows],
        "score": [None if r[7] != r[7] else r[7] for r in rows],
    }


@dataclass
class ModelOutcomes:
    """Outcomes of one model from every source partition, released in order (see module)."""

    n_sources: int
    watermarks: dict[int, float] = field(default_factory=dict)
    # (order time, prediction id, version) -> (event time, label, prediction, score)
    buffer: dict[tuple[float, str, str], tuple[float, Any, Any, float]] = field(
        default_factory=dict
    )
    frontier: tuple[float, str] | None = None  # the last (order time, id) fed
    late: int = 0
    forced: int = 0  # fed before every source's watermark passed them (buffer bound)
    stages: dict[str, ConceptStage] = field(default_factory=dict)
    saved_stages: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # restored lazily
    # regression: per version, the first `calibration` absolute errors, sorted (`error_ranks`)
    references: dict[str, list[float]] = field(default_factory=dict)
    last_fed: dict[str, float] = field(default_factory=dict)  # version -> latest order time fed

    def add_watermark(self, source: int, watermark: float | None) -> None:
        value = -math.inf if watermark is None else float(watermark)
        self.watermarks[source] = max(self.watermarks.get(source, -math.inf), value)

    def add(self, columns: Mapping[str, Sequence[Any]]) -> int:
        """Buffer an ``outcomes`` payload's columns (a replayed outcome replaces itself; one
        the frontier has passed is counted late, not fed); returns how many were late."""
        frontier, late = self.frontier, self.late
        for version, pid, t, event_time, label, prediction, score in zip(
            *(columns[name] for name in OUTCOME_FIELDS), strict=True
        ):
            key = (float(t), str(pid), str(version))
            if frontier is not None and key[:2] <= frontier:
                self.late += 1
                continue
            self.buffer[key] = (
                float(event_time),
                label,
                prediction,
                math.nan if score is None else float(score),
            )
        return self.late - late

    def watermark(self) -> float:
        """Lowest outcome watermark of all sources; -inf until every source has reported.

        >>> o = ModelOutcomes(2)
        >>> o.add_watermark(0, 10.0)
        >>> o.watermark()
        -inf
        >>> o.add_watermark(1, 5.0)
        >>> o.watermark()
        5.0
        """
        if len(self.watermarks) < self.n_sources:
            return -math.inf
        return min(self.watermarks.values())

    def release(
        self, suite: SuiteLookup, stale_after: float = math.inf
    ) -> list[tuple[str, Detection]]:
        """Feed every buffered outcome the watermark has passed, in (order time, id) order, to
        its version's stage; return the detections, in order. A version fed nothing for
        `stale_after` seconds of order time is pruned (`prune`)."""
        watermark = self.watermark()
        self.prune(watermark, stale_after)
        ready = sorted(k for k in self.buffer if k[0] <= watermark)
        excess = len(self.buffer) - len(ready) - MAX_BUFFERED
        if excess > 0:
            rest = sorted(k for k in self.buffer if k[0] > watermark)[:excess]
            self.forced += len(rest)
            ready += rest
        if not ready:
            return []
        self.frontier = ready[-1][:2]
        by_version: dict[str, list[tuple[float, str, str]]] = {}
        for key in ready:
            by_version.setdefault(key[2], []).append(key)
        found: list[tuple[int, str, Detection]] = []
        for version, keys in by_version.items():
            self.last_fed[version] = max(self.last_fed.get(version, -math.inf), keys[-1][0])
            rows = [self.buffer.pop(k) for k in keys]
            settings, regression = suite(version)
            if regression and version not in self.references and version in self.saved_stages:
                # a checkpoint from before ranks were fed: its detectors learnt raw errors
                fresh = ConceptStage(settings, regression)
                _carry_count(fresh, self.saved_stages.pop(version))
                self.stages[version] = fresh
            stage = self._stage(version, settings, regression)
            streams = outcome_streams(
                [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], regression
            )
            if regression:  # a bounded, unit-free error stream (see `error_ranks`)
                reference = self.references.setdefault(version, [])
                streams["error"] = error_ranks(streams["error"], reference, settings.calibration)
            detections = stage.update([k[1] for k in keys], [r[0] for r in rows], streams)
            found += [(d.index, version, d) for d in detections]
        return [(version, d) for _, version, d in sorted(found, key=lambda x: (x[0], x[1]))]

    def prune(self, watermark: float, stale_after: float) -> list[str]:
        """Forget the detectors and regression reference of the versions fed nothing for
        `stale_after` seconds before `watermark` (a retired model version); keep only their
        label count and last event (two numbers), so a version that comes back counts on and
        its event ids stay unique. Returns the versions pruned.

        >>> o = ModelOutcomes(1)
        >>> o.last_fed["1"] = 0.0
        >>> o.saved_stages["1"] = {"n_seen": 7, "last_event": None, "monitors": {}}
        >>> o.prune(100.0, 50.0), o.saved_stages["1"], o.last_fed
        (['1'], {'n_seen': 7, 'last_event': None}, {})
        """
        if not math.isfinite(watermark):
            return []
        kept = {*self.stages, *(v for v, saved in self.saved_stages.items() if "monitors" in saved)}
        for version in kept - set(self.last_fed):
            self.last_fed[version] = watermark  # restored from an older checkpoint: from now
        stale = sorted(v for v, t in self.last_fed.items() if watermark - t > stale_after)
        for version in stale:
            stage = self.stages.pop(version, None)
            saved = stage.to_state() if stage is not None else self.saved_stages.get(version)
            saved = saved if isinstance(saved, Mapping) else {}
            self.saved_stages[version] = {
                "n_seen": saved.get("n_seen", 0),
                "last_event": saved.get("last_event"),
            }
            self.references.pop(version, None)
            del self.last_fed[version]
        if stale:
            log.info("concept drift: pruned the detectors of stale versions %s", stale)
        return stale

    def _stage(self, version: str, settings: ConceptSettings, regression: bool) -> ConceptStage:
        stage = self.stages.get(version)
        if stage is not None:
            return stage
        saved = self.saved_stages.pop(version, None)
        if isinstance(saved, Mapping) and "monitors" in saved:  # else pruned: a count only
            try:
                stage = ConceptStage.from_state(settings, regression, saved)
            except (CheckpointVersionError, KeyError, TypeError, ValueError) as exc:
                log.warning("concept-drift detectors of version %s start afresh: %s", version, exc)
        if stage is None:
            stage = ConceptStage(settings, regression)
            if saved is not None:  # detectors afresh, but the count goes on: indexes stay unique
                _carry_count(stage, saved)
        self.stages[version] = stage
        return stage

    def to_dict(self) -> dict[str, Any]:
        keys = list(self.buffer)
        rows = list(self.buffer.values())
        return {
            "n_sources": self.n_sources,
            "watermarks": {
                str(s): w if math.isfinite(w) else None for s, w in self.watermarks.items()
            },
            "buffer": {
                "time": [k[0] for k in keys],
                "id": [k[1] for k in keys],
                "version": [k[2] for k in keys],
                "event_time": [r[0] for r in rows],
                "label": [r[1] for r in rows],
                "prediction": [r[2] for r in rows],
                "score": [None if r[3] != r[3] else r[3] for r in rows],
            },
            "frontier": None if self.frontier is None else list(self.frontier),
            "late": self.late,
            "forced": self.forced,
            "references": self.references,
            "last_fed": self.last_fed,
            "stages": {
                **self.saved_stages,
                **{v: s.to_state() for v, s in self.stages.items()},
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelOutcomes:
        """State from `to_dict` (the stages are rebuilt on first use, against the config).

        >>> o = ModelOutcomes(1)
        >>> o.add({"version": ["1"], "id": ["a"], "time": [2.0], "event_time": [1.0],
        ...        "label": ["1"], "prediction": ["0"], "score": [None]})
        0
        >>> ModelOutcomes.from_dict(o.to_dict()).buffer == o.buffer
        True
        """
        state = cls(int(d["n_sources"]))
        state.watermarks = {
            int(s): -math.inf if w is None else float(w) for s, w in d["watermarks"].items()
        }
        b = d["buffer"]
        for t, pid, version, event_time, label, prediction, score in zip(
            b["time"],
            b["id"],
            b["version"],
            b["event_time"],
            b["label"],
            b["prediction"],
            b["score"],
            strict=True,
        ):
            state.buffer[(float(t), str(pid), str(version))] = (
                float(event_time),
                label,
                prediction,
                math.nan if score is None else float(score),
            )
        frontier = d.get("frontier")
        state.frontier = None if frontier is None else (float(frontier[0]), str(frontier[1]))
        state.late, state.forced = int(d.get("late", 0)), int(d.get("forced", 0))
        state.saved_stages = dict(d.get("stages", {}))
        state.last_fed = {str(v): float(t) for v, t in d.get("last_fed", {}).items()}
        state.references = {
            str(v): sorted(float(x) for x in xs) for v, xs in d.get("references", {}).items()
        }
        return state


def _carry_count(stage: ConceptStage, saved: Any) -> None:
    """Carry the labels counted (and the last event, for the cooldown) of an unrestorable
    stage's checkpoint over to its fresh stage: a detection's index (and so its event id) counts
    the version's whole stream, never restarting at 0 to repeat an earlier event's id."""
    try:
        n_seen = int(saved["n_seen"])
        last = saved.get("last_event")
        last_event = None if last is None else (int(last[0]), float(last[1]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return  # nothing readable to carry
    stage.n_seen, stage.last_event = max(n_seen, 0), last_event
