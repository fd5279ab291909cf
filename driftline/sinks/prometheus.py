"""Prometheus metrics exported by driftline's processes (prometheus-client), named the Prometheus
way.

Two kinds, both defined here only:

- `WorkerMetrics`: the worker pipeline's metrics, one object built with a `CollectorRegistry`
  and handed to the stages (`streams/context.py`, `Shared.metrics`). Events are counters the
  stages increment; each closed window sets the gauges of its verdict; state the pipeline
  already holds (label-join outcomes, consumer lag) is read when Prometheus scrapes
  (`PipelineStateCollector`), never `set()` on a batch. The worker builds one on `REGISTRY`;
  a test builds its own registry and reads it with `registry.get_sample_value`.
- module-level metrics of the other processes (sinks, `retrain serve`, logging), on `REGISTRY`.

`serve()` exposes `REGISTRY` on `worker.metrics_port`. Operational metrics (`driftline_*`)
carry only labels driftline controls (topics, reasons from a fixed set); per-model metrics
(`model_*`) carry bounded model, version, feature and error-type labels (see `WorkerMetrics`).

One module of ~600 lines on purpose: the definitions are declarative (one metric each, with its
help text) and the one place an operator reads to learn what driftline exports.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "AB_DECISIONS",
    "AB_P_VALUE",
    "AB_TRAFFIC_SHARE",
    "DLQ_RECORDS",
    "LABEL_JOIN_OUTCOMES",
    "LOG_WRITE_ERRORS",
    "NOTIFICATIONS",
    "NOTIFY_REJECTED",
    "REGISTRY",
    "RETRAINING_EVALUATIONS",
    "RETRAINING_RUNS",
    "RETRAIN_ALERT_FAILURES",
    "SINK_REJECTED",
    "SINK_ROWS_WRITTEN",
    "SINK_STATE",
    "SINK_WRITE_FAILURES",
    "TRAINING_SAMPLE_REJECTED",
    "PipelineState",
    "PipelineStateCollector",
    "WorkerMetrics",
    "observe_all",
    "serve",
]

REGISTRY = CollectorRegistry(auto_describe=True)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on addr:port (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def _dead_letters(registry: CollectorRegistry) -> Counter:
    return Counter(
        "driftline_dlq_records",
        "Records sent to the dead-letter topic, by reason class.",
        ["topic", "reason"],
        registry=registry,
    )


# The worker's rejected records and the sinks' dead letters (sinks/deadletter.py) are one family.
DLQ_RECORDS = _dead_letters(REGISTRY)


# -- the worker's pipeline (driftline/streams/) ---------------------------------------------------
# Labels are bounded: only model versions with a reference profile are exported (the worker
# windows nothing else), at most MAX_FEATURE_LABELS features each, a retired version's window
# gauges are removed (VersionedSeries), and error types beyond MAX_ERROR_TYPES per model are
# exported as "other".

MAX_FEATURE_LABELS = 50
MAX_ERROR_TYPES = 20
MAX_CLASS_LABELS = 20
# a model version's window gauges are removed once another version of the model has been judged
# this many window lengths after its last window (a retired champion/challenger: VersionedSeries)
STALE_VERSION_WINDOWS = 3
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABEL_JOIN_OUTCOMES = ("joined", "evicted", "expired", "unmatched_labels", "late_labels")
_OUTPUT_SEVERITY = {None: 0.0, "warning": 1.0, "critical": 2.0}


LabelValues = tuple[str, ...]


@dataclass
class _VersionSeries:
    """What one model version exported: the label values set per gauge, and the end of its
    last window (event time; None while it was exported without one)."""

    series: dict[Gauge, set[LabelValues]] = field(default_factory=dict)
    last_end: float | None = None


class VersionedSeries:
    """The gauges of one kind of window labelled (model_name, model_version, ...), set through
    here so that what each version exported is known and can be removed with it.

    A champion and its challenger are windowed side by side (an A/B test): each keeps its own
    series. A version is retired when another version of the same model has been judged
    `STALE_VERSION_WINDOWS` window lengths after that version's last window: all its series
    go, so a retired version's verdicts neither linger on the boards nor keep an alert firing.
    The series of a model are thus bounded by the versions judged within that span (each with
    the per-version bounds of `WorkerMetrics`); a version exported without a window is never
    retired (tests).

    >>> from prometheus_client import CollectorRegistry
    >>> flag = Gauge("flag", "", ["model_name", "model_version"], registry=CollectorRegistry())
    >>> series = VersionedSeries()
    >>> series.judged("fraud", "1", (0.0, 60.0)); series.put(flag, ("fraud", "1"), 1.0)
    >>> series.judged("fraud", "2", (180.0, 240.0)); series.put(flag, ("fraud", "2"), 0.0)
    >>> sorted(series.versions("fraud"))  # v1's window ended 3 lengths before v2's: not yet
    ['1', '2']
    >>> series.judged("fraud", "2", (240.0, 300.0))
    >>> sorted(series.versions("fraud")), [s.labels for s in flag.collect()[0].samples]
    (['2'], [{'model_name': 'fraud', 'model_version': '2'}])
    """

    def __init__(self) -> None:
        self._models: dict[str, dict[str, _VersionSeries]] = {}

    def judged(self, model: str, version: str, window: tuple[float, float] | None) -> None:
        """`version` of `model` was judged on `window` (start, end; event time): other versions
        of the model whose last window ended more than STALE_VERSION_WINDOWS window lengths
        before it are retired."""
        versions = self._models.setdefault(model, {})
        current = versions.setdefault(version, _VersionSeries())
        if window is None:
            return
        start, end = window
        judged_before = end - STALE_VERSION_WINDOWS * (end - start)
        for other, exported in list(versions.items()):
            last_end = exported.last_end
            if other != version and last_end is not None and last_end < judged_before:
                self._retire(model, other)
        current.last_end = end if current.last_end is None else max(current.last_end, end)

    def put(self, gauge: Gauge, labels: LabelValues, value: float) -> None:
        """``gauge.labels(*labels).set(value)``; `labels` begin with (model, version)."""
        gauge.labels(*labels).set(value)
        model, version = labels[0], labels[1]
        exported = self._models.setdefault(model, {}).setdefault(version, _VersionSeries())
        exported.series.setdefault(gauge, set()).add(labels)

    def remove(self, gauge: Gauge, labels: LabelValues) -> None:
        """Remove one series set through `put` (a feature no longer listed)."""
        exported = self._models.get(labels[0], {}).get(labels[1])
        if exported is not None and labels in exported.series.get(gauge, set()):
            exported.series[gauge].discard(labels)
            gauge.remove(*labels)

    def exported(self, gauge: Gauge, model: str, version: str) -> set[LabelValues]:
        """The label values of `gauge` set for this model version (a copy)."""
        exported = self._models.get(model, {}).get(version)
        return set(exported.series.get(gauge, set())) if exported is not None else set()

    def versions(self, model: str) -> list[str]:
        """The versions of `model` whose series are exported."""
        return list(self._models.get(model, {}))

    def _retire(self, model: str, version: str) -> None:
        exported = self._models[model].pop(version)
        for gauge, label_sets in exported.series.items():
            for labels in label_sets:
                gauge.remove(*labels)


class JoinCounts(Protocol):
    """A partition's label-join counters since its state began (`streams/labels.py`)."""

    joined: int
    evicted: int
    expired: int
    unmatched_labels: int
    late_labels: int


