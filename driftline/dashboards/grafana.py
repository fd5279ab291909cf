"""The boards rendered as Grafana JSON through Grafana's own SDK (`grafana-foundation-sdk`, the
optional extra `dashboards`), and `driftline dashboards write`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from driftline.dashboards.boards import (
    ANNOTATION_SQL,
    DASHBOARD_DIR,
    DASHBOARDS,
    MODEL_VARIABLE_QUERY,
    POSTGRES,
    PROMETHEUS,
    VERSION_VARIABLE_QUERY,
    Dashboard,
    Panel,
)

__all__ = ["render", "write_dashboards"]


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
