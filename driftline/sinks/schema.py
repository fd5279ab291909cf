"""The PostgreSQL schema of the sink: tables, versioned migrations, day partitions, retention.

- **Tables** (:data:`TABLES`): what the writer needs to know of each table the sink fills: its
  columns, natural key (the upsert's conflict target), partition column, and jsonb columns.
- **Migrations** (:func:`upgrade`): ``driftline/sinks/migrations/NNNN_*.sql``, each applied once
  in its own transaction under an advisory lock and recorded in ``schema_migrations`` with a
  checksum. They run as the schema's owner (`driftline db migrate`); the long-running processes
  only check the version (:func:`check_schema`), so they can log in as a role that cannot
  create, alter or drop anything (:mod:`driftline.sinks.grants`).
- **Partitions** (:func:`ensure_partitions`, :func:`drop_expired`): day partitions
  ``<table>_pYYYYMMDD`` (UTC days) created ahead and on demand, through the owner's
  ``driftline_create_day_partition`` function (migration 0006, SECURITY DEFINER: a writer role
  can add a day partition without owning the table); retention drops whole partitions.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from driftline.diagnose import CommandError

__all__ = [
    "MIGRATIONS_DIR",
    "PARTITIONED",
    "TABLES",
    "Migration",
    "SchemaNotReadyError",
    "Table",
    "check_schema",
    "drop_expired",
    "ensure_partitions",
    "load_migrations",
    "partition_name",
    "pending_migrations",
    "upgrade",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# -- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """What the writer needs to know of a table: its columns, natural key, partition key,
    and which columns are jsonb (the row mapping gives plain dicts there)."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    partition_column: str | None
    on_conflict: Literal["update", "nothing"]
    json_columns: frozenset[str] = frozenset()


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "window_metrics",
            (
                "model", "model_version", "window_start", "window_end", "status", "drifted",
                "drift_share", "n_records", "error_count", "error_rate", "latency_p50_seconds",
                "latency_p95_seconds", "latency_p99_seconds", "mean_score", "estimated_accuracy",
                "estimated_performance", "reasons", "drifted_features", "multivariate",
                "prediction_tests", "summary", "event_ids", "sources",
                "output_drifted", "output_severity", "score_drift", "low_confidence_ratio",
                "output", "data_quality_issues", "data_quality",
            ),
            ("model", "model_version", "window_start"),
            "window_start",
            "update",
            frozenset(
                {
                    "estimated_performance", "multivariate", "prediction_tests", "summary",
                    "output", "data_quality",
                }
            ),
        ),
        Table(
            "feature_drift",
            (
                "model", "model_version", "window_start", "window_end", "feature", "kind",
                "test", "statistic", "p_value", "adjusted_p_value", "alpha", "effect_measure",
                "effect", "min_effect", "drifted", "critical", "n", "missing", "invalid",
                "missing_rate", "tests",
            ),
            ("model", "model_version", "window_start", "feature"),
            "window_start",
            "update",
            frozenset({"tests"}),
        ),
        Table(  # 0005: feature-importance drift, one row per listed feature and window
            "feature_importance",
            (
                "model", "model_version", "window_start", "window_end", "feature", "source",
                "importance", "reference_importance", "share", "reference_share",
                "share_change", "rank", "reference_rank", "changed", "window_drifted", "n",
            ),
            ("model", "model_version", "window_start", "feature"),
            "window_start",
            "update",
        ),
        Table(
            "performance_windows",
            (
                "model", "model_version", "window_start", "window_end", "labelled",
                "label_coverage", "accuracy", "precision", "recall", "f1", "roc_auc", "metrics",
                "baseline_accuracy", "accuracy_drop", "event_ids", "sources",
                "final",  # 0007: false while labels still come (provisional)
            ),
            ("model", "model_version", "window_start"),
            "window_start",
            "update",
            frozenset({"metrics"}),
        ),
        Table(
            "drift_events",
            (
                "event_id", "event_time", "schema_version", "type", "severity", "model",
                "model_version", "feature", "test", "statistic", "p_value", "threshold",
                "window_start", "window_end", "detected_at", "evidence",
            ),
            ("event_id", "event_time"),
            "event_time",
            "nothing",  # the first detection wins: a replay must not move detected_at
            frozenset({"evidence"}),
        ),
    )
}  # fmt: skip
PARTITIONED: tuple[str, ...] = tuple(n for n, t in TABLES.items() if t.partition_column)