class PipelineState(Protocol):
    """What `PipelineStateCollector` reads from the worker's pipeline (`streams/pipeline.py`)."""

    @property
    def labels(self) -> Mapping[int, JoinCounts]: ...

    @property
    def end_offsets(self) -> Mapping[int, int]: ...

    def processed_offset(self, partition: int) -> int | None: ...


class PipelineStateCollector(Collector):
    """``driftline_label_join_records`` and ``driftline_consumer_lag_records``, read from the
    pipeline when Prometheus scrapes (from the HTTP server's thread: the dicts are copied in
    one C call before they are read, and the pipeline never mutates an `end_offsets` it
    handed out)."""

    def __init__(self) -> None:
        self._pipeline: weakref.ref[PipelineState] | None = None

    def watch(self, pipeline: PipelineState) -> None:
        self._pipeline = weakref.ref(pipeline)

    def collect(self) -> Iterable[Metric]:
        joins = GaugeMetricFamily(
            "driftline_label_join_records",
            "Label join outcomes since the state began (summed over this worker's partitions): "
            "joined, evicted (join index full), expired (no label within the time-to-live), "
            "unmatched_labels, late_labels (performance window already final).",
            labels=["outcome"],
        )
        lag = GaugeMetricFamily(
            "driftline_consumer_lag_records",
            "Records on the predictions topic not yet processed, per partition this worker owns.",
            labels=["partition"],
        )
        pipeline = self._pipeline() if self._pipeline is not None else None
        if pipeline is not None:
            states = list(pipeline.labels.values())
            for outcome in LABEL_JOIN_OUTCOMES:
                joins.add_metric([outcome], sum(getattr(s, outcome) for s in states))
            for partition, end in sorted(pipeline.end_offsets.items()):
                processed = pipeline.processed_offset(partition)
                if processed is not None:
                    lag.add_metric([str(partition)], max(end - processed, 0))
        return [joins, lag]


