"""Prometheus metrics exported by the worker (prometheus-client), named the Prometheus way.

One module-level registry so every metric is defined once, here; `serve()` exposes it on
`worker.metrics_port`. Operational metrics (`driftline_*`) carry only labels driftline controls
(topics, reasons from a fixed set); per-model metrics (`model_*`) carry bounded model, feature
and error-type labels (see below).

One module of ~550 lines on purpose: the definitions are declarative (one metric each, with its
help text) and the one place an operator reads to learn what driftline exports.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "AB_DECISIONS",
    "AB_P_VALUE",
    "AB_TRAFFIC_SHARE",
    "ACCURACY",
    "BASELINE_ACCURACY",
    "CONSUMER_LAG",
    "DATA_QUALITY_ISSUES",
    "DLQ_RECORDS",
    "DRIFT_DETECTED",
    "DRIFT_EVENTS",
    "DRIFT_SCORE",
    "ERRORS",
    "ESTIMATED_ACCURACY",
    "F1",
    "FEATURE_IMPORTANCE",
    "FEATURE_MISSING_RATIO",
    "IMPORTANCE_DRIFT_DETECTED",
    "LABELS_PROCESSED",
    "LABEL_COVERAGE",
    "LABEL_JOIN",
    "LATENCY",
    "LATE_RECORDS",
    "LOG_WRITE_ERRORS",
    "LOW_CONFIDENCE_RATIO",
    "OUTPUT_DRIFT_DETECTED",
    "OUTPUT_DRIFT_SEVERITY",
    "PRECISION",
    "PREDICTIONS",
    "PREDICTION_CLASS_RATIO",
    "RECALL",
    "RECORDS_PROCESSED",
    "RECORDS_WITHOUT_REFERENCE",
    "REGISTRY",
    "RETRAINING_EVALUATIONS",
    "RETRAINING_RUNS",
    "SCORE_DRIFT",
    "SINK_REJECTED",
    "SINK_ROWS_WRITTEN",
    "SINK_STATE",
    "SINK_WRITE_FAILURES",
    "WINDOWS_CLOSED",
    "export_importance",
    "export_output",
    "export_performance",
    "export_predictions",
    "export_quality",
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
    export_output(model, evaluation.get("output"))
    export_quality(model, evaluation.get("data_quality"))
    export_importance(model, evaluation.get("importance"))
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

    from driftline.detectors.sketch import error_type  # one rule for the type, as windows keep it

    PREDICTIONS.labels(model).inc(len(latency_seconds))
    observe_all(LATENCY.labels(model), latency_seconds[np.isfinite(latency_seconds)])
    known = _error_types.setdefault(model, set())
    for error, count in Tally(e for e in errors.tolist() if e is not None).items():
        kind = error_type(error)
        if kind not in known:
            if len(known) >= MAX_ERROR_TYPES:
                kind = "other"
            else:
                known.add(kind)
        ERRORS.labels(model, kind).inc(count)


def observe_all(histogram: Histogram, values: Any) -> None:
    """`histogram.observe(v)` for each value of a numpy array, as one increment per bucket
    (a batch of predictions brings thousands: one `observe` each was ~5 % of a worker's time).
    The bucket counts are those of `observe`; the sum may differ in the last bits."""
    import numpy as np

    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another prometheus-client
        for value in values.tolist():
            histogram.observe(value)
        return
    if not len(values):
        return
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    total.inc(float(values.sum()))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))


# -- retraining and A/B tests (`driftline retrain serve`, driftline/retrain/) -----------------

AB_TRAFFIC_SHARE = Gauge(
    "model_ab_traffic_share",
    "Share of the model's traffic routed to its challenger (0 when no A/B test runs).",
    ["model_name"],
    registry=REGISTRY,
)
AB_P_VALUE = Gauge(
    "model_ab_p_value",
    "Always-valid p-value (mSPRT) of the running A/B test: challenger vs champion accuracy.",
    ["model_name"],
    registry=REGISTRY,
)
AB_DECISIONS = Counter(
    "model_ab_decisions",
    "A/B test decisions: promote, rollback, inconclusive, stopped.",
    ["model_name", "decision"],
    registry=REGISTRY,
)
RETRAINING_EVALUATIONS = Counter(
    "model_retraining_evaluations",
    "Retraining policy evaluations, by outcome (fired, suppressed).",
    ["model_name", "outcome"],
    registry=REGISTRY,
)
RETRAINING_RUNS = Counter(
    "model_retraining_runs",
    "Finished retraining runs, by status (succeeded, failed, rejected).",
    ["model_name", "status"],
    registry=REGISTRY,
)


# -- output drift (detectors/output.py) -----------------------------------------------------------

MAX_CLASS_LABELS = 20
_OUTPUT_SEVERITY = {None: 0.0, "warning": 1.0, "critical": 2.0}

SCORE_DRIFT = Gauge(
    "model_score_drift",
    "1-Wasserstein distance (score units) between the score histogram of the model's last "
    "closed window and the reference's.",
    ["model_name"],
    registry=REGISTRY,
)
PREDICTION_CLASS_RATIO = Gauge(
    "model_prediction_class_ratio",
    "Share of each predicted class in the model's last closed window (at most 20 classes).",
    ["model_name", "class"],
    registry=REGISTRY,
)
LOW_CONFIDENCE_RATIO = Gauge(
    "model_low_confidence_ratio",
    "Share of the last closed window's predictions whose score lies in low_confidence_band.",
    ["model_name"],
    registry=REGISTRY,
)
OUTPUT_DRIFT_DETECTED = Gauge(
    "model_output_drift_detected",
    "1 if the output signal drifted in the model's last closed window (Holm over the output "
    "signals and effect gates), else 0. signal: score, class_balance, low_confidence, "
    "prediction (regression) or probability:<class>.",
    ["model_name", "signal"],
    registry=REGISTRY,
)
OUTPUT_DRIFT_SEVERITY = Gauge(
    "model_output_drift_severity",
    "Output-drift verdict of the model's last closed window: 0 none, 1 warning, 2 critical "
    "(output drift and a CBPE-estimated accuracy drop agree).",
    ["model_name"],
    registry=REGISTRY,
)


def export_output(model: str, output: dict[str, Any] | None) -> None:
    """Gauges of a window's output verdict (`OutputEvaluation.to_dict()`); nothing when the
    window had no output evaluation."""
    if output is None:
        return
    OUTPUT_DRIFT_SEVERITY.labels(model).set(_OUTPUT_SEVERITY.get(output.get("severity"), 0.0))
    signals = output.get("signals") or {}
    for name, signal in list(signals.items())[: MAX_CLASS_LABELS + 4]:
        OUTPUT_DRIFT_DETECTED.labels(model, name).set(1.0 if signal["drifted"] else 0.0)
    score = signals.get("score")
    if score is not None and score.get("effect") is not None:
        SCORE_DRIFT.labels(model).set(score["effect"])
    # classes of the reference absent from this window are exported as 0, not left stale
    ratios = {k: 0.0 for k in output.get("reference_class_ratio") or {}}
    ratios.update(output.get("class_ratio") or {})
    for name, ratio in list(ratios.items())[:MAX_CLASS_LABELS]:
        PREDICTION_CLASS_RATIO.labels(model, name).set(ratio)
    low = (output.get("confidence") or {}).get("low_confidence_ratio")
    if low is not None:
        LOW_CONFIDENCE_RATIO.labels(model).set(low)


# -- data quality (detectors/quality.py) ----------------------------------------------------------

FEATURE_MISSING_RATIO = Gauge(
    "model_feature_missing_ratio",
    "Share of the model's last closed window's records in which the feature was missing "
    "(null, NaN or absent).",
    ["model_name", "feature_name"],
    registry=REGISTRY,
)
DATA_QUALITY_ISSUES = Gauge(
    "model_data_quality_issues",
    "Features with a data-quality finding in the model's last closed window, per check: "
    "absent, missing_rate, type_errors, out_of_range, constant, new_feature (reported only).",
    ["model_name", "check"],
    registry=REGISTRY,
)


def export_quality(model: str, quality: dict[str, Any] | None) -> None:
    """Gauges of a window's data-quality verdict (`DataQualityEvaluation.to_dict()`)."""
    if quality is None:
        return
    for name, rate in list((quality.get("missing_rate") or {}).items())[:MAX_FEATURE_LABELS]:
        FEATURE_MISSING_RATIO.labels(model, name).set(rate)
    for check, count in (quality.get("issues") or {}).items():
        DATA_QUALITY_ISSUES.labels(model, check).set(count)


# -- sinks (driftline/sinks/base.py) --------------------------------------------------------------
# Events are counters; the state of the running sinks (backlog, paused) is read at scrape time.

SINK_ROWS_WRITTEN = Counter(
    "driftline_sink_rows_written",
    "Rows written by the sinks, per destination table (PostgreSQL: inserted or updated; "
    "duplicates skipped by DO NOTHING are not counted).",
    ["table"],
    registry=REGISTRY,
)
SINK_REJECTED = Counter(
    "driftline_sink_rejected",
    "Messages a sink skipped and dead-lettered: malformed, or refused by the destination "
    "(a bug signal: the worker wrote them).",
    ["topic"],
    registry=REGISTRY,
)
SINK_WRITE_FAILURES = Counter(
    "driftline_sink_write_failures",
    "Failed write attempts of the sinks (each is retried with backoff).",
    registry=REGISTRY,
)


class SinkState(Protocol):
    @property
    def backlog(self) -> int: ...

    @property
    def paused(self) -> bool: ...


class SinkStateCollector(Collector):
    """``driftline_sink_backlog_records`` and ``driftline_sink_paused``, read from the running
    sinks when Prometheus scrapes (no ``set()`` on the hot path)."""

    def __init__(self) -> None:
        self._sinks: weakref.WeakSet[Any] = weakref.WeakSet()

    def track(self, sink: SinkState) -> None:
        self._sinks.add(sink)

    def untrack(self, sink: SinkState) -> None:
        self._sinks.discard(sink)

    def collect(self) -> Iterable[Metric]:
        sinks: list[SinkState] = list(self._sinks)
        backlog = GaugeMetricFamily(
            "driftline_sink_backlog_records",
            "Kafka messages read by the sinks and not yet written.",
            value=sum(s.backlog for s in sinks),
        )
        paused = GaugeMetricFamily(
            "driftline_sink_paused",
            "1 while a sink's Kafka partitions are paused (buffer full or backpressure).",
            value=max((1.0 if s.paused else 0.0 for s in sinks), default=0.0),
        )
        return [backlog, paused]


SINK_STATE = SinkStateCollector()
REGISTRY.register(SINK_STATE)
CHECKPOINTS_DROPPED = Counter(
    "driftline_checkpoints_dropped",
    "Checkpoints that could not be restored (corrupt, or written by another version) and were "
    "dropped: the partition (stage1) or model (stage2) started fresh.",
    ["stage"],
    registry=REGISTRY,
)
CONCEPT_OUTCOMES_LATE = Counter(
    "driftline_concept_outcomes_late",
    "Joined predictions not fed to the concept-drift detectors because the model's ordered "
    "stream had already passed them (a replay after a restart, or a label later than "
    "windows.allowed_lateness_seconds allows).",
    registry=REGISTRY,
)


# -- feature importance (detectors/importance.py) -------------------------------------------------

FEATURE_IMPORTANCE = Gauge(
    "model_feature_importance",
    "Share of the model's total feature importance held by each feature in its last judged "
    "window (mean |attribution|, or mutual information with the prediction without "
    "attributions); at most `importance.max_features` features per model.",
    ["model_name", "feature_name"],
    registry=REGISTRY,
)
IMPORTANCE_DRIFT_DETECTED = Gauge(
    "model_importance_drift_detected",
    "1 when the feature importances of the model's last judged window moved (importance_drift).",
    ["model_name"],
    registry=REGISTRY,
)
_importance_features: dict[str, set[str]] = {}


def export_importance(model: str, importance: dict[str, Any] | None) -> None:
    """Gauges of a window's importance verdict (`ImportanceEvaluation.to_dict()`): one series
    per listed feature (bounded by the verdict's `max_features`); features no longer listed
    are removed so the series of a model stay bounded over time. A window closed without a
    verdict keeps the last shares but clears the drift flag: an alert on it must not fire for
    ever once windows stop being judged (attributions no longer sent, too few records)."""
    if importance is None or importance.get("status") != "evaluated":
        if model in _importance_features:
            IMPORTANCE_DRIFT_DETECTED.labels(model).set(0.0)
        return
    shares = {f["feature"]: f["share"] for f in importance.get("features") or []}
    shares = dict(list(shares.items())[:MAX_FEATURE_LABELS])
    for name in _importance_features.get(model, set()) - set(shares):
        FEATURE_IMPORTANCE.remove(model, name)
    for name, share in shares.items():
        FEATURE_IMPORTANCE.labels(model, name).set(share)
    _importance_features[model] = set(shares)
    IMPORTANCE_DRIFT_DETECTED.labels(model).set(1.0 if importance.get("drifted") else 0.0)


LOG_WRITE_ERRORS = Counter(
    "driftline_log_write_errors",
    "Log records that could not be written (disk full, file size limit, unwritable log file): "
    "the process goes on without them and says how many it lost once it can write again.",
    registry=REGISTRY,
)


PROVISIONAL_ACCURACY = Gauge(
    "model_provisional_accuracy",
    "Accuracy of the model's latest provisional performance window (labels so far, before "
    "the label horizon; model_accuracy is the last final one).",
    ["model_name"],
    registry=REGISTRY,
)
PROVISIONAL_LABEL_COVERAGE = Gauge(
    "model_provisional_label_coverage",
    "Share of the latest provisional performance window's predictions labelled so far.",
    ["model_name"],
    registry=REGISTRY,
)


def export_provisional_performance(
    model: str, accuracy: float | None, coverage: float | None
) -> None:
    """Gauges of a provisional performance window (the final gauges stay as they are)."""
    if accuracy is not None:
        PROVISIONAL_ACCURACY.labels(model).set(accuracy)
    if coverage is not None:
        PROVISIONAL_LABEL_COVERAGE.labels(model).set(coverage)
