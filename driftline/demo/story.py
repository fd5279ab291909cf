"""The demo's story as data: the plan (timing), the incidents, what counts as detecting each, and
the outcome. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.simulate import Drift

MODEL = "fraud"


SHIFTED_FEATURE = "txn_per_day"


BROKEN_FEATURE = "distance_from_home_km"


# What counts as the detection of each incident: event types, in order of preference. THE one
# place to tighten once the data-quality verdict (``data_quality`` events) is merged: today's
# worker raises no event for a null feature, so the demo falls back to the window summary's
# missing rate (driftline's own output on the metrics topic) and says so. Set
# DATA_QUALITY_FALLBACK = False to require the ``data_quality`` event.
DETECTED_BY: dict[str, tuple[str, ...]] = {
    "data drift": ("data_drift", "multivariate_drift"),
    "data quality": ("data_quality",),
    "concept drift": ("concept_drift", "performance_drop"),
}


DATA_QUALITY_FALLBACK = False


MISSING_RATE_SEEN = 0.5  # window missing rate of the broken feature that counts as seen


@dataclass(frozen=True)
class Plan:
    """The story's timing. Offsets are event-time seconds after the start; the event clock
    runs ``speedup`` times faster than the wall clock."""

    window_seconds: int = 60
    rate: float = 40.0  # predictions per event-time second
    speedup: float = 12.0  # event-time seconds per wall-clock second
    baseline_windows: int = 2
    incident_windows: int = 2  # how long the shift and the broken feature last
    after_windows: int = 2  # served after the promotion, to measure the recovered accuracy
    budget_seconds: float = 270.0  # wall clock for the traffic, then the demo gives up
    training_records: int = 6000  # the "before" data of model version 1
    min_new_labels: int = 1000  # labelled records after the concept drift before retraining
    ab_min_samples_per_arm: int = 300

    @property
    def onsets(self) -> dict[str, float]:
        w = self.window_seconds
        shift = self.baseline_windows * w
        broken = shift + self.incident_windows * w
        return {
            "data drift": float(shift),
            "data quality": float(broken),
            "concept drift": float(broken + self.incident_windows * w),
        }

    @property
    def schedule(self) -> list[Drift]:
        o = self.onsets
        return [
            Drift("abrupt", o["data drift"], o["data quality"], 1.5, feature=SHIFTED_FEATURE),
            Drift("missing", o["data quality"], o["concept drift"], 1.0, feature=BROKEN_FEATURE),
            Drift("concept", o["concept drift"]),
        ]


INCIDENTS = {
    "data drift": f"shopping-pattern shift: {SHIFTED_FEATURE} +1.5 std",
    "data quality": f"broken upstream feature: {BROKEN_FEATURE} null",
    "concept drift": "fraud behaviour changes: the label relation flips",
}


@dataclass
class Incident:
    kind: str
    title: str
    onset: float  # event-time offset
    injected_wall: float | None = None
    detected_wall: float | None = None  # when driftline detected it (the event's detected_at)
    detected_event_time: float | None = None
    via: str = ""
    event_id: str | None = None
    alert_wall: float | None = None
    alert_title: str = ""


@dataclass
class Story:
    plan: Plan
    start: float  # event time of offset 0
    incidents: dict[str, Incident]
    phase: str = "starting"
    served: int = 0
    routing: str = f"{MODEL}@1 100%"
    tally: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # phase, version
    retraining: str = "-"
    ab: str = "-"
    promoted_wall: float | None = None
    promoted_version: str | None = None
    slack: list[tuple[float, str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    looked_at: float = 0.0

    def offset(self, event_time: float) -> str:
        seconds = max(0, int(event_time - self.start + 0.5))
        return f"{seconds // 60}:{seconds % 60:02d}"

    def accuracy(self, phase: str) -> float | None:
        """Realised accuracy of a phase (``before``, ``degraded``, ``after``), every version."""
        right = sum(v[0] for (p, _), v in self.tally.items() if p == phase)
        n = sum(v[1] for (p, _), v in self.tally.items() if p == phase)
        return right / n if n else None


def _event_time_of(event: dict[str, Any]) -> float | None:
    """When (event time) the evidence was complete: the window's end, or the triggering
    prediction of a per-sample detection."""
    if isinstance(event.get("window_end"), int | float):
        return float(event["window_end"])
    evidence = event.get("evidence") or {}
    value = evidence.get("event_time")
    return float(value) if isinstance(value, int | float) else None


def detection_of(kind: str, event: dict[str, Any]) -> str | None:
    """How ``event`` detects the incident ``kind`` (a label for the summary), or None.

    >>> detection_of("data drift", {"type": "data_drift", "feature": "txn_per_day"})
    'data_drift txn_per_day'
    >>> detection_of("data quality", {"type": "data_quality", "feature": "distance_from_home_km"})
    'data_quality distance_from_home_km'
    >>> detection_of("concept drift", {"type": "data_drift", "feature": "amount"}) is None
    True
    """
    kind_type = str(event.get("type"))
    feature = event.get("feature")
    if kind == "data drift":
        ok = kind_type == "multivariate_drift" or (
            kind_type == "data_drift" and feature == SHIFTED_FEATURE
        )
    elif kind == "data quality":
        ok = kind_type.startswith(DETECTED_BY[kind]) and feature in (BROKEN_FEATURE, None)
        if not ok and DATA_QUALITY_FALLBACK:
            ok = feature == BROKEN_FEATURE  # another event type naming the broken feature
    else:
        ok = kind_type in DETECTED_BY[kind]
    return f"{kind_type} {feature or event.get('test') or ''}".strip() if ok else None


def _missing_rate(summary: dict[str, Any]) -> float:
    evaluation = summary.get("evaluation") or {}
    rates = (evaluation.get("summary") or {}).get("missing_rate") or {}
    return float(rates.get(BROKEN_FEATURE) or 0.0)


@dataclass
class Outcome:
    """What a run did: ``ok`` when every incident was detected, the retrained model promoted
    and the report written."""

    run: str
    schema: str
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    story: Story | None = None
    report: Path | None = None
    seconds: float = 0.0
