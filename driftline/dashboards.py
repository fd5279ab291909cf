"""Grafana dashboards, generated from code so that every panel's query can be tested.

`driftline dashboards write` regenerates `deploy/grafana/dashboards/*.json` (provisioned by
docker-compose); `tests/service/test_dashboards.py` runs every query against the real Prometheus
and checks that the committed JSON is what this module generates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DASHBOARDS", "Dashboard", "Panel", "write_dashboards"]

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"


@dataclass(frozen=True)
class Panel:
    title: str
    query: str  # PromQL
    unit: str = "short"
    legend: str = ""
    kind: str = "timeseries"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]

    def to_grafana(self) -> dict[str, Any]:
        width, height = 12, 8
        panels = []
        for i, panel in enumerate(self.panels):
            panels.append(
                {
                    "id": i + 1,
                    "type": panel.kind,
                    "title": panel.title,
                    "datasource": {"type": "prometheus", "uid": "prometheus"},
                    "gridPos": {
                        "x": (i % 2) * width,
                        "y": (i // 2) * height,
                        "w": width,
                        "h": height,
                    },
                    "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                    "targets": [
                        {
                            "refId": "A",
                            "expr": panel.query,
                            "legendFormat": panel.legend,
                            "datasource": {"type": "prometheus", "uid": "prometheus"},
                        }
                    ],
                }
            )
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": ["driftline"],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "panels": panels,
        }


OPERATIONS = Dashboard(
    uid="driftline-operations",
    title="driftline / operations",
    panels=(
        Panel("Worker up", 'up{job="driftline"}', kind="stat", legend="{{instance}}"),
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
    ),
)

MODELS = Dashboard(
    uid="driftline-models",
    title="driftline / models",
    panels=(
        Panel(
            "Drifted features (last closed window)",
            "max by (model_name, feature_name) (model_drift_detected) == 1",
            kind="table",
            legend="{{model_name}} {{feature_name}}",
        ),
        Panel(
            "Drift score: normalised Wasserstein per feature",
            'max by (model_name, feature_name) (model_drift_score{test_type="wasserstein"})',
            legend="{{model_name}} {{feature_name}}",
        ),
        Panel(
            "Accuracy: realised, estimated (no labels needed), baseline",
            'label_replace(max by (model_name) (model_accuracy), "series", "realised", "", "")'
            ' or label_replace(max by (model_name) (model_estimated_accuracy), "series", "estimated", "", "")'
            ' or label_replace(max by (model_name) (model_baseline_accuracy), "series", "baseline", "", "")',
            unit="percentunit",
            legend="{{model_name}} {{series}}",
        ),
        Panel(
            "Label coverage of the last final window",
            "max by (model_name) (model_label_coverage)",
            unit="percentunit",
            legend="{{model_name}}",
        ),
        Panel(
            "Predictions per second",
            "sum by (model_name) (rate(model_predictions_total[1m]))",
            unit="ops",
            legend="{{model_name}}",
        ),
        Panel(
            "Failed predictions per second, by type",
            "sum by (model_name, error_type) (rate(model_errors_total[1m]))",
            unit="ops",
            legend="{{model_name}} {{error_type}}",
        ),
        Panel(
            "Serving latency p99",
            "histogram_quantile(0.99, sum by (model_name, le) (rate(model_inference_latency_seconds_bucket[1m])))",
            unit="s",
            legend="{{model_name}} p99",
        ),
        Panel(
            "Drift events per minute, by type",
            "sum by (type, severity) (increase(driftline_drift_events_total[1m]))",
            legend="{{type}} {{severity}}",
        ),
        Panel(
            "Consumer lag (records)",
            "sum by (instance) (driftline_consumer_lag_records)",
            legend="{{instance}}",
        ),
    ),
)

DASHBOARDS = (OPERATIONS, MODELS)


def render(dashboard: Dashboard) -> bytes:
    return (
        orjson.dumps(dashboard.to_grafana(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        + b"\n"
    )


def write_dashboards(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / f"{dashboard.uid}.json"
        path.write_bytes(render(dashboard))
        written.append(path)
    return written
