"""driftline's PostgreSQL store: idempotent batch writes (COPY + upsert) and alert history.

:class:`PostgresStore` holds a connection pool and does the sink's I/O: :meth:`~PostgresStore.upgrade`
(migrations and partitions, :mod:`driftline.sinks.schema`), :meth:`~PostgresStore.write` (a batch
of rows from :mod:`driftline.sinks.rows`, in one transaction: per table COPY into a temporary
table, then ``INSERT ... SELECT ... ON CONFLICT`` on the table's natural key, DO UPDATE for
windows, DO NOTHING for drift events; so redelivered messages give the same rows:
at-least-once input, exactly-once rows), retention, and the alert history of
`driftline notify` (:meth:`~PostgresStore.record_alert`, :meth:`~PostgresStore.list_alerts`).
The row mapping gives plain values; :func:`row_values` adapts them for psycopg (jsonb columns
wrapped in ``Jsonb``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import ConnectionPool

from driftline.sinks.rows import Rows, rows_from_message  # both re-exported (callers' imports)
from driftline.sinks.schema import (
    PARTITIONED,
    TABLES,
    Table,
    check_schema,
    drop_expired,
    ensure_partitions,
    partition_name,
    upgrade,
)

__all__ = [
    "TABLES",
    "PostgresStore",
    "Rows",
    "Upsert",
    "copy_upsert",
    "dedupe",
    "row_values",
    "rows_from_message",
    "upsert_statement",
]

log = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Upsert = Callable[[psycopg.Connection[Any], Table, Sequence[Mapping[str, Any]]], int]
"""How a table's rows are written inside the batch's transaction; returns rows written."""


def row_values(table: Table, row: Mapping[str, Any]) -> list[Any]:
    """The row's values in ``table.columns`` order, as psycopg adapts them (jsonb columns
    wrapped; a value already wrapped is kept)."""
    json = table.json_columns
    return [_jsonb(row[c]) if c in json else row[c] for c in table.columns]


def _jsonb(value: Any) -> Any:
    return value if value is None or isinstance(value, Jsonb) else Jsonb(value)


def dedupe(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per key (ON CONFLICT cannot touch a row twice in one statement): for
    DO UPDATE tables the last row wins, for DO NOTHING tables the first."""
    seen: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        key = tuple(row[c] for c in table.key)
        if table.on_conflict == "update" or key not in seen:
            seen[key] = row
    return list(seen.values())


# -- the store -------------------------------------------------------------------------------


def _configure(conn: psycopg.Connection[Any]) -> None:
    set_json_dumps(lambda obj: orjson.dumps(obj).decode(), context=conn)
    conn.autocommit = True  # transactions are explicit (conn.transaction())


