"""Row mapping of the PostgreSQL sink: message dict -> rows (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.sinks.rows import (
    MalformedMessageError,
    event_rows,
    merge_rows,
    performance_rows,
    rows_from_message,
    window_rows,
)
from driftline.sinks.schema import TABLES


def window_message(model: str = "fraud", start: float = 1_700_000_040.0) -> dict[str, Any]:
    test = {
        "test": "ks_binned",
        "statistic": 0.21,
        "p_value": 0.001,
        "threshold": 0.05,
        "drifted": True,
    }
    feature = {
        "feature": "amount",
        "kind": "numeric",
        "drifted": True,
        "critical": False,
        "verdict_test": "ks_binned",
        "p_value": 0.001,
        "adjusted_p_value": 0.004,
        "alpha": 0.05,
        "effect_measure": "wasserstein",
        "effect": 0.3,
        "min_effect": 0.12,
        "n": 990,
        "missing": 10,
        "invalid": 0,
        "missing_rate": 0.01,
        "unseen": {},
        "tests": {"ks_binned": test, "psi": {**test, "test": "psi", "p_value": None}},
    }
    return {
        "type": "window",
        "sources": [0, 1],
        "event_ids": ["a" * 32],
        "estimated_performance": {"accuracy": 0.91, "f1": 0.5},
        "evaluation": {
            "model": model, "model_version": "7", "window_start": start, "window_end": start + 60,
            "status": "evaluated", "drifted": True, "reasons": ["feature amount"],
            "drifted_features": ["amount"], "drift_share": 0.5,
            "features": {"amount": feature, "country": {**feature, "feature": "country",
                         "kind": "categorical", "drifted": False, "verdict_test": "chi_square",
                         "tests": {}}},
            "multivariate": None,
            "prediction_tests": {"chi_square": test},
            "summary": {"n_records": 1000, "error_count": 3, "error_rate": 0.003,
                        "latency_p50_seconds": 0.01, "latency_p95_seconds": 0.05,
                        "latency_p99_seconds": 0.09, "mean_score": 0.2},
        },
    }  # fmt: skip


def drift_event(**over: Any) -> dict[str, Any]:
    event = {
        "schema_version": 1, "event_id": "b" * 32, "type": "data_drift", "severity": "warning",
        "model": "fraud", "model_version": "7", "feature": "amount", "test": "ks_binned",
        "statistic": 0.2, "p_value": 0.001, "threshold": 0.05, "window_start": 1_700_000_040.0,
        "window_end": 1_700_000_100.0, "detected_at": 1_700_000_200.5, "evidence": {"effect": 0.3},
    }  # fmt: skip
    event.update(over)
    return event


def test_window_rows_map_every_column() -> None:
    rows = window_rows(window_message())
    (window,) = rows["window_metrics"]
    assert set(window) == set(TABLES["window_metrics"].columns)
    assert window["window_start"] == datetime(2023, 11, 14, 22, 14, tzinfo=UTC)
    assert (window["n_records"], window["error_rate"], window["latency_p99_seconds"]) == (
        1000,
        0.003,
        0.09,
    )
    assert window["estimated_accuracy"] == 0.91
    assert window["sources"] == [0, 1] and window["event_ids"] == ["a" * 32]
    features = {r["feature"]: r for r in rows["feature_drift"]}
    assert set(features) == {"amount", "country"}
    amount = features["amount"]
    assert set(amount) == set(TABLES["feature_drift"].columns)
    assert (amount["test"], amount["statistic"], amount["p_value"], amount["adjusted_p_value"]) == (
        "ks_binned",
        0.21,
        0.001,
        0.004,
    )
    assert amount["drifted"] is True and features["country"]["drifted"] is False
    assert features["country"]["statistic"] is None  # verdict test absent from `tests`
    assert amount["tests"]["psi"]["p_value"] is None


def test_insufficient_window_has_no_feature_rows() -> None:
    message = window_message()
    message["evaluation"].update(status="insufficient_samples", drifted=False, features={})
    message["estimated_performance"] = {}
    rows = window_rows(message)
    assert rows["feature_drift"] == []
    assert rows["window_metrics"][0]["estimated_accuracy"] is None


def test_performance_rows() -> None:
    message = {
        "type": "performance_window", "model": "fraud", "model_version": "7",
        "window_start": 60.0, "window_end": 120.0, "sources": [2], "labelled": 950,
        "label_coverage": 0.95,
        "metrics": {"accuracy": 0.8, "precision": 0.5, "recall": None, "f1": 0.4, "roc_auc": 0.7},
        "baseline_accuracy": 0.9, "accuracy_drop": 0.111, "event_ids": ["c" * 32],
    }  # fmt: skip
    (row,) = performance_rows(message)["performance_windows"]
    assert set(row) == set(TABLES["performance_windows"].columns)
    assert (row["labelled"], row["accuracy"], row["recall"], row["roc_auc"]) == (
        950,
        0.8,
        None,
        0.7,
    )
    assert row["event_ids"] == ["c" * 32] and row["sources"] == [2]
    assert row["final"] is True  # a summary without the flag (before 0007) was final
    (provisional,) = performance_rows({**message, "final": False})["performance_windows"]
    assert provisional["final"] is False
    with pytest.raises(MalformedMessageError, match="final"):
        performance_rows({**message, "final": "no"})


def test_event_rows_partition_time_is_deterministic() -> None:
    (row,) = event_rows(drift_event())["drift_events"]
    assert set(row) == set(TABLES["drift_events"].columns)
    assert row["event_time"] == row["window_start"]
    concept = drift_event(window_start=None, window_end=None, evidence={"event_time": 1000.0})
    (row,) = event_rows(concept)["drift_events"]
    assert row["event_time"].timestamp() == 1000.0 and row["window_start"] is None
    (again,) = event_rows({**concept, "detected_at": 9_999.0})["drift_events"]
    assert again["event_time"] == row["event_time"]  # a later re-detection: same key


def test_rows_from_message_dispatches_on_topic_and_type() -> None:
    assert set(rows_from_message("metrics", orjson.dumps(window_message()))) == {
        "window_metrics",
        "feature_drift",
    }
    assert set(rows_from_message("alerts", orjson.dumps(drift_event()))) == {"drift_events"}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("metrics", b"not json"),
        ("metrics", b"[1, 2]"),
        ("metrics", b'{"type": "window"}'),
        ("metrics", b'{"type": "mystery"}'),
        ("metrics", orjson.dumps({**window_message(), "evaluation": {"model": "m"}})),
        ("alerts", orjson.dumps(drift_event(event_id="short"))),
        ("alerts", orjson.dumps(drift_event(detected_at="yesterday"))),
        ("alerts", orjson.dumps(drift_event(model=None))),
        ("alerts", None),
    ],
)
def test_malformed_messages_raise(kind: Any, value: bytes | None) -> None:
    with pytest.raises(MalformedMessageError):
        rows_from_message(kind, value)


def test_merge_rows_concatenates_by_table() -> None:
    merged = merge_rows([window_rows(window_message()), event_rows(drift_event()), {}])
    assert {t: len(r) for t, r in merged.items()} == {
        "window_metrics": 1,
        "feature_drift": 2,
        "drift_events": 1,
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=3),
)  # fmt: skip
MESSAGES = [
    ("metrics", window_message()),
    ("alerts", drift_event()),
    ("metrics", {"type": "performance_window", "model": "m", "model_version": "1",
                 "window_start": 60.0, "window_end": 120.0, "labelled": 9, "metrics": {"f1": 0.4}}),
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=st.data(), hostile=HOSTILE)
def test_any_field_of_any_type_gives_rows_or_a_malformed_message_error(
    data: st.DataObject, hostile: Any
) -> None:
    """Whatever one field holds, the mapping returns rows or raises MalformedMessageError
    (which the sink dead-letters): never another exception, which would stop the sink."""
    kind, message = data.draw(st.sampled_from(MESSAGES))
    path = data.draw(st.sampled_from(_paths(message)))
    value = orjson.dumps(_replaced(message, path, hostile))
    try:
        rows = rows_from_message(kind, value)
    except MalformedMessageError:
        return
    assert all(isinstance(r, list) for r in rows.values())
