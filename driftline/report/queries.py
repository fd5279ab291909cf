"""The report's data, read from driftline's PostgreSQL store (the imperative shell).

Each function takes an open connection and returns plain rows (lists of dicts); the builder
(:mod:`driftline.report.build`) never touches the database. A table that does not exist (an
older schema, a feature not deployed yet: retraining, A/B tests, data quality) gives ``None``,
and the report leaves its section out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["ReportData", "connect", "feature_history", "feature_names", "load_report_data"]

Rows = list[dict[str, Any]]

# Tables written by later features; shown as they are when they exist.
HISTORY_TABLES = ("retraining_runs", "ab_tests", "model_version_history")
# The columns shown of the retraining tables (migration 0003_retraining.sql), in this order;
# those a store does not have yet (before 0003) are left out. The JSON columns (A/B evidence,
# run details with tracebacks) stay in the store: `driftline ab status` and `retrain history`
# show them.
HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "retraining_runs": (
        "run_id", "status", "policy", "trigger_kind", "reason", "from_version", "to_version",
        "requested_at", "finished_at", "error",
    ),
    "ab_tests": (
        "test_id", "status", "champion_version", "challenger_version", "traffic_share",
        "started_at", "decided_at", "looks", "p_value", "reason",
    ),
    "model_version_history": ("changed_at", "model_version", "from_status", "to_status", "reason"),
}  # fmt: skip
DATA_QUALITY_TABLES = ("data_quality", "data_quality_issues", "data_quality_windows")


@dataclass
class ReportData:
    """Everything the report shows, for one model (optionally one version) since a time."""

    model: str
    model_version: str | None
    since: datetime
    until: datetime
    windows: Rows = field(default_factory=list)
    features: Rows = field(default_factory=list)
    performance: Rows = field(default_factory=list)
    events: Rows = field(default_factory=list)
    open_alerts: dict[str, int] = field(default_factory=dict)  # model_version -> open alerts
    history: dict[str, Rows] = field(default_factory=dict)  # table -> rows (present tables only)
    quality: dict[str, Rows] = field(default_factory=dict)  # data-quality tables, when present


@contextmanager
def connect(url: str, schema: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A read-only connection (``schema`` first on the search path when given).

    ``schema`` must be a lower-case SQL identifier (the rule of `PostgresStore`, the one that
    creates schemas) and must exist: CommandError otherwise, never a silent fall back to
    ``public``.
    """
    from driftline.diagnose import CommandError
    from driftline.sinks.store import _SCHEMA_NAME

    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise CommandError(f"--schema {schema!r}: expected a lower-case SQL identifier")
    options = f"-c search_path={schema},public" if schema else None
    with psycopg.connect(url, connect_timeout=5, options=options, autocommit=True) as conn:
        conn.read_only = True
        if schema is not None:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if found is None:
                raise CommandError(
                    f"--schema {schema!r}: schema {schema!r} does not exist in this database"
                    " (check the name; `driftline db upgrade` creates the tables)"
                )
        yield conn


def _rows(conn: psycopg.Connection[Any], query: sql.Composable | str, params: Any) -> Rows:
    cursor = conn.execute(query, params)  # type: ignore[arg-type]
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


def _filter(model_version: str | None) -> tuple[str, list[Any]]:
    return (" AND model_version = %s", [model_version]) if model_version is not None else ("", [])


def _select(
    conn: psycopg.Connection[Any],
    table: str,
    columns: str,
    where: str,
    params: list[Any],
    model_version: str | None,
    order: str,
) -> Rows:
    """``SELECT columns FROM table WHERE where [AND model_version = ...] ORDER BY order``
    (the names are this module's constants; values go as parameters)."""
    extra, extra_params = _filter(model_version)
    return _rows(
        conn,
        f"SELECT {columns} FROM {table} WHERE {where}{extra} ORDER BY {order}",
        [*params, *extra_params],
    )


def feature_history(
    conn: psycopg.Connection[Any],
    model: str,
    feature: str,
    since: datetime,
    model_version: str | None = None,
) -> Rows:
    """One row per evaluated window of one feature, oldest first."""
    return _select(
        conn,
        "feature_drift",
        "window_start, window_end, model_version, test, statistic, p_value, adjusted_p_value,"
        " effect_measure, effect, drifted, missing_rate, n",
        "model = %s AND feature = %s AND window_start >= %s",
        [model, feature, since],
        model_version,
        "window_start, model_version",
    )