class PostgresStore:
    """A connection pool and the operations of the sink: upgrade, partitions, writes,
    retention. ``schema`` (optional) puts everything in that schema (``search_path``), which
    is how the tests keep apart."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        max_size: int = 4,
        timeout: float = 5.0,
        days_ahead: int = 7,
    ) -> None:
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"schema {schema!r}: expected a lower-case SQL identifier")
            kwargs["options"] = f"-c search_path={schema}"
        self.schema = schema
        self.days_ahead = days_ahead
        self._known: set[str] = set()  # partitions known to exist
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs=kwargs,
            configure=_configure,
            check=ConnectionPool.check_connection,
            timeout=timeout,
            reconnect_timeout=24 * 3600.0,  # keep trying through a long outage
            open=False,
            name="driftline-sink",
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_schema(self) -> None:
        """Create ``schema`` if it does not exist (tests, benchmarks)."""
        if self.schema is None:
            return
        with self.pool.connection() as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
            ).fetchone()
            if found is None:  # checked first: a role without CREATE may upgrade() a ready schema
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )

    def drop_schema(self) -> None:
        if self.schema is None:
            raise ValueError("refusing to drop the default schema")
        with self.pool.connection() as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

    def upgrade(self) -> list[str]:
        """Apply pending migrations (creating ``schema`` if it is given), then create the
        partitions of the coming days."""
        self.create_schema()
        with self.pool.connection() as conn:
            applied = upgrade(conn)
        self.ensure_ahead()
        return applied

    def check_schema(self) -> None:
        """Raise :class:`~driftline.sinks.schema.SchemaNotReadyError` (one line telling the
        user to run `driftline db migrate`) unless every migration is applied; then create the
        partitions of the coming days. Changes no table: what the sink does at start."""
        with self.pool.connection() as conn:
            check_schema(conn)
        self.ensure_ahead()

    def ensure_ahead(self, today: date | None = None) -> list[str]:
        """Partitions of yesterday, today and the next ``days_ahead`` days (UTC)."""
        today = today or datetime.now(UTC).date()
        days = [today + timedelta(days=d) for d in range(-1, self.days_ahead + 1)]
        return self.ensure_days({t: days for t in PARTITIONED})

    def ensure_days(self, days_by_table: Mapping[str, Iterable[date]]) -> list[str]:
        created: list[str] = []
        missing = {
            table: [d for d in set(days) if partition_name(table, d) not in self._known]
            for table, days in days_by_table.items()
        }
        if not any(missing.values()):
            return created
        with self.pool.connection() as conn:
            for table, days in missing.items():
                created += ensure_partitions(conn, table, days)
                self._known.update(partition_name(table, d) for d in days)
        return created

    def retention(self, retention_days: int, now: datetime | None = None) -> list[str]:
        with self.pool.connection() as conn:
            dropped = drop_expired(conn, retention_days, now)
        self._known.difference_update(dropped)
        return dropped

    def write(self, rows: Rows, upsert: Upsert | None = None) -> dict[str, int]:
        """Write a batch in one transaction (upserts on each table's natural key, by
        :func:`copy_upsert` unless ``upsert`` is given); returns rows inserted or updated per
        table (duplicates skipped by DO NOTHING not counted)."""
        upsert = upsert or copy_upsert
        batches = {name: dedupe(TABLES[name], items) for name, items in rows.items() if items}
        needed: dict[str, set[date]] = {}
        for name, items in batches.items():
            column = TABLES[name].partition_column
            if column:
                needed[name] = {row[column].date() for row in items}
        try:
            self.ensure_days(needed)
            written: dict[str, int] = {}
            with self.pool.connection() as conn, conn.transaction():
                for name, items in batches.items():
                    written[name] = upsert(conn, TABLES[name], items)
            return written
        except psycopg.Error:
            self._known.clear()  # e.g. a partition dropped by another process: re-check
            raise

    def record_alert(self, row: Mapping[str, Any]) -> None:
        """One delivery outcome of `driftline notify` (alert, channel, action): upserted, so a
        retried delivery updates its row."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO alerts (alert_id, channel, action, event_id, status, attempts,"
                " last_error, sent_at, model, model_version, type, subject, severity, title)"
                " VALUES (%(alert_id)s, %(channel)s, %(action)s, %(event_id)s, %(status)s,"
                " %(attempts)s, %(last_error)s, %(sent_at)s, %(model)s, %(model_version)s,"
                " %(type)s, %(subject)s, %(severity)s, %(title)s)"
                " ON CONFLICT (alert_id, channel, action) DO UPDATE SET"
                " status = EXCLUDED.status, attempts = alerts.attempts + EXCLUDED.attempts,"
                " last_error = EXCLUDED.last_error,"
                " sent_at = COALESCE(EXCLUDED.sent_at, alerts.sent_at), updated_at = now()",
                dict(row),
            )

    def list_alerts(
        self, since: datetime, severity: str | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Alert history, newest first."""
        query = (
            "SELECT created_at, severity, action, model, model_version, type, subject, channel,"
            " status, attempts, last_error, alert_id, title FROM alerts WHERE created_at >= %s"
        )
        params: list[Any] = [since]
        if severity is not None:
            query += " AND severity = %s"
            params.append(severity)
        if model is not None:
            query += " AND model = %s"
            params.append(model)
        with self.pool.connection() as conn:
            cursor = conn.execute(query + " ORDER BY created_at DESC, alert_id, channel", params)
            names = [c.name for c in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def upsert_statement(table: Table, source: sql.Composable) -> sql.Composed:
    """``INSERT INTO table (columns) <source> ON CONFLICT (key) DO UPDATE / DO NOTHING``."""
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    action: sql.Composable
    if table.on_conflict == "nothing":
        action = sql.SQL("DO NOTHING")
    else:
        updates = [
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in table.columns
            if c not in table.key
        ] + [sql.SQL("written_at = now()")]
        action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates))
    return sql.SQL("INSERT INTO {} ({}) {} ON CONFLICT ({}) {}").format(
        sql.Identifier(table.name), columns, source, key, action
    )


def copy_upsert(
    conn: psycopg.Connection[Any], table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """COPY the rows into a temporary table, then one INSERT ... SELECT ... ON CONFLICT."""
    temp = sql.Identifier(f"_driftline_{table.name}")
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            ).format(temp, sql.Identifier(table.name))
        )
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(temp, columns)) as copy:
            for row in rows:
                copy.write_row(row_values(table, row))
        cur.execute(upsert_statement(table, sql.SQL("SELECT {} FROM {}").format(columns, temp)))
        return cur.rowcount
