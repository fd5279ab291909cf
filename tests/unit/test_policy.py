"""Alert policy: deduplication, escalation, resolution, rate limiting (pure)."""

from __future__ import annotations

from typing import Any

from driftline.sinks.policy import AlertPolicy


def event(
    window_end: float,
    *,
    feature: str = "amount",
    type: str = "data_drift",
    severity: str = "warning",
    model: str = "fraud",
) -> dict[str, Any]:
    return {
        "event_id": f"{model}-{feature}-{type}-{window_end}",
        "type": type,
        "severity": severity,
        "model": model,
        "model_version": "1",
        "feature": feature,
        "test": "ks_binned",
        "statistic": 0.3,
        "p_value": 1e-9,
        "threshold": 0.05,
        "window_start": window_end - 60,
        "window_end": window_end,
    }


def window(window_end: float, model: str = "fraud") -> dict[str, Any]:
    return {
        "type": "window",
        "evaluation": {
            "model": model,
            "model_version": "1",
            "window_start": window_end - 60,
            "window_end": window_end,
        },
    }


def test_one_open_alert_per_subject_escalates_after_three_windows_and_resolves() -> None:
    policy = AlertPolicy(escalate_after=3)
    (first,) = policy.on_event(event(60), now=0)
    assert first.action == "firing" and first.severity == "warning"
    assert policy.on_event(event(60), now=1) == []  # same window again: deduplicated
    assert policy.on_event(event(120), now=2) == []  # second window: still a warning
    (escalated,) = policy.on_event(event(180), now=3)
    assert escalated.action == "escalated" and escalated.severity == "critical"
    assert escalated.alert.alert_id == first.alert.alert_id and escalated.alert.windows == 3
    key = AlertPolicy.key(event(180))
    assert policy.on_window(window(180), {key}) == []  # its own window: still firing
    (resolved,) = policy.on_window(window(240), set())
    assert resolved.action == "resolved" and resolved.alert.alert_id == first.alert.alert_id
    assert policy.open == {}


def test_a_critical_event_escalates_at_once_and_other_subjects_are_separate() -> None:
    policy = AlertPolicy()
    policy.on_event(event(60), now=0)
    (other,) = policy.on_event(event(60, feature="country"), now=0)
    assert other.action == "firing"
    (escalated,) = policy.on_event(event(120, severity="critical"), now=1)
    assert escalated.action == "escalated"
    assert len(policy.open) == 2


def test_rate_limit_counts_what_it_holds_back_and_never_holds_back_resolutions() -> None:
    policy = AlertPolicy(max_per_hour=2)
    sent = [n for f in ("a", "b", "c", "d") for n in policy.on_event(event(60, feature=f), now=10)]
    assert [n.alert.subject for n in sent] == ["a", "b"] and policy.suppressed == 2
    assert len(policy.open) == 4  # suppressed alerts stay open
    assert len(policy.on_window(window(120), set())) == 4  # every resolution goes out
    assert [n.alert.subject for n in policy.on_event(event(180, feature="e"), now=3611)] == ["e"]


def test_performance_and_concept_alerts_resolve_on_a_healthy_performance_window() -> None:
    policy = AlertPolicy()
    concept = {
        **event(60, type="concept_drift"),
        "feature": None,
        "test": "ddm_error",
        "window_start": None,
        "window_end": None,
    }
    drop = {**event(60, type="performance_drop"), "feature": None, "test": "accuracy"}
    policy.on_event(concept, now=0)
    policy.on_event(drop, now=0)
    perf = {"type": "performance_window", "model": "fraud", "model_version": "1", "window_end": 60}
    assert policy.on_window(perf, {AlertPolicy.key(drop)}) == []  # still degraded
    assert policy.on_window(window(120), set()) == []  # a data window does not resolve them
    healthy = {**perf, "window_end": 120}
    # a provisional window (labels still coming) cannot show the condition is gone
    assert policy.on_window({**healthy, "final": False}, set()) == []
    assert {n.alert.type for n in policy.on_window(healthy, set())} == {
        "concept_drift",
        "performance_drop",
    }


def test_notification_text_names_what_and_where() -> None:
    (notification,) = AlertPolicy().on_event(event(60), now=0)
    assert notification.title() == "[WARNING] data drift on fraud/1: amount"
    assert "p-value 1e-09" in notification.text() and "window [0, 60)" in notification.text()


def test_an_older_window_does_not_resolve_a_newer_alert() -> None:
    policy = AlertPolicy()
    policy.on_event(event(240), now=0)
    assert policy.on_window(window(120), set()) == []  # arrived late, says nothing about 240
    assert len(policy.on_window(window(300), set())) == 1


def test_malformed_events_and_summaries_are_named_not_raised() -> None:
    from driftline.sinks.policy import event_problem, summary_problem

    event = {"event_id": "e", "model": "m", "model_version": "1", "type": "data_drift",
             "severity": "critical", "window_start": 0.0, "window_end": 60.0}  # fmt: skip
    assert event_problem(event) is None
    assert event_problem(None) == "not a JSON object"
    assert event_problem({**event, "severity": None}) == "severity is not warning or critical"
    assert event_problem({**event, "statistic": float("nan")}) == "statistic is not a number"
    assert event_problem({**event, "p_value": True}) == "p_value is not a number"
    assert event_problem({**event, "feature": ["a"]}) == "feature is not a string"
    assert event_problem({**event, "window_end": None}) == (
        "window_start and window_end must be given together"
    )
    window = {"type": "window", "evaluation": {"model": "m", "model_version": "1"}}
    assert summary_problem(window) is None
    assert summary_problem({**window, "event_ids": "e1"}) == "event_ids is not a list of strings"
    assert summary_problem({**window, "window_end": "late"}) == "window_end is not a number"
    assert summary_problem({"type": "performance_window", "model": "m"}) == (
        "model_version is missing or not a string"
    )
