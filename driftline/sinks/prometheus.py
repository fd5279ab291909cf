"""Prometheus metrics exported by the worker (prometheus-client), named the Prometheus way.

One module-level registry so every metric is defined once, here; `serve()` exposes it on
`worker.metrics_port`. Operational metrics (`driftline_*`) carry only labels driftline controls
(topics, reasons from a fixed set); per-model metrics (`model_*`) carry bounded model, feature
and error-type labels (see below).
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = [
    "ACCURACY",
    "BASELINE_ACCURACY",
    "CONSUMER_LAG",
    "DLQ_RECORDS",
    "DRIFT_DETECTED",
    "DRIFT_EVENTS",
    "DRIFT_SCORE",
    "ERRORS",
    "ESTIMATED_ACCURACY",
    "F1",
    "LABELS_PROCESSED",
    "LABEL_COVERAGE",
    "LABEL_JOIN",
    "LATENCY",
    "LATE_RECORDS",
    "PRECISION",
    "PREDICTIONS",
    "RECALL",
    "RECORDS_PROCESSED",
    "RECORDS_WITHOUT_REFERENCE",
    "REGISTRY",
    "WINDOWS_CLOSED",
    "export_performance",
    "export_predictions",
    "export_window",
    "serve",
]

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_PROCESSED = Counter(
    "driftline_records_processed",
    "Records parsed and accepted by the worker.",
    ["topic"],
    registry=REGISTRY,
)
DLQ_RECORDS = Counter(
    "driftline_dlq_records",
    "Records sent to the dead-letter topic, by reason class.",
    ["topic", "reason"],
    registry=REGISTRY,
)

RECORDS_WITHOUT_REFERENCE = Counter(
    "driftline_records_without_reference",
    "Records of model versions that have no reference profile (counted, not windowed).",
    registry=REGISTRY,
)
LABELS_PROCESSED = Counter(
    "driftline_labels_processed",
    "Label records parsed and handed to the join.",
    registry=REGISTRY,
)
LABEL_JOIN = Gauge(
    "driftline_label_join_records",
    "Label join outcomes since the state began (summed over this worker's partitions): "
    "joined, evicted (join index full), expired (no label within the time-to-live), "
    "unmatched_labels, late_labels (performance window already final).",
    ["outcome"],
    registry=REGISTRY,
)
LATE_RECORDS = Counter(
    "driftline_late_records",
    "Records whose event-time window had already closed when they arrived.",
    registry=REGISTRY,
)
WINDOWS_CLOSED = Counter(
    "driftline_windows_closed",
    "Windows closed and evaluated, by status (evaluated, insufficient_samples).",
    ["status"],
    registry=REGISTRY,
)
DRIFT_EVENTS = Counter(
    "driftline_drift_events",
    "Drift events published to the alerts topic.",
    ["type", "severity"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on addr:port (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


# -- per-model metrics ----------------------------------------------------------------------------
# Labels are bounded: only models with a reference profile are exported (the worker windows
# nothing else), at most MAX_FEATURE_LABELS features each, and error types beyond
# MAX_ERROR_TYPES per model are exported as "other".

MAX_FEATURE_LABELS = 50
MAX_ERROR_TYPES = 20
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DRIFT_SCORE = Gauge(
    "model_drift_score",
    "Statistic of each drift test of a feature in the model's last closed window.",
    ["model_name", "feature_name", "test_type"],
    registry=REGISTRY,
)
DRIFT_DETECTED = Gauge(
    "model_drift_detected",
    "1 if the feature drifted in the model's last closed window (after correction and effect "
    "gates), else 0. feature_name=__multivariate__ for the joint tests.",
    ["model_name", "feature_name"],
    registry=REGISTRY,
)
ACCURACY = Gauge(
    "model_accuracy",
    "Accuracy of the last final performance window.",
    ["model_name"],
    registry=REGISTRY,
)
PRECISION = Gauge(
    "model_precision",
    "Precision of the last final performance window.",
    ["model_name"],
    registry=REGISTRY,
)
RECALL = Gauge(
    "model_recall",
    "Recall of the last final performance window.",
    ["model_name"],
    registry=REGISTRY,
)
F1 = Gauge(
    "model_f1", "F1 of the last final performance window.", ["model_name"], registry=REGISTRY
)
BASELINE_ACCURACY = Gauge(
    "model_baseline_accuracy", "Accuracy on the reference data.", ["model_name"], registry=REGISTRY
)
LABEL_COVERAGE = Gauge(
    "model_label_coverage",
    "Share of the last final window's predictions that got a label.",
    ["model_name"],
    registry=REGISTRY,
)
ESTIMATED_ACCURACY = Gauge(
    "model_estimated_accuracy",
    "Label-free (CBPE) accuracy estimate of the model's last closed window.",
    ["model_name"],
    registry=REGISTRY,
)
PREDICTIONS = Counter(
    "model_predictions", "Predictions received per model.", ["model_name"], registry=REGISTRY
)
ERRORS = Counter(
    "model_errors",
    "Failed predictions per model and error type.",
    ["model_name", "error_type"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "model_inference_latency_seconds",
    "Serving latency reported with each prediction.",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "driftline_consumer_lag_records",
    "Records on the predictions topic not yet processed, per partition this worker owns.",
    ["partition"],
    registry=REGISTRY,
)


def export_window(evaluation: dict[str, Any], estimated_accuracy: float | None) -> None:
    """Gauges of one closed window (`WindowEvaluation.to_dict()`)."""
    model = evaluation["model"]
    for name, feature in list(evaluation["features"].items())[:MAX_FEATURE_LABELS]:
        DRIFT_DETECTED.labels(model, name).set(1.0 if feature["drifted"] else 0.0)
        for test, result in feature["tests"].items():
            if result.get("statistic") is not None:
                DRIFT_SCORE.labels(model, name, test).set(result["statistic"])
    multivariate = evaluation.get("multivariate")
    if multivariate is not None:
        DRIFT_DETECTED.labels(model, "__multivariate__").set(
            1.0 if multivariate["drifted"] else 0.0
        )
    if estimated_accuracy is not None:
        ESTIMATED_ACCURACY.labels(model).set(estimated_accuracy)


def export_performance(
    model: str, metrics: dict[str, float | None], coverage: float | None, baseline: float | None
) -> None:
    for gauge, value in (
        (ACCURACY, metrics.get("accuracy")),
        (PRECISION, metrics.get("precision")),
        (RECALL, metrics.get("recall")),
        (F1, metrics.get("f1")),
        (LABEL_COVERAGE, coverage),
        (BASELINE_ACCURACY, baseline),
    ):
        if value is not None:
            gauge.labels(model).set(value)


_error_types: dict[str, set[str]] = {}


def export_predictions(model: str, latency_seconds: Any, errors: Any) -> None:
    """Counters of one batch of a model's predictions (numpy arrays)."""
    import numpy as np

    PREDICTIONS.labels(model).inc(len(latency_seconds))
    histogram = LATENCY.labels(model)
    for value in latency_seconds[np.isfinite(latency_seconds)].tolist():
        histogram.observe(value)
    known = _error_types.setdefault(model, set())
    for error, count in Tally(e for e in errors.tolist() if e is not None).items():
        kind = str(error).split(":", 1)[0].strip()[:40] or "error"
        if kind not in known:
            if len(known) >= MAX_ERROR_TYPES:
                kind = "other"
            else:
                known.add(kind)
        ERRORS.labels(model, kind).inc(count)


CHECKPOINTS_DROPPED = Counter(
    "driftline_checkpoints_dropped",
    "Checkpoints that could not be restored (corrupt, or written by another version) and were "
    "dropped: the partition (stage1) or model (stage2) started fresh.",
    ["stage"],
    registry=REGISTRY,
)
