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
does, for the tests (:func:`expand_promql` the variables of PromQL panels: the importance
metrics carry a ``model_version`` label, so the board's ``version`` selection applies to them).

Modules: :mod:`~driftline.dashboards.boards` (the declarations), :mod:`~driftline.dashboards.
queries` (every query, for the tests), :mod:`~driftline.dashboards.grafana` (rendering, writing).
"""

from driftline.dashboards.boards import DASHBOARD_DIR, DASHBOARDS, Dashboard, Panel
from driftline.dashboards.grafana import render, write_dashboards
from driftline.dashboards.queries import expand_promql, expand_sql, promql_panels, sql_panels

__all__ = [
    "DASHBOARDS",
    "DASHBOARD_DIR",
    "Dashboard",
    "Panel",
    "expand_promql",
    "expand_sql",
    "promql_panels",
    "render",
    "sql_panels",
    "write_dashboards",
]
