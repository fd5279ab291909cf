"""Row mapping of the PostgreSQL sink (pure): one message of the metrics or alerts topic -> rows.

:func:`rows_from_message` turns one message (the JSON the worker publishes, see
``ModelStage._publish_window`` / ``_publish_performance`` (streams/stage2.py) and
``config/schemas/drift_event.v1.schema.json``) into rows per table, or raises
:class:`~driftline.sinks.base.MalformedMessageError`. Rows hold plain Python values only
(str, int, float, bool, datetime, lists, and dicts for the jsonb columns): no database driver
types; the writer (:mod:`driftline.sinks.store`) adapts them. The columns of each table are
declared in :data:`driftline.sinks.schema.TABLES`.

One function per message shape: :func:`window_rows` (``type: window``: the ``window_metrics``
row, the ``feature_drift`` rows and, when the window's importances were judged, the
``feature_importance`` rows), :func:`performance_rows`, :func:`event_rows`.

Slightly above 400 lines: the message checks and the row mappings of the three shapes share one
set of field readers (`_str`, `_opt_float`, ...) whose error messages name the field; split, the
readers would move to a third module that only these two use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from driftline.sinks.base import MalformedMessageError, json_object

__all__ = [
    "MalformedMessageError",
    "Rows",
    "event_rows",
    "importance_rows",
    "merge_rows",
    "performance_rows",
    "rows_from_message",
    "to_timestamp",
    "window_rows",
]

Rows = dict[str, list[dict[str, Any]]]
"""Rows per table name; each row maps column name to a plain Python value."""


def to_timestamp(value: Any, what: str) -> datetime:
    """Epoch seconds (the worker's time unit) as an aware UTC datetime.

    >>> to_timestamp(86400.5, "window_start").isoformat()
    '1970-01-02T00:00:00.500000+00:00'
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedMessageError(f"{what}: expected epoch seconds, got {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedMessageError(f"{what}: {value!r} is not a representable time") from exc


def _opt_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedMessageError(f"{what}: expected a number or null, got {value!r}")
    return float(value)


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise MalformedMessageError(f"{what}: expected an integer or null, got {value!r}")
    return int(value)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedMessageError(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _any_str(value: Any, what: str) -> str:
    """A string, possibly empty (an `operational` event's model and model_version)."""
    if not isinstance(value, str):
        raise MalformedMessageError(f"{what}: expected a string, got {value!r}")
    return value


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedMessageError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedMessageError(f"{what}: expected a list of strings")
    return list(value)


def _int_list(value: Any, what: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise MalformedMessageError(f"{what}: expected a list of integers")
    return list(value)


def _fields(
    source: Mapping[str, Any], convert: Callable[[Any, str], Any], names: Iterable[str], where: str
) -> dict[str, Any]:
    """Columns named as their source field: ``{name: convert(source[name])}``; an error names
    the field as ``<where><name>``.

    >>> _fields({"p_value": 1, "alpha": None}, _opt_float, ("p_value", "alpha"), "features.x.")
    {'p_value': 1.0, 'alpha': None}
    """
    return {name: convert(source.get(name), f"{where}{name}") for name in names}


def window_rows(message: Mapping[str, Any]) -> Rows:
    """Rows of a ``type: window`` summary: one ``window_metrics`` row and one
    ``feature_drift`` row per tested feature.

    >>> rows = window_rows({"type": "window", "sources": [0], "event_ids": [],
    ...     "estimated_performance": {"accuracy": 0.9},
    ...     "evaluation": {"model": "m", "model_version": "1", "window_start": 0,
    ...         "window_end": 60, "status": "insufficient_samples", "drifted": False,
    ...         "reasons": [], "drifted_features": [], "drift_share": 0.0, "features": {},
    ...         "multivariate": None, "prediction_tests": {},
    ...         "summary": {"n_records": 3, "error_rate": 0.0}}})
    >>> [(t, len(r)) for t, r in rows.items()], rows["window_metrics"][0]["estimated_accuracy"]
    ([('window_metrics', 1), ('feature_drift', 0)], 0.9)
    """
    ev = _mapping(message.get("evaluation"), "evaluation")
    model = _str(ev.get("model"), "evaluation.model")
    version = _str(ev.get("model_version"), "evaluation.model_version")
    start = to_timestamp(ev.get("window_start"), "evaluation.window_start")
    end = to_timestamp(ev.get("window_end"), "evaluation.window_end")
    summary = _mapping(ev.get("summary"), "evaluation.summary")
    estimate = message.get("estimated_performance") or {}
    estimate = _mapping(estimate, "estimated_performance")
    n_records = _opt_int(summary.get("n_records"), "evaluation.summary.n_records")
    if n_records is None:
        raise MalformedMessageError("evaluation.summary.n_records: required")
    drifted = ev.get("drifted")
    if not isinstance(drifted, bool):
        raise MalformedMessageError(f"evaluation.drifted: expected true or false, got {drifted!r}")
    key = {"model": model, "model_version": version, "window_start": start, "window_end": end}
    window = {
        **key,
        "status": _str(ev.get("status"), "evaluation.status"),
        "drifted": drifted,
        "drift_share": _opt_float(ev.get("drift_share"), "evaluation.drift_share"),
        "n_records": n_records,
        "error_count": _opt_int(summary.get("error_count"), "evaluation.summary.error_count"),
        **_fields(summary, _opt_float, _SUMMARY_FLOATS, "evaluation.summary."),
        "estimated_accuracy": _opt_float(estimate.get("accuracy"), "estimated accuracy"),
        "estimated_performance": dict(estimate),
        **_fields(ev, _str_list, ("reasons", "drifted_features"), "evaluation."),
        "multivariate": ev.get("multivariate"),
        "prediction_tests": ev.get("prediction_tests"),
        "summary": dict(summary),
        "event_ids": _str_list(message.get("event_ids"), "event_ids"),
        "sources": _int_list(message.get("sources"), "sources"),
        **_output_columns(ev.get("output")),
        **_quality_columns(ev.get("data_quality")),
    }
    features = []
    for name, raw in _mapping(ev.get("features") or {}, "evaluation.features").items():
        where = f"evaluation.features.{name}."
        f = _mapping(raw, where[:-1])
        tests = _mapping(f.get("tests") or {}, f"{where}tests")
        verdict = _opt_str(f.get("verdict_test"), f"{where}verdict_test")
        verdict_result = _mapping(tests.get(verdict or "") or {}, f"{where}tests.{verdict}")
        feature_drifted = f.get("drifted")
        if not isinstance(feature_drifted, bool):
            raise MalformedMessageError(f"{where}drifted: expected true or false")
        features.append(
            {
                **key,
                "feature": _str(name, "feature name"),
                "test": verdict,
                "statistic": _opt_float(verdict_result.get("statistic"), f"{where}statistic"),
                **_fields(f, _opt_str, ("kind", "effect_measure"), where),
                **_fields(f, _opt_float, _FEATURE_FLOATS, where),
                **_fields(f, _opt_int, ("n", "missing", "invalid"), where),
                "drifted": feature_drifted,
                "critical": bool(f.get("critical", False)),
                "tests": dict(tests),
            }
        )
    rows: Rows = {"window_metrics": [window], "feature_drift": features}
    importance = importance_rows(key, ev.get("importance"))
    if importance:
        rows["feature_importance"] = importance
    return rows


def importance_rows(key: Mapping[str, Any], raw: Any) -> list[dict[str, Any]]:
    """``feature_importance`` rows of a window's importance verdict (``evaluation.importance``,
    ``ImportanceEvaluation.to_dict()``): one per listed feature (at most ``max_features``),
    none when the window was not judged.

    >>> rows = importance_rows({"model": "m"}, {"source": "attributions", "status": "evaluated",
    ...     "drifted": True, "n": 900, "features": [{"feature": "a", "importance": 0.4,
    ...     "reference_importance": 0.3, "share": 0.6, "reference_share": 0.45,
    ...     "share_change": 0.15, "rank": 1, "reference_rank": 1, "changed": True}]})
    >>> rows[0]["feature"], rows[0]["share_change"], rows[0]["window_drifted"]
    ('a', 0.15, True)
    """
    if raw is None:
        return []
    importance = _mapping(raw, "evaluation.importance")
    if importance.get("status") != "evaluated":
        return []
    drifted = importance.get("drifted")
    if not isinstance(drifted, bool):
        raise MalformedMessageError("evaluation.importance.drifted: expected true or false")
    source = _str(importance.get("source"), "evaluation.importance.source")
    n = _opt_int(importance.get("n"), "evaluation.importance.n")
    features = importance.get("features") or []
    if not isinstance(features, list):
        raise MalformedMessageError("evaluation.importance.features: expected a list")
    out = []
    for i, raw_feature in enumerate(features):
        where = f"evaluation.importance.features[{i}]."
        f = _mapping(raw_feature, where[:-1])
        changed = f.get("changed")
        if not isinstance(changed, bool):
            raise MalformedMessageError(f"{where}changed: expected true or false")
        out.append(
            {
                **key,
                "feature": _str(f.get("feature"), f"{where}feature"),
                "source": source,
                **_fields(f, _opt_float, _IMPORTANCE_FLOATS, where),
                **_fields(f, _opt_int, ("rank", "reference_rank"), where),
                "changed": changed,
                "window_drifted": drifted,
                "n": n,
            }
        )
    return out


_IMPORTANCE_FLOATS = (
    "importance", "reference_importance", "share", "reference_share", "share_change"
)  # fmt: skip


_SUMMARY_FLOATS = (
    "error_rate", "latency_p50_seconds", "latency_p95_seconds", "latency_p99_seconds", "mean_score"
)  # fmt: skip
_FEATURE_FLOATS = ("p_value", "adjusted_p_value", "alpha", "effect", "min_effect", "missing_rate")


def _output_columns(raw: Any) -> dict[str, Any]:
    """Columns of a window's output verdict (``evaluation.output``; null when not evaluated)."""
    if raw is None:
        return dict.fromkeys(
            ("output_drifted", "output_severity", "score_drift", "low_confidence_ratio", "output")
        )
    output = _mapping(raw, "evaluation.output")
    drifted = output.get("drifted")
    if not isinstance(drifted, bool):
        raise MalformedMessageError("evaluation.output.drifted: expected true or false")
    signals = _mapping(output.get("signals") or {}, "evaluation.output.signals")
    score = _mapping(signals.get("score") or {}, "evaluation.output.signals.score")
    confidence = _mapping(output.get("confidence") or {}, "evaluation.output.confidence")
    return {
        "output_drifted": drifted,
        "output_severity": _opt_str(output.get("severity"), "evaluation.output.severity"),
        "score_drift": _opt_float(score.get("effect"), "evaluation.output.signals.score.effect"),
        "low_confidence_ratio": _opt_float(
            confidence.get("low_confidence_ratio"), "output.confidence.low_confidence_ratio"
        ),
        "output": dict(output),
    }


def _quality_columns(raw: Any) -> dict[str, Any]:
    """Columns of a window's data-quality verdict (``evaluation.data_quality``)."""
    if raw is None:
        return {"data_quality_issues": None, "data_quality": None}
    quality = _mapping(raw, "evaluation.data_quality")
    findings = quality.get("findings") or []
    if not isinstance(findings, list):
        raise MalformedMessageError("evaluation.data_quality.findings: expected a list")
    issues = sum(1 for f in findings if isinstance(f, Mapping) and f.get("check") != "new_feature")
    return {"data_quality_issues": issues, "data_quality": dict(quality)}


def performance_rows(message: Mapping[str, Any]) -> Rows:
    """The ``performance_windows`` row of a ``type: performance_window`` summary.

    >>> row = performance_rows({"type": "performance_window", "model": "m",
    ...     "model_version": "1", "window_start": 0, "window_end": 60, "labelled": 90,
    ...     "label_coverage": 0.9, "metrics": {"accuracy": 0.8}, "baseline_accuracy": 0.9,
    ...     "accuracy_drop": 0.111})["performance_windows"][0]
    >>> row["accuracy"], row["accuracy_drop"], row["event_ids"], row["final"]
    (0.8, 0.111, [], True)

    A provisional summary (`final: false`, labels still coming) has the same key: the store's
    upsert replaces it with every later summary of the window, the final one last.
    """
    metrics = _mapping(message.get("metrics") or {}, "metrics")
    labelled = _opt_int(message.get("labelled"), "labelled")
    if labelled is None:
        raise MalformedMessageError("labelled: required")
    row = {
        **_fields(message, _str, ("model", "model_version"), ""),
        **_fields(message, to_timestamp, ("window_start", "window_end"), ""),
        "labelled": labelled,
        **_fields(
            message, _opt_float, ("label_coverage", "baseline_accuracy", "accuracy_drop"), ""
        ),
        **_fields(metrics, _opt_float, _PERFORMANCE_COLUMNS, "metrics."),
        "metrics": dict(metrics),
        "event_ids": _str_list(message.get("event_ids"), "event_ids"),
        "sources": _int_list(message.get("sources"), "sources"),
        "final": _final(message.get("final", True)),
    }
    return {"performance_windows": [row]}


def _final(value: Any) -> bool:
    """`final` of a performance summary (absent: final, as every summary before 0007)."""
    if not isinstance(value, bool):
        raise MalformedMessageError(f"final: expected true or false, got {value!r}")
    return value


_PERFORMANCE_COLUMNS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def event_rows(event: Mapping[str, Any]) -> Rows:
    """The ``drift_events`` row of a drift event. Its partition key ``event_time`` is the
    window start, or for per-sample detections (``concept_drift``: no window) the event time
    of the prediction in the evidence, else ``detected_at``: deterministic for every event the
    worker publishes, so a replayed event has the same key. An ``operational`` event (a finding
    about driftline itself) may have an empty model and model_version; its event time is the
    latest time its dropped checkpoint named (``evidence.event_time``), so the same finding
    re-emitted after a restart is the same row.

    >>> row = event_rows({"schema_version": 1, "event_id": "0" * 32, "type": "concept_drift",
    ...     "severity": "warning", "model": "m", "model_version": "1", "window_start": None,
    ...     "window_end": None, "detected_at": 200.0, "evidence": {"event_time": 100.0}})
    >>> row["drift_events"][0]["event_time"].timestamp()
    100.0
    """
    event_id = _str(event.get("event_id"), "event_id")
    if not re.fullmatch(r"[0-9a-f]{32}", event_id):
        raise MalformedMessageError(f"event_id: expected 32 hex digits, got {event_id!r}")
    evidence = _mapping(event.get("evidence") or {}, "evidence")
    operational = event.get("type") == "operational"
    detected = to_timestamp(event.get("detected_at"), "detected_at")
    start_raw, end_raw = event.get("window_start"), event.get("window_end")
    start = None if start_raw is None else to_timestamp(start_raw, "window_start")
    end = None if end_raw is None else to_timestamp(end_raw, "window_end")
    if start is not None:
        event_time = start
    elif evidence.get("event_time") is not None:
        event_time = to_timestamp(evidence["event_time"], "evidence.event_time")
    else:
        event_time = detected
    row = {
        "event_id": event_id,
        "event_time": event_time,
        "schema_version": _opt_int(event.get("schema_version"), "schema_version"),
        **_fields(event, _str, ("type", "severity"), ""),
        **_fields(event, _any_str if operational else _str, ("model", "model_version"), ""),
        **_fields(event, _opt_str, ("feature", "test"), ""),
        **_fields(event, _opt_float, ("statistic", "p_value", "threshold"), ""),
        "window_start": start,
        "window_end": end,
        "detected_at": detected,
        "evidence": dict(evidence),
    }
    return {"drift_events": [row]}


def rows_from_message(kind: Literal["metrics", "alerts"], value: bytes | None) -> Rows:
    """Rows of one Kafka message of the metrics or alerts topic; :class:`MalformedMessageError`
    if it is not JSON or not one of the shapes the worker publishes.

    >>> rows_from_message("metrics", b'{"type": "something_else"}')
    Traceback (most recent call last):
    ...
    driftline.sinks.base.MalformedMessageError: unknown metrics message type 'something_else'
    """
    payload = json_object(value)
    if kind == "alerts":
        return event_rows(payload)
    kind_of = payload.get("type")
    if kind_of == "window":
        return window_rows(payload)
    if kind_of == "performance_window":
        return performance_rows(payload)
    raise MalformedMessageError(f"unknown metrics message type {kind_of!r}")


def merge_rows(batches: Iterable[Rows]) -> Rows:
    """Concatenate row sets table by table."""
    merged: Rows = {}
    for rows in batches:
        for table, items in rows.items():
            merged.setdefault(table, []).extend(items)
    return merged
