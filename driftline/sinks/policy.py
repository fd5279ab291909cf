"""From drift events to alerts: deduplication, escalation, resolution, rate limiting (pure).

The decisions only, no I/O and no clock of its own (`now` is passed in), so every rule is a unit
test away. `driftline/sinks/notify.py` feeds it the alerts and metrics topics and delivers what
it returns.

Rules:
- **One open alert per (model, subject, type)**, the subject being the feature, else the test
  (e.g. `ddm_error`, `accuracy`). Further events for an open alert update it silently. An
  `operational` event (a finding about driftline itself, e.g. a dropped checkpoint: no window
  resolves it) is its own alert, keyed by its event id: each finding notifies once, a replay of
  the same event does not.
- **Escalation**: an alert opens with the event's severity; a warning becomes critical when its
  condition is seen in `escalate_after` consecutive windows, or when an event for it is
  critical (a second threshold crossed). Escalation sends a notification.
- **Resolution**: a windowed alert (data, multivariate, error-rate, latency, estimated
  performance, output, data quality, feature importance) resolves when a window of its model version closes without it; a performance
  or concept-drift alert when a performance window closes without a performance drop.
- **Rate limiting**: at most `max_per_hour` firing or escalation notifications per model in
  any hour; the rest are counted (`suppressed`), the alert stays open. Resolutions always go.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["Alert", "AlertPolicy", "Notification", "event_problem", "summary_problem"]

WINDOWED = {
    "data_drift",
    "multivariate_drift",
    "error_rate",
    "latency",
    "estimated_performance_drop",
    "output_drift",
    "data_quality",
    "importance_drift",
}
LABELLED = {"performance_drop", "concept_drift"}
Severity = Literal["warning", "critical"]


@dataclass
class Alert:
    alert_id: str
    model: str
    model_version: str
    subject: str
    type: str
    severity: Severity
    opened_at: float
    last_event: dict[str, Any]
    windows: int = 1  # consecutive windows in which the condition was seen
    last_window_end: float | None = None
    events: int = 1


@dataclass(frozen=True)
class Notification:
    """What to tell, with a snapshot of the alert as it was when decided."""

    alert: Alert
    action: Literal["firing", "escalated", "resolved"]

    @classmethod
    def of(cls, alert: Alert, action: Literal["firing", "escalated", "resolved"]) -> Notification:
        return cls(replace(alert, last_event=dict(alert.last_event)), action)

    @property
    def severity(self) -> Severity:
        return self.alert.severity

    def title(self) -> str:
        a = self.alert
        word = {"firing": a.severity.upper(), "escalated": "ESCALATED", "resolved": "RESOLVED"}
        return f"[{word[self.action]}] {a.type.replace('_', ' ')} on {a.model}/{a.model_version}: {a.subject}"

    def text(self) -> str:
        e = self.alert.last_event
        parts = [self.title()]
        if e.get("statistic") is not None:
            parts.append(f"statistic {e['statistic']:.4g}")
        if e.get("p_value") is not None:
            parts.append(f"p-value {e['p_value']:.3g}")
        if e.get("threshold") is not None:
            parts.append(f"threshold {e['threshold']:.4g}")
        if e.get("window_start") is not None:
            parts.append(f"window [{e['window_start']:.0f}, {e['window_end']:.0f})")
        parts.append(f"seen in {self.alert.windows} window(s), event {e.get('event_id')}")
        return "; ".join(parts)


@dataclass
class AlertPolicy:
    escalate_after: int = 3
    max_per_hour: int = 20
    open: dict[str, Alert] = field(default_factory=dict)
    suppressed: int = 0
    _sent: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def key(event: Mapping[str, Any]) -> str:
        subject = event.get("feature") or event.get("test") or ""
        if event.get("type") == "operational":  # never resolved by a window: one per finding
            subject = f"{subject}\x1f{event.get('event_id')}"
        return f"{event['model']}\x1f{event['model_version']}\x1f{subject}\x1f{event['type']}"

    def on_event(self, event: Mapping[str, Any], now: float) -> list[Notification]:
        """A drift event arrived (from the alerts topic)."""
        key = self.key(event)
        alert = self.open.get(key)
        if alert is None:
            alert = Alert(
                # each opening of an alert is its own incident (and history row), even when a
                # replay brings back the same event
                alert_id=hashlib.sha256(
                    f"{key}\x1f{event['event_id']}\x1f{now}".encode()
                ).hexdigest()[:24],
                model=str(event["model"]),
                model_version=str(event["model_version"]),
                subject=str(event.get("feature") or event.get("test") or ""),
                type=str(event["type"]),
                severity=event["severity"],
                opened_at=now,
                last_event=dict(event),
                last_window_end=event.get("window_end"),
            )
            self.open[key] = alert
            return self._limited(Notification.of(alert, "firing"), now)
        alert.events += 1
        alert.last_event = dict(event)
        window_end = event.get("window_end")
        if window_end is not None and window_end != alert.last_window_end:
            alert.windows += 1
            alert.last_window_end = window_end
        if alert.severity == "warning" and (
            event["severity"] == "critical" or alert.windows >= self.escalate_after
        ):
            alert.severity = "critical"
            return self._limited(Notification.of(alert, "escalated"), now)
        return []

    def on_window(self, summary: Mapping[str, Any], event_keys: set[str]) -> list[Notification]:
        """A window summary arrived (from the metrics topic) with the keys of its own events:
        alerts of that model version whose condition is absent from it resolve."""
        if summary.get("type") == "performance_window":
            if summary.get("final") is False:  # labels still coming: cannot show it is gone
                return []
            model, version = summary["model"], str(summary["model_version"])
            types = LABELLED
            if event_keys:  # still degraded: concept-drift alerts stay open too
                return []
        else:
            evaluation = summary["evaluation"]
            model, version = evaluation["model"], str(evaluation["model_version"])
            types = WINDOWED
        window_end = summary.get("window_end", summary.get("evaluation", {}).get("window_end"))
        resolved = []
        for key, alert in list(self.open.items()):
            same_model = (alert.model, alert.model_version) == (model, version)
            # Only a window later than the alert's last sighting can show the condition is gone
            # (summaries and events travel on different topics and may arrive out of order).
            later = (
                alert.last_window_end is None
                or window_end is None
                or window_end > alert.last_window_end
            )
            if same_model and alert.type in types and key not in event_keys and later:
                del self.open[key]
                resolved.append(Notification.of(alert, "resolved"))
        return resolved

    def _limited(self, notification: Notification, now: float) -> list[Notification]:
        sent = self._sent.setdefault(notification.alert.model, deque())
        while sent and sent[0] <= now - 3600:
            sent.popleft()
        if len(sent) >= self.max_per_hour:
            self.suppressed += 1
            return []
        sent.append(now)
        return [notification]


# -- what the policy accepts: checked at the edge, so a malformed message is rejected, not fatal --

_NUMBER_FIELDS = ("statistic", "p_value", "threshold", "window_start", "window_end")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def event_problem(event: Any) -> str | None:
    """Why a drift event (from the alerts topic) cannot be handled, or None if it can.

    >>> event_problem({"event_id": "e1", "model": "fraud", "model_version": "7",
    ...                "type": "data_drift", "severity": "warning", "feature": "amount"})
    >>> event_problem({"event_id": "e1", "model": "fraud"})
    'missing field model_version'
    >>> event_problem([1, 2])
    'not a JSON object'
    """
    if not isinstance(event, dict):
        return "not a JSON object"
    for name in ("event_id", "model", "model_version", "type", "severity"):
        if name not in event:
            return f"missing field {name}"
    for name in ("event_id", "type"):
        if not isinstance(event[name], str) or not event[name]:
            return f"{name} is not a non-empty string"
    for name in ("model", "model_version", "feature", "test"):
        if event.get(name) is not None and not isinstance(event[name], str | int):
            return f"{name} is not a string"
    if event["severity"] not in ("warning", "critical"):
        return "severity is not warning or critical"
    for name in _NUMBER_FIELDS:
        if event.get(name) is not None and not _is_number(event[name]):
            return f"{name} is not a number"
    if (event.get("window_start") is None) != (event.get("window_end") is None):
        return "window_start and window_end must be given together"
    return None


def summary_problem(summary: Any) -> str | None:
    """Why a window summary (from the metrics topic) cannot be handled, or None if it can.

    >>> summary_problem({"type": "performance_window", "model": "fraud", "model_version": "7"})
    >>> summary_problem({"type": "window", "evaluation": None})
    'evaluation is not an object'
    """
    if not isinstance(summary, dict):
        return "not a JSON object"
    subject: Any = summary
    if summary.get("type") != "performance_window":
        subject = summary.get("evaluation")
        if not isinstance(subject, dict):
            return "evaluation is not an object"
    for name in ("model", "model_version"):
        if not isinstance(subject.get(name), str | int) or isinstance(subject.get(name), bool):
            return f"{name} is missing or not a string"
    window_end = summary.get("window_end", subject.get("window_end"))
    if window_end is not None and not _is_number(window_end):
        return "window_end is not a number"
    ids = summary.get("event_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return "event_ids is not a list of strings"
    return None
