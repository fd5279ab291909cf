"""The configured suite of one model version on its ordered outcome stream, with cooldown,
reset, a change-point estimate and the error before/after: :class:`ConceptStage` (the worker
feeds it from ``streams/outcomes.py``)."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from driftline.detectors.concept.checkpoint import CheckpointVersionError, decode, encode
from driftline.detectors.concept.monitor import BINARY_KINDS, ConceptDriftMonitor
from driftline.detectors.concept.settings import ConceptSettings, DetectorSpec

__all__ = ["HISTORY", "ConceptStage", "Detection", "change_point"]

HISTORY: Final = 2000  # outcomes kept for the change-point estimate and error before/after


@dataclass(frozen=True, slots=True)
class Detection:
    """One reported concept drift of a model version (after cooldown)."""

    detector: str
    kind: str
    stream: str
    index: int
    """0-based position of the outcome that triggered it in the version's ordered stream."""
    event_time: float
    prediction_id: str
    change_index: int
    """Estimated first outcome of the new concept (CUSUM split of the recent error stream)."""
    change_time: float
    error_before: float | None
    error_after: float | None
    severity: Literal["warning", "critical"]
    also: tuple[str, ...] = ()
    """Other detectors that fired on the same outcome."""
    suppressed: int = 0
    """Detections suppressed by the cooldown since the previous event."""

    @property
    def labels_seen(self) -> int:
        return self.index + 1


def change_point(values: NDArray[np.float64]) -> int:
    """Estimate of a single change in mean: the split k (1 <= k < n) maximising the
    standardised CUSUM |S_k - k S_n / n| / sqrt(k (n - k) / n) (the likelihood-ratio split for
    a Gaussian mean; unbiased towards the middle); 0 for fewer than two values.

    >>> change_point(np.r_[np.zeros(50), np.ones(30)])
    50
    """
    n = values.size
    if n < 2:
        return 0
    k = np.arange(1, n)
    cusum = np.cumsum(values)[:-1] - k * values.sum() / n
    return int(np.argmax(np.abs(cusum) / np.sqrt(k * (n - k) / n))) + 1