def feature_names(
    conn: psycopg.Connection[Any], model: str, since: datetime | None = None
) -> list[str]:
    """The features with drift scores for ``model`` (since ``since``), sorted."""
    rows = conn.execute(
        "SELECT DISTINCT feature FROM feature_drift WHERE model = %s AND window_start >= %s"
        " ORDER BY feature",
        (model, since or datetime.min.replace(tzinfo=UTC)),
    ).fetchall()
    return [r[0] for r in rows]


def load_report_data(
    conn: psycopg.Connection[Any],
    model: str,
    since: datetime,
    until: datetime,
    model_version: str | None = None,
) -> ReportData:
    data = ReportData(model, model_version, since, until)
    extra, params = _filter(model_version)
    base = [model, since, until, *params]

    def in_period(table: str, columns: str, order: str, time: str = "window_start") -> Rows:
        """The model's rows of ``table`` with ``time`` in the period ([] without the table)."""
        if not _exists(conn, table):
            return []
        where = f"model = %s AND {time} >= %s AND {time} < %s"
        return _select(conn, table, columns, where, [model, since, until], model_version, order)

    data.windows = in_period(
        "window_metrics",
        "model_version, window_start, window_end, status, drifted, drift_share, n_records,"
        " error_rate, latency_p50_seconds, latency_p95_seconds, latency_p99_seconds,"
        " estimated_accuracy, drifted_features, reasons",
        "window_start, model_version",
    )
    data.features = in_period(
        "feature_drift",
        "model_version, window_start, feature, kind, test, statistic, p_value, effect_measure,"
        " effect, drifted, missing, invalid, n, missing_rate",
        "window_start, model_version, feature",
    )
    # `final` (0007) is false while labels still arrive; the rows of an older store are final
    final = "final" if "final" in _columns(conn, "performance_windows") else "true AS final"
    data.performance = in_period(
        "performance_windows",
        "model_version, window_start, window_end, labelled, label_coverage, accuracy,"
        f" precision, recall, f1, roc_auc, baseline_accuracy, accuracy_drop, {final}",
        "window_start, model_version",
    )
    data.events = in_period(
        "drift_events",
        "event_time, detected_at, type, severity, model_version, feature, test, statistic, p_value",
        "event_time",
        time="event_time",
    )
    if _exists(conn, "alerts") and {"model", "model_version"} <= _columns(conn, "alerts"):
        rows = _rows(
            conn,
            "SELECT model_version, count(DISTINCT alert_id) AS open FROM alerts a"
            " WHERE model = %s AND action <> 'resolved' AND created_at >= %s AND created_at < %s"
            + extra
            + " AND NOT EXISTS (SELECT 1 FROM alerts r WHERE r.alert_id = a.alert_id"
            " AND r.action = 'resolved') GROUP BY model_version",
            base,
        )
        data.open_alerts = {str(r["model_version"]): int(r["open"]) for r in rows}
    for table in HISTORY_TABLES + DATA_QUALITY_TABLES:
        stored = _table_rows(conn, table, model, since, until)
        if stored is not None:
            target = data.quality if table in DATA_QUALITY_TABLES else data.history
            target[table] = stored
    return data


_TIME_COLUMNS = (
    "window_start", "event_time", "requested_at", "started_at", "changed_at", "created_at",
)  # fmt: skip


def _table_rows(
    conn: psycopg.Connection[Any], table: str, model: str, since: datetime, until: datetime
) -> Rows | None:
    """The model's rows of a stored table (None if absent): the columns of `HISTORY_COLUMNS`
    for the retraining tables, every column of the others; in the period when the table has a
    time column, newest first, at most 100."""
    if not _exists(conn, table):
        return None
    columns = _columns(conn, table)
    if "model" not in columns:
        return None
    times = [c for c in _TIME_COLUMNS if c in columns]
    known = [c for c in HISTORY_COLUMNS.get(table, ()) if c in columns]
    shown = sql.SQL(", ").join(map(sql.Identifier, known)) if known else sql.SQL("*")
    query = sql.SQL("SELECT {} FROM {} WHERE model = %s").format(shown, sql.Identifier(table))
    params: list[Any] = [model]
    if times:
        column = sql.Identifier(times[0])
        query += sql.SQL(" AND {} >= %s AND {} < %s ORDER BY {} DESC").format(
            column, column, column
        )
        params += [since, until]
    return _rows(conn, query + sql.SQL(" LIMIT 100"), params)