class WorkerMetrics:
    """The worker pipeline's metrics, all in `registry` (a new one by default: a test's own).

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> metrics = WorkerMetrics(registry)
    >>> metrics.records_processed.labels("predictions").inc(3)
    >>> registry.get_sample_value("driftline_records_processed_total", {"topic": "predictions"})
    3.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.registry = registry

        # -- events of the stages (counters) -------------------------------------------------
        self.records_processed = Counter(
            "driftline_records_processed",
            "Records parsed and accepted by the worker.",
            ["topic"],
            registry=registry,
        )
        # one family per registry: in the worker's, the sinks' dead letters count there too
        self.dlq_records = DLQ_RECORDS if registry is REGISTRY else _dead_letters(registry)
        self.records_without_reference = Counter(
            "driftline_records_without_reference",
            "Records of model versions that have no reference profile (counted, not windowed).",
            registry=registry,
        )
        self.labels_processed = Counter(
            "driftline_labels_processed",
            "Label records parsed and handed to the join.",
            registry=registry,
        )
        self.late_records = Counter(
            "driftline_late_records",
            "Records whose event-time window had already closed when they arrived.",
            registry=registry,
        )
        self.windows_closed = Counter(
            "driftline_windows_closed",
            "Windows closed and evaluated, by status (evaluated, insufficient_samples).",
            ["status"],
            registry=registry,
        )
        self.drift_events = Counter(
            "driftline_drift_events",
            "Drift events published to the alerts topic.",
            ["type", "severity"],
            registry=registry,
        )
        self.checkpoints_dropped = Counter(
            "driftline_checkpoints_dropped",
            "Checkpoints that could not be restored (corrupt, or written by another version) "
            "and were dropped: the partition (stage1) or model (stage2) started fresh.",
            ["stage"],
            registry=registry,
        )
        self.concept_outcomes_late = Counter(
            "driftline_concept_outcomes_late",
            "Joined predictions not fed to the concept-drift detectors because the model's "
            "ordered stream had already passed them (a replay after a restart, or a label later "
            "than windows.allowed_lateness_seconds allows).",
            registry=registry,
        )
        self.predictions = Counter(
            "model_predictions",
            "Predictions received per model.",
            ["model_name"],
            registry=registry,
        )
        self.errors = Counter(
            "model_errors",
            "Failed predictions per model and error type.",
            ["model_name", "error_type"],
            registry=registry,
        )
        self.latency = Histogram(
            "model_inference_latency_seconds",
            "Serving latency reported with each prediction.",
            ["model_name"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        # -- state the pipeline holds, read at scrape time -----------------------------------
        self.state = PipelineStateCollector()
        registry.register(self.state)

        # -- the verdict of each model version's last window (set when it closes) ------------
        # labelled model_version: a champion and its challenger are windowed side by side
        # (an A/B test) and each keeps its own series; a retired version's go (VersionedSeries)
        self.drift_score = Gauge(
            "model_drift_score",
            "Statistic of each drift test of a feature in the model version's last closed "
            "window (one series per test).",
            ["model_name", "model_version", "feature_name", "test_type"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "model_drift_detected",
            "1 if the feature drifted in the model version's last closed window (after "
            "correction and effect gates), else 0. feature_name=__multivariate__ for the joint "
            "tests.",
            ["model_name", "model_version", "feature_name"],
            registry=registry,
        )
        self.accuracy = Gauge(
            "model_accuracy",
            "Accuracy of the last final performance window.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.precision = Gauge(
            "model_precision",
            "Precision of the last final performance window.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.recall = Gauge(
            "model_recall",
            "Recall of the last final performance window.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.f1 = Gauge(
            "model_f1",
            "F1 of the last final performance window.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.baseline_accuracy = Gauge(
            "model_baseline_accuracy",
            "Accuracy of the model version on its reference data.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.label_coverage = Gauge(
            "model_label_coverage",
            "Share of the last final window's predictions that got a label.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.estimated_accuracy = Gauge(
            "model_estimated_accuracy",
            "Label-free (CBPE) accuracy estimate of the model version's last closed window.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.provisional_accuracy = Gauge(
            "model_provisional_accuracy",
            "Accuracy of the model version's latest provisional performance window (labels so far, "
            "before the label horizon; model_accuracy is the last final one).",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.provisional_label_coverage = Gauge(
            "model_provisional_label_coverage",
            "Share of the latest provisional performance window's predictions labelled so far.",
            ["model_name", "model_version"],
            registry=registry,
        )
        # output drift (detectors/output.py)
        self.score_drift = Gauge(
            "model_score_drift",
            "1-Wasserstein distance (score units) between the score histogram of the model's "
            "last closed window and the reference's.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.prediction_class_ratio = Gauge(
            "model_prediction_class_ratio",
            "Share of each predicted class in the model version's last closed window (at most "
            "20 classes).",
            ["model_name", "model_version", "class"],
            registry=registry,
        )
        self.low_confidence_ratio = Gauge(
            "model_low_confidence_ratio",
            "Share of the last closed window's predictions whose score lies in "
            "low_confidence_band.",
            ["model_name", "model_version"],
            registry=registry,
        )
        self.output_drift_detected = Gauge(
            "model_output_drift_detected",
            "1 if the output signal drifted in the model version's last closed window (Holm "
            "over the output signals and effect gates), else 0. signal: score, class_balance, "
            "low_confidence, prediction (regression) or probability:<class>.",
            ["model_name", "model_version", "signal"],
            registry=registry,
        )
        self.output_drift_severity = Gauge(
            "model_output_drift_severity",
            "Output-drift verdict of the model version's last closed window: 0 none, 1 warning, "
            "2 critical (output drift and a CBPE-estimated accuracy drop agree).",
            ["model_name", "model_version"],
            registry=registry,
        )
        # data quality (detectors/quality.py)
        self.feature_missing_ratio = Gauge(
            "model_feature_missing_ratio",
            "Share of the model version's last closed window's records in which the feature was "
            "missing (null, NaN or absent).",
            ["model_name", "model_version", "feature_name"],
            registry=registry,
        )
        self.data_quality_issues = Gauge(
            "model_data_quality_issues",
            "Features with a data-quality finding in the model version's last closed window, per "
            "check: absent, missing_rate, type_errors, out_of_range, constant, new_feature "
            "(reported only).",
            ["model_name", "model_version", "check"],
            registry=registry,
        )
        # feature importance (detectors/importance.py)
        self.feature_importance = Gauge(
            "model_feature_importance",
            "Share of the model's total feature importance held by each feature in its last "
            "judged window (mean |attribution|, or mutual information with the prediction "
            "without attributions); at most `importance.max_features` features per model "
            "version. One series per version: a champion and its challenger are judged apart.",
            ["model_name", "model_version", "feature_name"],
            registry=registry,
        )
        self.importance_drift_detected = Gauge(
            "model_importance_drift_detected",
            "1 when the feature importances of the model version's last judged window moved "
            "(importance_drift).",
            ["model_name", "model_version"],
            registry=registry,
        )
        # label sets exported so far, to keep them bounded
        self._error_types: dict[str, set[str]] = {}
        # versions retire apart per kind of window: performance windows turn final a label
        # horizon after the closed windows of the same minutes, so judged against those a
        # live version's accuracy would be retired and come back, window after window
        self._windows = VersionedSeries()  # the gauges of closed windows
        self._performance = VersionedSeries()  # of performance windows (final, provisional)

    def watch(self, pipeline: PipelineState) -> None:
        """Read the label-join outcomes and consumer lag from `pipeline` at scrape time."""
        self.state.watch(pipeline)

    # -- a batch of predictions ------------------------------------------------------------

    def export_predictions(self, model: str, latency_seconds: Any, errors: Any) -> None:
        """Counters of one batch of a model's predictions (numpy arrays)."""
        import numpy as np

        from driftline.detectors.sketch import error_type  # one rule for the type, as windows

        self.predictions.labels(model).inc(len(latency_seconds))
        observe_all(self.latency.labels(model), latency_seconds[np.isfinite(latency_seconds)])
        known = self._error_types.setdefault(model, set())
        for error, count in Tally(e for e in errors.tolist() if e is not None).items():
            kind = error_type(error)
            if kind not in known:
                if len(known) >= MAX_ERROR_TYPES:
                    kind = "other"
                else:
                    known.add(kind)
            self.errors.labels(model, kind).inc(count)

    # -- a closed window -------------------------------------------------------------------

    def export_window(self, evaluation: dict[str, Any], estimated_accuracy: float | None) -> None:
        """Gauges of one closed window (`WindowEvaluation.to_dict()`), under its model version."""
        model, version = evaluation["model"], str(evaluation["model_version"])
        window = (evaluation["window_start"], evaluation["window_end"])
        self._windows.judged(model, version, window)
        put = self._windows.put
        for name, feature in list(evaluation["features"].items())[:MAX_FEATURE_LABELS]:
            put(self.drift_detected, (model, version, name), 1.0 if feature["drifted"] else 0.0)
            for test, result in feature["tests"].items():
                if result.get("statistic") is not None:
                    put(self.drift_score, (model, version, name, test), result["statistic"])
        multivariate = evaluation.get("multivariate")
        if multivariate is not None:
            drifted = 1.0 if multivariate["drifted"] else 0.0
            put(self.drift_detected, (model, version, "__multivariate__"), drifted)
        self.export_output(model, version, evaluation.get("output"))
        self.export_quality(model, version, evaluation.get("data_quality"))
        self.export_importance(model, version, evaluation.get("importance"), window)
        if estimated_accuracy is not None:
            put(self.estimated_accuracy, (model, version), estimated_accuracy)

    def export_output(self, model: str, version: str, output: dict[str, Any] | None) -> None:
        """Gauges of a window's output verdict (`OutputEvaluation.to_dict()`); nothing when the
        window had no output evaluation."""
        if output is None:
            return
        put = self._windows.put
        severity = _OUTPUT_SEVERITY.get(output.get("severity"), 0.0)
        put(self.output_drift_severity, (model, version), severity)
        signals = output.get("signals") or {}
        for name, signal in list(signals.items())[: MAX_CLASS_LABELS + 4]:
            drifted = 1.0 if signal["drifted"] else 0.0
            put(self.output_drift_detected, (model, version, name), drifted)
        score = signals.get("score")
        if score is not None and score.get("effect") is not None:
            put(self.score_drift, (model, version), score["effect"])
        # classes of the reference absent from this window are exported as 0, not left stale
        ratios = {k: 0.0 for k in output.get("reference_class_ratio") or {}}
        ratios.update(output.get("class_ratio") or {})
        for name, ratio in list(ratios.items())[:MAX_CLASS_LABELS]:
            put(self.prediction_class_ratio, (model, version, name), ratio)
        low = (output.get("confidence") or {}).get("low_confidence_ratio")
        if low is not None:
            put(self.low_confidence_ratio, (model, version), low)

    def export_quality(self, model: str, version: str, quality: dict[str, Any] | None) -> None:
        """Gauges of a window's data-quality verdict (`DataQualityEvaluation.to_dict()`)."""
        if quality is None:
            return
        put = self._windows.put
        missing = list((quality.get("missing_rate") or {}).items())[:MAX_FEATURE_LABELS]
        for name, rate in missing:
            put(self.feature_missing_ratio, (model, version, name), rate)
        for check, count in (quality.get("issues") or {}).items():
            put(self.data_quality_issues, (model, version, check), count)

    def export_importance(
        self,
        model: str,
        version: str,
        importance: dict[str, Any] | None,
        window: tuple[float, float] | None = None,
    ) -> None:
        """Gauges of a window's importance verdict (`ImportanceEvaluation.to_dict()`) for one
        model version (`window`: start, end; a retired version's series go, `VersionedSeries`).

        Bounded: one series per listed feature (at most the verdict's `max_features`); features
        no longer listed are removed. A window closed without a verdict keeps the last shares
        but clears the drift flag: an alert on it must not fire for ever once windows stop
        being judged (attributions no longer sent, too few records)."""
        self._windows.judged(model, version, window)
        flag = (model, version)
        if importance is None or importance.get("status") != "evaluated":
            if flag in self._windows.exported(self.importance_drift_detected, model, version):
                self._windows.put(self.importance_drift_detected, flag, 0.0)
            return
        shares = {f["feature"]: f["share"] for f in importance.get("features") or []}
        shares = dict(list(shares.items())[:MAX_FEATURE_LABELS])
        for labels in self._windows.exported(self.feature_importance, model, version):
            if labels[2] not in shares:
                self._windows.remove(self.feature_importance, labels)
        for name, share in shares.items():
            self._windows.put(self.feature_importance, (model, version, name), share)
        drifted = 1.0 if importance.get("drifted") else 0.0
        self._windows.put(self.importance_drift_detected, flag, drifted)

    # -- a performance window --------------------------------------------------------------

    def export_performance(
        self,
        model: str,
        version: str,
        metrics: dict[str, float | None],
        coverage: float | None,
        baseline: float | None,
        window: tuple[float, float] | None = None,
    ) -> None:
        """Gauges of a final performance window of one model version (`window`: start, end;
        a retired version's series go, `VersionedSeries`)."""
        self._performance.judged(model, version, window)
        for gauge, value in (
            (self.accuracy, metrics.get("accuracy")),
            (self.precision, metrics.get("precision")),
            (self.recall, metrics.get("recall")),
            (self.f1, metrics.get("f1")),
            (self.label_coverage, coverage),
            (self.baseline_accuracy, baseline),
        ):
            if value is not None:
                self._performance.put(gauge, (model, version), value)

    def export_provisional_performance(
        self,
        model: str,
        version: str,
        accuracy: float | None,
        coverage: float | None,
        window: tuple[float, float] | None = None,
    ) -> None:
        """Gauges of a provisional performance window (the final gauges stay as they are)."""
        self._performance.judged(model, version, window)
        if accuracy is not None:
            self._performance.put(self.provisional_accuracy, (model, version), accuracy)
        if coverage is not None:
            self._performance.put(self.provisional_label_coverage, (model, version), coverage)


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
RETRAIN_ALERT_FAILURES = Counter(
    "driftline_retrain_alert_failures",
    "Attempts of `retrain serve` to handle an alert that failed (retried; never skipped).",
    registry=REGISTRY,
)
TRAINING_SAMPLE_REJECTED = Counter(
    "driftline_training_sample_rejected",
    "Records the training sample sink skipped and dead-lettered, by topic and rejection kind.",
    ["topic", "kind"],
    registry=REGISTRY,
)

# -- notifications (`driftline notify`, driftline/sinks/notify.py) ----------------------------

NOTIFICATIONS = Counter(
    "driftline_notifications",
    "Notifications by channel and outcome (sent, failed: retried later).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
NOTIFY_REJECTED = Counter(
    "driftline_notify_rejected",
    "Malformed messages the notifier skipped (and sent to the dead-letter topic), by topic.",
    ["topic", "reason"],
    registry=REGISTRY,
)


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


LOG_WRITE_ERRORS = Counter(
    "driftline_log_write_errors",
    "Log records that could not be written (disk full, file size limit, unwritable log file): "
    "the process goes on without them and says how many it lost once it can write again.",
    registry=REGISTRY,
)
