"""Every query of the boards, for the tests: the PromQL panels (run against the real
Prometheus), the SQL of panels, variables and annotations (run against the real PostgreSQL),
and Grafana's macro and variable expansion of that SQL."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from driftline.dashboards.boards import (
    ANNOTATION_SQL,
    DASHBOARDS,
    NO_DATA_YET,
    VERSION_VARIABLE_QUERY,
    Dashboard,
    Panel,
)

__all__ = ["expand_promql", "expand_sql", "promql_panels", "sql_panels"]


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


def expand_promql(query: str, model: str, versions: list[str]) -> str:
    """Grafana's variable expansion in PromQL (tests): ``$model`` as given (a single-value
    variable, so a regex such as ``.+`` works), the multi-value ``$version`` as the regex
    alternation Grafana makes of it for Prometheus.

    >>> expand_promql('m{model_name=~"$model", model_version=~"$version"}', "fraud", ["1", "2.0"])
    'm{model_name=~"fraud", model_version=~"(1|2\\\\.0)"}'
    """
    alternation = "(" + "|".join(re.escape(v) for v in versions) + ")"
    return query.replace("$model", model).replace("$version", alternation)