class ConceptStage:
    """The configured suite of one model version, fed its outcomes in order, one at a time.

    A detection raised while the cooldown of the previous event runs is suppressed (counted);
    otherwise it becomes a :class:`Detection` and, with ``reset_on_detection``, every detector
    starts afresh. Binary detectors are skipped for regression models (their ``error`` is an
    absolute error, not 0/1). Non-NaN values only are fed; a member with ``standardise`` learns
    its mean/std on the first ``calibration`` values after a start or reset.

    >>> import numpy as np
    >>> from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT
    >>> rng = np.random.default_rng(3)
    >>> errors = (rng.random(6000) < np.r_[np.full(3000, 0.05), np.full(3000, 0.3)]).astype(float)
    >>> stage = ConceptStage(DEFAULT_CONCEPT_DRIFT)
    >>> found = stage.update([str(i) for i in range(6000)], np.arange(6000.0), {"error": errors})
    >>> len(found), 3000 <= found[0].index < 3300, found[0].severity
    (1, True, 'critical')
    >>> again = ConceptStage.from_state(DEFAULT_CONCEPT_DRIFT, False, stage.to_state())
    >>> again.n_seen == stage.n_seen == 6000
    True
    """

    def __init__(self, settings: ConceptSettings, regression: bool = False) -> None:
        self.settings = settings
        self.regression = regression
        self.specs = tuple(
            d for d in settings.detectors if not (regression and d.kind in BINARY_KINDS)
        )
        self.monitors: dict[str, ConceptDriftMonitor | None] = {}
        self.calibrating: dict[str, list[float]] = {}  # Welford n, mean, m2
        self.n_seen = 0
        self.last_event: tuple[int, float] | None = None  # index, event time
        self.suppressed = 0
        self.events = 0
        self.history: collections.deque[tuple[float, float]] = collections.deque(maxlen=HISTORY)
        self._reset()

    def _reset(self) -> None:
        for spec in self.specs:
            if spec.standardise:
                self.monitors[spec.name] = None
                self.calibrating[spec.name] = [0.0, 0.0, 0.0]
            else:
                self.monitors[spec.name] = ConceptDriftMonitor(spec.kind, **dict(spec.params))

    def _feed(self, spec: DetectorSpec, value: float) -> bool:
        monitor = self.monitors[spec.name]
        if monitor is not None:
            return monitor.step(value)
        acc = self.calibrating[spec.name]
        acc[0] += 1
        delta = value - acc[1]
        acc[1] += delta / acc[0]
        acc[2] += delta * (value - acc[1])
        if acc[0] >= self.settings.calibration:
            std = math.sqrt(acc[2] / (acc[0] - 1))
            self.monitors[spec.name] = ConceptDriftMonitor(
                spec.kind,
                reference_mean=acc[1],
                reference_std=max(std, 1e-3 * max(1.0, abs(acc[1]))),
                **dict(spec.params),
            )
            del self.calibrating[spec.name]
        return False

    def _cooling(self, index: int, event_time: float) -> bool:
        if self.last_event is None:
            return False
        last_index, last_time = self.last_event
        return (
            index - last_index < self.settings.cooldown_records
            or event_time - last_time < self.settings.cooldown_seconds
        )

    def update(
        self,
        prediction_ids: Sequence[str],
        event_times: ArrayLike,
        streams: Mapping[str, ArrayLike],
    ) -> list[Detection]:
        """Feed outcomes in order (columns of equal length); return the reported detections."""
        times = np.asarray(event_times, dtype=np.float64).tolist()
        n = len(times)
        columns = {
            name: np.asarray(values, dtype=np.float64).tolist() for name, values in streams.items()
        }
        nan = [math.nan] * n
        feeds = [(spec, columns.get(spec.stream, nan)) for spec in self.specs]
        errors = columns.get("error", nan)
        found: list[Detection] = []
        for i in range(n):
            index = self.n_seen
            self.n_seen += 1
            t = times[i]
            if errors[i] == errors[i]:
                self.history.append((errors[i], t))
            fired = [
                spec
                for spec, values in feeds
                if values[i] == values[i] and self._feed(spec, values[i])
            ]
            if not fired:
                continue
            if self._cooling(index, t):
                self.suppressed += 1
                continue
            found.append(self._detection(fired, index, t, prediction_ids[i]))
        return found

    def _detection(
        self, fired: list[DetectorSpec], index: int, event_time: float, prediction_id: str
    ) -> Detection:
        values = np.array([e for e, _ in self.history], dtype=np.float64)
        times = [t for _, t in self.history]
        k = change_point(values)
        before = float(values[:k].mean()) if k > 0 else None
        after = float(values[k:].mean()) if values.size > k else None
        critical = (
            before is not None
            and after is not None
            and after > before * (1.0 + self.settings.critical_increase)
            and after > before
        )
        first = fired[0]
        detection = Detection(
            first.name,
            first.kind,
            first.stream,
            index,
            event_time,
            prediction_id,
            index - values.size + 1 + k if values.size else index,
            times[k] if values.size > k else event_time,
            before,
            after,
            "critical" if critical else "warning",
            tuple(s.name for s in fired[1:]),
            self.suppressed,
        )
        self.suppressed = 0
        self.events += 1
        self.last_event = (index, event_time)
        self.history.clear()
        if self.settings.reset_on_detection:
            self._reset()
        return detection

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible state (the detectors through :meth:`ConceptDriftMonitor.to_state`)."""
        return {
            "signature": self.settings.signature(),
            "regression": self.regression,
            "monitors": {k: None if m is None else m.to_state() for k, m in self.monitors.items()},
            "calibrating": self.calibrating,
            "n_seen": self.n_seen,
            "last_event": None if self.last_event is None else list(self.last_event),
            "suppressed": self.suppressed,
            "events": self.events,
            "history": [[e, encode(t)] for e, t in self.history],
        }

    @classmethod
    def from_state(
        cls, settings: ConceptSettings, regression: bool, state: Mapping[str, Any]
    ) -> ConceptStage:
        """A stage restored from :meth:`to_state`; raises :class:`CheckpointVersionError` when
        the suite's configuration (detector names, kinds, streams, params, standardise)
        or river changed."""
        if state.get("signature") != settings.signature() or state.get("regression") != regression:
            raise CheckpointVersionError("the concept-drift suite's configuration changed")
        stage = cls(settings, regression)
        stage.monitors = {
            k: None if m is None else ConceptDriftMonitor.from_state(m)
            for k, m in state["monitors"].items()
        }
        stage.calibrating = {k: [float(x) for x in v] for k, v in state["calibrating"].items()}
        stage.n_seen = int(state["n_seen"])
        last = state["last_event"]
        stage.last_event = None if last is None else (int(last[0]), float(last[1]))
        stage.suppressed = int(state["suppressed"])
        stage.events = int(state["events"])
        stage.history.extend((float(e), float(decode(t))) for e, t in state["history"])
        return stage