# -- migrations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The ``NNNN_name.sql`` files of ``directory``, in version order.

    >>> [(m.version, m.name) for m in load_migrations()][:1]
    [(1, 'initial')]
    """
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", path.name)
        if not match:
            raise ValueError(f"migration file {path.name}: expected NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


class SchemaNotReadyError(CommandError):
    """The schema is behind this version of driftline (or was never migrated): the message is
    the one line telling the user what to run."""


def _applied(conn: psycopg.Connection[Any]) -> dict[int, str] | None:
    """version -> checksum of the recorded migrations; None without ``schema_migrations``."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return None
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def pending_migrations(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """The migrations not yet recorded (read-only: any role that can read the schema can ask).
    A recorded migration whose file changed is an error."""
    migrations = load_migrations() if migrations is None else migrations
    applied = _applied(conn) or {}
    for m in migrations:
        if m.version in applied and applied[m.version] != m.checksum:
            raise RuntimeError(
                f"migration {m.version:04d}_{m.name} was changed after it was applied: "
                "add a new migration instead"
            )
    return [m for m in migrations if m.version not in applied]


def check_schema(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None
) -> None:
    """Raise :class:`SchemaNotReadyError` (one line: what is missing, what to run) unless every
    migration is applied. Run by the sink at start instead of migrating."""
    missing = pending_migrations(conn, migrations)
    if not missing:
        return
    schema_row = conn.execute("SELECT current_schema()").fetchone()
    schema = schema_row[0] if schema_row else None
    option = f" --schema {schema}" if schema and schema != "public" else ""
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
    raise SchemaNotReadyError(
        f"PostgreSQL schema {schema or '(none)'} is behind this driftline (missing migrations: "
        f"{names}): run `driftline db migrate{option}` as the schema's owner, then start again"
    )


def upgrade(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None
) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``, each in its own
    transaction under an advisory lock (two processes upgrading at once apply each once).
    Returns the names applied. A recorded migration whose file changed is an error. When
    nothing is pending it changes nothing (a role without DDL rights may call it)."""
    migrations = load_migrations() if migrations is None else migrations
    if not pending_migrations(conn, migrations):
        return []
    applied: list[str] = []
    lock = "SELECT pg_advisory_xact_lock(hashtext('driftline.migrations.' || current_schema()))"
    with conn.transaction():
        conn.execute(lock)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for migration in migrations:
        with conn.transaction():
            conn.execute(lock)
            row = conn.execute(
                "SELECT checksum FROM schema_migrations WHERE version = %s", [migration.version]
            ).fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        "it was applied: add a new migration instead"
                    )
                continue
            conn.execute(migration.sql.encode())  # no parameters: several statements allowed
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                [migration.version, migration.name, migration.checksum],
            )
            applied.append(f"{migration.version:04d}_{migration.name}")
            log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied


# -- partitions and retention ----------------------------------------------------------------


def partition_name(table: str, day: date) -> str:
    """The day partition of ``table`` holding ``day`` (UTC).

    >>> partition_name("drift_events", date(2025, 3, 1))
    'drift_events_p20250301'
    """
    return f"{table}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _partitions(conn: psycopg.Connection[Any], table: str) -> Iterator[tuple[str, str, date]]:
    """(schema, name, day) of the day partitions of ``table``."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE i.inhparent = %s::regclass",
        [table],
    ).fetchall()
    for schema, name in rows:
        match = re.fullmatch(re.escape(table) + r"_p(\d{8})", name)
        if match:
            yield schema, name, datetime.strptime(match[1], "%Y%m%d").date()


def ensure_partitions(conn: psycopg.Connection[Any], table: str, days: Iterable[date]) -> list[str]:
    """Create the missing day partitions of ``table`` (one short transaction each, by the
    owner's ``driftline_create_day_partition``; a partition another process created first is
    fine). Returns the names created."""
    created = []
    for day in sorted(set(days)):
        name = partition_name(table, day)
        try:
            with conn.transaction():
                exists = conn.execute("SELECT to_regclass(%s)", [name]).fetchone()
                if exists is not None and exists[0] is not None:
                    continue
                made = conn.execute(
                    "SELECT driftline_create_day_partition(%s, %s)", [table, day]
                ).fetchone()
            if made is not None and made[0]:
                created.append(name)
        except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            pass  # created concurrently
    return created


def drop_expired(
    conn: psycopg.Connection[Any], retention_days: int, now: datetime | None = None
) -> list[str]:
    """Drop every day partition whose whole day is older than ``retention_days`` (its end is
    at or before now - retention_days), and delete older ``alerts`` rows. Returns the names
    of the dropped partitions."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    dropped = []
    for table in PARTITIONED:
        for schema, name, day in sorted(_partitions(conn, table)):
            if _day_start(day + timedelta(days=1)) <= cutoff:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name))
                    )
                dropped.append(name)
    with conn.transaction():
        conn.execute("DELETE FROM alerts WHERE created_at < %s", [cutoff])
    if dropped:
        log.info("retention (%d days): dropped %s", retention_days, ", ".join(dropped))
    return dropped
