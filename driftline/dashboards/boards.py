"""The boards, declared as plain data (:class:`Panel`: title, query, datasource; :class:`Dashboard`):
what the tests read and the renderer turns into Grafana JSON. One declaration per board; it reads
best whole, as the board looks in Grafana, panel after panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "postgres"}

Kind = Literal["timeseries", "stat", "table", "bargauge"]


@dataclass(frozen=True)
class Panel:
    title: str
    query: str  # PromQL, or SQL when datasource == "postgres"
    unit: str = "short"
    legend: str = ""
    kind: Kind = "timeseries"
    datasource: Literal["prometheus", "postgres"] = "prometheus"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    description: str = ""
    variables: bool = True  # the model / version template variables
    annotations: bool = True  # drift events from PostgreSQL
    tags: tuple[str, ...] = field(default=("driftline",))


MODEL = 'model_name=~"$model"'
VERSION_FILTER = "model = '$model' AND model_version IN ($version)"
# metrics with a model_version label (the gauges of closed and performance windows, importance:
# a champion and its challenger each have their own): Grafana formats the multi-value $version
# as a regex alternation for Prometheus, so the board's version selection applies to them too
MODEL_VERSION = f'{MODEL}, model_version=~"$version"'

OPERATIONS = Dashboard(
    uid="driftline-operations",
    title="driftline / operations",
    description="The workers and the sink: throughput, dead letters, lag, windows.",
    variables=False,
    annotations=False,
    panels=(
        Panel("Worker up", 'up{job=~"driftline.*"}', kind="stat", legend="{{instance}}"),
        Panel(
            "Records accepted per second",
            "sum by (topic) (rate(driftline_records_processed_total[1m]))",
            unit="ops",
            legend="{{topic}}",
        ),
        Panel(
            "Dead-lettered records per second",
            "sum by (reason) (rate(driftline_dlq_records_total[5m]))",
            unit="ops",
            legend="{{reason}}",
        ),
        Panel(
            "Dead-letter share",
            "sum(rate(driftline_dlq_records_total[5m])) / clamp_min(sum(rate(driftline_records_processed_total[5m])) + sum(rate(driftline_dlq_records_total[5m])), 1e-9)",
            unit="percentunit",
        ),
        Panel(
            "Consumer lag (records)",
            "sum by (instance) (driftline_consumer_lag_records)",
            legend="{{instance}}",
        ),
        Panel(
            "Windows closed per minute, by status",
            "sum by (status) (increase(driftline_windows_closed_total[1m]))",
            legend="{{status}}",
        ),
    ),
)

MODEL_PERFORMANCE = Dashboard(
    uid="driftline-model-performance",
    title="driftline / model performance",
    description="Realised performance (labels joined), the label-free estimate, traffic, "
    "errors and latency of one model.",
    panels=(
        Panel(
            "Accuracy: realised, estimated (no labels needed), baseline",
            f'label_replace(max by (model_name, model_version) (model_accuracy{{{MODEL_VERSION}}}), "series", "realised", "", "")'
            f' or label_replace(max by (model_name, model_version) (model_estimated_accuracy{{{MODEL_VERSION}}}), "series", "estimated", "", "")'
            f' or label_replace(max by (model_name, model_version) (model_baseline_accuracy{{{MODEL_VERSION}}}), "series", "baseline", "", "")',
            unit="percentunit",
            legend="{{model_name}} v{{model_version}} {{series}}",
        ),
        Panel(
            "Precision, recall, F1 (last final window)",
            f'label_replace(max by (model_name, model_version) (model_precision{{{MODEL_VERSION}}}), "metric", "precision", "", "")'
            f' or label_replace(max by (model_name, model_version) (model_recall{{{MODEL_VERSION}}}), "metric", "recall", "", "")'
            f' or label_replace(max by (model_name, model_version) (model_f1{{{MODEL_VERSION}}}), "metric", "f1", "", "")',
            unit="percentunit",
            legend="{{model_name}} v{{model_version}} {{metric}}",
        ),
        Panel(
            "Label coverage of the last final window",
            f"max by (model_name, model_version) (model_label_coverage{{{MODEL_VERSION}}})",
            unit="percentunit",
            legend="{{model_name}} v{{model_version}}",
        ),
        Panel(
            "Predictions per second",
            f"sum by (model_name) (rate(model_predictions_total{{{MODEL}}}[1m]))",
            unit="ops",
            legend="{{model_name}}",
        ),
        Panel(
            "Failed predictions per second, by type",
            f"sum by (model_name, error_type) (rate(model_errors_total{{{MODEL}}}[1m]))",
            unit="ops",
            legend="{{model_name}} {{error_type}}",
        ),
        Panel(
            "Serving latency p50, p95, p99",
            f'label_replace(histogram_quantile(0.5, sum by (model_name, le) (rate(model_inference_latency_seconds_bucket{{{MODEL}}}[1m]))), "q", "p50", "", "")'
            f' or label_replace(histogram_quantile(0.95, sum by (model_name, le) (rate(model_inference_latency_seconds_bucket{{{MODEL}}}[1m]))), "q", "p95", "", "")'
            f' or label_replace(histogram_quantile(0.99, sum by (model_name, le) (rate(model_inference_latency_seconds_bucket{{{MODEL}}}[1m]))), "q", "p99", "", "")',
            unit="s",
            legend="{{model_name}} {{q}}",
        ),
        Panel(
            "History: realised vs estimated accuracy per version",
            "SELECT w.window_start AS time, w.model_version || ' estimated' AS metric,"
            " w.estimated_accuracy AS value FROM window_metrics w"
            f" WHERE $__timeFilter(w.window_start) AND w.{VERSION_FILTER.replace('model_version', 'w.model_version')}"
            " AND w.estimated_accuracy IS NOT NULL"
            " UNION ALL SELECT p.window_start, p.model_version || ' realised', p.accuracy"
            " FROM performance_windows p"
            f" WHERE $__timeFilter(p.window_start) AND p.{VERSION_FILTER.replace('model_version', 'p.model_version')}"
            " AND p.accuracy IS NOT NULL AND p.final"
            " UNION ALL SELECT p.window_start,"
            " p.model_version || ' provisional (labels still arriving)', p.accuracy"
            " FROM performance_windows p"
            f" WHERE $__timeFilter(p.window_start) AND p.{VERSION_FILTER.replace('model_version', 'p.model_version')}"
            " AND p.accuracy IS NOT NULL AND NOT p.final ORDER BY 1",
            unit="percentunit",
            datasource="postgres",
            description="From PostgreSQL: every window since the store's retention began."
            " Realised: windows whose labels are all in (final). Provisional: windows whose"
            " labels are still arriving (their coverage is in the performance windows table);"
            " the final figure replaces them once the label horizon passes.",
        ),
        Panel(
            "History: latency percentiles and error rate per version",
            "SELECT window_start AS time, model_version || ' p50' AS metric,"
            " latency_p50_seconds AS value FROM window_metrics"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " UNION ALL SELECT window_start, model_version || ' p99', latency_p99_seconds"
            f" FROM window_metrics WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " ORDER BY 1",
            unit="s",
            datasource="postgres",
        ),
        Panel(
            "Performance windows",
            "SELECT window_start AS time, model_version AS version,"
            " CASE WHEN final THEN 'final' ELSE 'provisional (coverage '"
            # chr(37) is '%': a literal one reads as a placeholder where the query is checked
            " || coalesce(round(label_coverage::numeric * 100)::text, '?') || ' ' || chr(37) || ')'"
            " END AS status,"
            " labelled, label_coverage,"
            " accuracy, precision, recall, f1, roc_auc, baseline_accuracy, accuracy_drop"
            f" FROM performance_windows WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " ORDER BY window_start DESC LIMIT 200",
            kind="table",
            datasource="postgres",
            width=24,
            description="status: final once every label is in (or the label horizon passed);"
            " provisional while labels are still arriving: its accuracy may still change.",
        ),
    ),
)

DRIFT_DETECTION = Dashboard(
    uid="driftline-drift-detection",
    title="driftline / drift detection",
    description="Which features drifted, by how much, and the drift events of one model.",
    panels=(
        Panel(
            "Drifted features (last closed window)",
            "max by (model_name, model_version, feature_name)"
            f" (model_drift_detected{{{MODEL_VERSION}}}) == 1",
            kind="table",
            legend="{{model_name}} v{{model_version}} {{feature_name}}",
        ),
        Panel(
            "Drift score: normalised Wasserstein per feature",
            "max by (model_name, model_version, feature_name)"
            f' (model_drift_score{{{MODEL_VERSION}, test_type="wasserstein"}})',
            legend="{{model_name}} v{{model_version}} {{feature_name}}",
        ),
        Panel(
            "Drift events per minute, by type",
            "sum by (type, severity) (increase(driftline_drift_events_total[1m]))",
            legend="{{type}} {{severity}}",
        ),
        Panel(
            "Output drift: score distance to the reference (1-Wasserstein)",
            f"max by (model_name, model_version) (model_score_drift{{{MODEL_VERSION}}})",
            legend="{{model_name}} v{{model_version}}",
            description="Warning effect threshold: 0.02 (min_effect_score).",
        ),
        Panel(
            "Output drift: predicted class shares",
            "max by (model_name, model_version, class)"
            f" (model_prediction_class_ratio{{{MODEL_VERSION}}})",
            unit="percentunit",
            legend="{{model_name}} v{{model_version}} class {{class}}",
        ),
        Panel(
            "Output drift: low-confidence share",
            f"max by (model_name, model_version) (model_low_confidence_ratio{{{MODEL_VERSION}}})",
            unit="percentunit",
            legend="{{model_name}} v{{model_version}}",
        ),
        Panel(
            "Data quality: missing values per feature",
            "max by (model_name, model_version, feature_name)"
            f" (model_feature_missing_ratio{{{MODEL_VERSION}}})",
            unit="percentunit",
            legend="{{model_name}} v{{model_version}} {{feature_name}}",
        ),
        Panel(
            "History: drift score per feature",
            "SELECT window_start AS time, feature || ' v' || model_version AS metric,"
            " coalesce(effect, statistic) AS value FROM feature_drift"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER} ORDER BY 1",
            datasource="postgres",
            description="The verdict test's effect size per window (from PostgreSQL).",
        ),
        Panel(
            "History: share of drifted features per window",
            "SELECT window_start AS time, model_version AS metric, drift_share AS value"
            f" FROM window_metrics WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " ORDER BY 1",
            unit="percentunit",
            datasource="postgres",
        ),
        Panel(
            "History: missing values per feature",
            "SELECT window_start AS time, feature || ' v' || model_version AS metric,"
            " missing_rate AS value FROM feature_drift"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " AND feature IN (SELECT feature FROM feature_drift"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER} AND missing_rate > 0)"
            " ORDER BY 1",
            unit="percentunit",
            datasource="postgres",
        ),
        Panel(
            "Drift events",
            "SELECT event_time AS time, model_version AS version, type, severity, feature, test,"
            " statistic, p_value FROM drift_events"
            f" WHERE $__timeFilter(event_time) AND {VERSION_FILTER}"
            " ORDER BY event_time DESC LIMIT 200",
            kind="table",
            datasource="postgres",
            width=24,
        ),
    ),
)

FEATURE_IMPORTANCE = Dashboard(
    uid="driftline-feature-importance",
    title="driftline / feature importance",
    description="What the model relies on, per window: each feature's share of the total "
    "importance (mean |attribution| of the attributions logged with predictions, e.g. SHAP), "
    "compared with the reference profile's; importance_drift events when a share moves by "
    "importance.min_share_change (docs/DRIFT_DETECTION.md).",
    panels=(
        Panel(
            "Feature importance share (last judged window)",
            f"sort_desc(max by (feature_name, model_version) (model_feature_importance{{{MODEL_VERSION}}}))",
            unit="percentunit",
            kind="bargauge",
            legend="{{feature_name}} v{{model_version}}",
        ),
        Panel(
            "Feature importance share over time",
            f"max by (feature_name, model_version) (model_feature_importance{{{MODEL_VERSION}}})",
            unit="percentunit",
            legend="{{feature_name}} v{{model_version}}",
        ),
        Panel(
            "Importance drift in the last judged window",
            f"max by (model_name, model_version) (model_importance_drift_detected{{{MODEL_VERSION}}})",
            kind="stat",
            legend="{{model_name}} v{{model_version}}",
            description="1 when a feature's share of the importance moved by at least "
            "importance.min_share_change against the reference.",
        ),
        Panel(
            "Top 5 features, change of share over the last hour",
            "topk(5, abs(max by (feature_name, model_version)"
            f" (delta(model_feature_importance{{{MODEL_VERSION}}}[1h]))))",
            unit="percentunit",
            legend="{{feature_name}} v{{model_version}}",
        ),
        Panel(
            "History: importance share per feature (window vs reference)",
            "SELECT window_start AS time, feature || ' v' || model_version AS metric,"
            " share AS value FROM feature_importance"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " UNION ALL SELECT window_start, feature || ' v' || model_version || ' reference',"
            " reference_share FROM feature_importance"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER} AND changed"
            " ORDER BY 1",
            unit="percentunit",
            datasource="postgres",
            description="From PostgreSQL (table feature_importance); the reference share is "
            "drawn for the features that changed.",
        ),
        Panel(
            "History: rank per feature",
            "SELECT window_start AS time, feature || ' v' || model_version AS metric,"
            " rank AS value FROM feature_importance"
            f" WHERE $__timeFilter(window_start) AND {VERSION_FILTER} ORDER BY 1",
            datasource="postgres",
            description="1 = most important.",
        ),
        Panel(
            "Importance drift events",
            "SELECT event_time AS time, model_version AS version, feature, severity, test,"
            " statistic, evidence->>'summary' AS summary FROM drift_events"
            f" WHERE $__timeFilter(event_time) AND {VERSION_FILTER}"
            " AND type = 'importance_drift' ORDER BY event_time DESC LIMIT 200",
            kind="table",
            datasource="postgres",
            width=24,
        ),
    ),
)

DASHBOARDS = (OPERATIONS, MODEL_PERFORMANCE, DRIFT_DETECTION, FEATURE_IMPORTANCE)

# Boards whose Prometheus panels may stay empty after a worker has run (none: the
# feature-importance board shows data once predictions carry attributions).
NO_DATA_YET: frozenset[str] = frozenset()

MODEL_VARIABLE_QUERY = "label_values(model_predictions_total, model_name)"
VERSION_VARIABLE_QUERY = (
    "SELECT DISTINCT model_version FROM window_metrics WHERE model = '$model' ORDER BY 1"
)
ANNOTATION_SQL = (
    "SELECT event_time AS time, type || ' ' || coalesce(feature, test, '') AS text,"
    " severity AS tags FROM drift_events"
    f" WHERE $__timeFilter(event_time) AND {VERSION_FILTER} ORDER BY 1"
)
