"""Grafana dashboards, built with Grafana's own SDK so that every panel's query can be tested.

`driftline dashboards write` regenerates `deploy/grafana/dashboards/*.json` (provisioned by
docker-compose's Grafana). Each board is first declared here as plain data (:class:`Panel`:
title, query, datasource), which the tests read: every PromQL panel runs against the real
Prometheus (`tests/service/test_prometheus_scrape.py`), every SQL panel against the real
PostgreSQL with data present (`tests/service/test_dashboards.py`), and the committed JSON must
be what :func:`render` makes of it. The declarations are then turned into Grafana's typed
builders (`grafana-foundation-sdk`, the optional extra `dashboards`).

Boards: ``operations`` (the worker), ``model_performance``, ``drift_detection`` and
``feature_importance``, the three model boards with the template variables ``model`` (from
Prometheus) and ``version`` (from PostgreSQL), drift events from PostgreSQL as annotations, and
PostgreSQL panels for history beyond Prometheus' retention.

SQL panels use Grafana's macros ``$__timeFilter(column)``, ``$__timeFrom()``, ``$__timeTo()``
and the variables ``$model`` / ``$version``; :func:`expand_sql` expands them the way Grafana
does, for the tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DASHBOARDS",
    "Dashboard",
    "Panel",
    "expand_sql",
    "promql_panels",
    "render",
    "sql_panels",
    "write_dashboards",
]

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
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
            f'label_replace(max by (model_name) (model_accuracy{{{MODEL}}}), "series", "realised", "", "")'
            f' or label_replace(max by (model_name) (model_estimated_accuracy{{{MODEL}}}), "series", "estimated", "", "")'
            f' or label_replace(max by (model_name) (model_baseline_accuracy{{{MODEL}}}), "series", "baseline", "", "")',
            unit="percentunit",
            legend="{{model_name}} {{series}}",
        ),
        Panel(
            "Precision, recall, F1 (last final window)",
            f'label_replace(max by (model_name) (model_precision{{{MODEL}}}), "metric", "precision", "", "")'
            f' or label_replace(max by (model_name) (model_recall{{{MODEL}}}), "metric", "recall", "", "")'
            f' or label_replace(max by (model_name) (model_f1{{{MODEL}}}), "metric", "f1", "", "")',
            unit="percentunit",
            legend="{{model_name}} {{metric}}",
        ),
        Panel(
            "Label coverage of the last final window",
            f"max by (model_name) (model_label_coverage{{{MODEL}}})",
            unit="percentunit",
            legend="{{model_name}}",
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
            " AND p.accuracy IS NOT NULL ORDER BY 1",
            unit="percentunit",
            datasource="postgres",
            description="From PostgreSQL: every window since the store's retention began.",
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
            "SELECT window_start AS time, model_version AS version, labelled, label_coverage,"
            " accuracy, precision, recall, f1, roc_auc, baseline_accuracy, accuracy_drop"
            f" FROM performance_windows WHERE $__timeFilter(window_start) AND {VERSION_FILTER}"
            " ORDER BY window_start DESC LIMIT 200",
            kind="table",
            datasource="postgres",
            width=24,
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
            f"max by (model_name, feature_name) (model_drift_detected{{{MODEL}}}) == 1",
            kind="table",
            legend="{{model_name}} {{feature_name}}",
        ),
        Panel(
            "Drift score: normalised Wasserstein per feature",
            f'max by (model_name, feature_name) (model_drift_score{{{MODEL}, test_type="wasserstein"}})',
            legend="{{model_name}} {{feature_name}}",
        ),
        Panel(
            "Drift events per minute, by type",
            "sum by (type, severity) (increase(driftline_drift_events_total[1m]))",
            legend="{{type}} {{severity}}",
        ),
        Panel(
            "Output drift: score distance to the reference (1-Wasserstein)",
            f"max by (model_name) (model_score_drift{{{MODEL}}})",
            legend="{{model_name}}",
            description="Warning effect threshold: 0.02 (min_effect_score).",
        ),
        Panel(
            "Output drift: predicted class shares",
            f"max by (model_name, class) (model_prediction_class_ratio{{{MODEL}}})",
            unit="percentunit",
            legend="{{model_name}} class {{class}}",
        ),
        Panel(
            "Output drift: low-confidence share",
            f"max by (model_name) (model_low_confidence_ratio{{{MODEL}}})",
            unit="percentunit",
            legend="{{model_name}}",
        ),
        Panel(
            "Data quality: missing values per feature",
            f"max by (model_name, feature_name) (model_feature_missing_ratio{{{MODEL}}})",
            unit="percentunit",
            legend="{{model_name}} {{feature_name}}",
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
            f"sort_desc(max by (feature_name) (model_feature_importance{{{MODEL}}}))",
            unit="percentunit",
            kind="bargauge",
            legend="{{feature_name}}",
        ),
        Panel(
            "Feature importance share over time",
            f"max by (feature_name) (model_feature_importance{{{MODEL}}})",
            unit="percentunit",
            legend="{{feature_name}}",
        ),
        Panel(
            "Importance drift in the last judged window",
            f"max by (model_name) (model_importance_drift_detected{{{MODEL}}})",
            kind="stat",
            legend="{{model_name}}",
            description="1 when a feature's share of the importance moved by at least "
            "importance.min_share_change against the reference.",
        ),
        Panel(
            "Top 5 features, change of share over the last hour",
            f"topk(5, abs(max by (feature_name) (delta(model_feature_importance{{{MODEL}}}[1h]))))",
            unit="percentunit",
            legend="{{feature_name}}",
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


def promql_panels(*, with_data: bool | None = None) -> list[tuple[Dashboard, Panel]]:
    """(board, panel) of every PromQL panel; ``with_data=True`` leaves out the boards whose
    metrics are not exported yet, ``False`` keeps only those."""
    return [
        (d, p)
        for d in DASHBOARDS
        for p in d.panels
        if p.datasource == "prometheus"
        and (with_data is None or (d.uid not in NO_DATA_YET) == with_data)
    ]


def sql_panels() -> list[tuple[str, str]]:
    """(name, SQL) of every PostgreSQL query: panels, the version variable, annotations."""
    found = [
        (f"{d.uid}: {p.title}", p.query)
        for d in DASHBOARDS
        for p in d.panels
        if p.datasource == "postgres"
    ]
    if any(d.variables for d in DASHBOARDS):
        found.append(("variable: version", VERSION_VARIABLE_QUERY))
    if any(d.annotations for d in DASHBOARDS):
        found.append(("annotation: drift events", ANNOTATION_SQL))
    return found


def expand_sql(
    query: str, start: datetime, end: datetime, model: str, versions: list[str]
) -> tuple[str, list[Any]]:
    """Grafana's macro and variable expansion, with parameters instead of literals (tests).

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> expand_sql("x WHERE $__timeFilter(w) AND model = '$model' AND v IN ($version)", t, t, "m", ["1", "2"])
    ('x WHERE w BETWEEN %s AND %s AND model = %s AND v IN (%s, %s)', [datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 'm', '1', '2'])
    """
    params: list[Any] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("$__timeFilter"):
            params.extend([start, end])
            return f"{match.group(1)} BETWEEN %s AND %s"
        if token == "$__timeFrom()":
            params.append(start)
            return "%s"
        if token == "$__timeTo()":
            params.append(end)
            return "%s"
        if token == "'$model'":
            params.append(model)
            return "%s"
        params.extend(versions)
        return ", ".join(["%s"] * len(versions))

    pattern = r"\$__timeFilter\(([^)]+)\)|\$__timeFrom\(\)|\$__timeTo\(\)|'\$model'|\$version"
    return re.sub(pattern, replace, query), params


# -- Grafana JSON through the SDK --------------------------------------------------------------


def _sdk_panel(panel: Panel) -> Any:
    from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
    from grafana_foundation_sdk.builders import prometheus as prom
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    builders: dict[str, Any] = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "table": table.Panel,
        "bargauge": bargauge.Panel,
    }
    builder = builders[panel.kind]().title(panel.title).unit(panel.unit).height(8).span(panel.width)
    if panel.description:
        builder = builder.description(panel.description)
    if panel.datasource == "postgres":
        source = DataSourceRef(type_val=POSTGRES["type"], uid=POSTGRES["uid"])
        target: Any = _SqlTarget(panel.query, "table" if panel.kind == "table" else "time_series")
    else:
        source = DataSourceRef(type_val=PROMETHEUS["type"], uid=PROMETHEUS["uid"])
        target = (
            prom.Dataquery()
            .expr(panel.query)
            .legend_format(panel.legend)
            .ref_id("A")
            .datasource(source)
        )
        if panel.kind in ("table", "bargauge", "stat"):
            target = target.instant()
    return builder.datasource(source).with_target(target)


class _SqlTarget:
    """A PostgreSQL query target (the SDK has no builder for this datasource)."""

    def __init__(self, sql: str, fmt: str) -> None:
        self.sql, self.fmt = sql, fmt

    def build(self) -> _SqlTarget:
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "A",
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
        }


class _SqlAnnotationTarget:
    def build(self) -> _SqlAnnotationTarget:
        return self

    def to_json(self) -> dict[str, object]:
        return {"refId": "Anno", "format": "table", "rawQuery": True, "rawSql": ANNOTATION_SQL}


def _sdk_dashboard(dashboard: Dashboard) -> Any:
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.models.dashboard import (
        DashboardCursorSync,
        DataSourceRef,
        VariableRefresh,
        VariableSort,
    )

    builder = (
        dash.Dashboard(dashboard.title)
        .uid(dashboard.uid)
        .tags(list(dashboard.tags))
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    if dashboard.description:
        builder = builder.description(dashboard.description)
    if dashboard.variables:
        builder = builder.with_variable(
            dash.QueryVariable("model")
            .label("model")
            .datasource(DataSourceRef(type_val=PROMETHEUS["type"], uid=PROMETHEUS["uid"]))
            .query(MODEL_VARIABLE_QUERY)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        ).with_variable(
            dash.QueryVariable("version")
            .label("version")
            .datasource(DataSourceRef(type_val=POSTGRES["type"], uid=POSTGRES["uid"]))
            .query(VERSION_VARIABLE_QUERY)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
        )
    if dashboard.annotations:
        annotation: Any = _SqlAnnotationTarget()
        builder = builder.annotation(
            dash.AnnotationQuery()
            .name("Drift events")
            .datasource(DataSourceRef(type_val=POSTGRES["type"], uid=POSTGRES["uid"]))
            .enable(True)
            .icon_color("red")
            .target(annotation)
        )
    for number, panel in enumerate(dashboard.panels, start=1):
        builder = builder.with_panel(_sdk_panel(panel).id(number))
    return builder.build()


def render(dashboard: Dashboard) -> bytes:
    """The dashboard's Grafana JSON (stable: sorted keys, two-space indent)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    text = JSONEncoder(sort_keys=True, indent=2).encode(_sdk_dashboard(dashboard))
    return json.dumps(_without_nulls(json.loads(text)), sort_keys=True, indent=2).encode() + b"\n"


def _without_nulls(value: Any) -> Any:
    """Grafana reads an absent key as its default, but not always a null one (`options`)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def write_dashboards(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / f"{dashboard.uid}.json"
        path.write_bytes(render(dashboard))
        written.append(path)
    return written
