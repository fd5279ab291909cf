"""driftline's PostgreSQL store: schema migrations, daily partitions, retention, idempotent writes.

Three layers, from pure to I/O:

- **Row mapping** (pure): :func:`rows_from_message` turns one message of the metrics or alerts
  topic (the JSON the worker publishes, see ``Pipeline._publish_window`` /
  ``_publish_performance`` and ``config/schemas/drift_event.v1.schema.json``) into rows per
  table, or raises :class:`MalformedMessageError`.
- **Schema** (:func:`upgrade`, :func:`ensure_partitions`, :func:`drop_expired`): versioned SQL
  migrations in ``driftline/sinks/migrations/NNNN_*.sql``, each applied once in its own
  transaction and recorded in ``schema_migrations``; day partitions ``<table>_pYYYYMMDD``
  (UTC days) created ahead and on demand; retention drops whole partitions.
- **Writes** (:class:`PostgresStore`): a batch of rows is written in one transaction, per table
  COPY into a temporary table then ``INSERT ... SELECT ... ON CONFLICT`` on the table's natural
  key (DO UPDATE for windows, DO NOTHING for drift events), so redelivered messages give the
  same rows: at-least-once input, exactly-once rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import ConnectionPool

__all__ = [
    "MIGRATIONS_DIR",
    "PARTITIONED",
    "TABLES",
    "MalformedMessageError",
    "Migration",
    "PostgresStore",
    "Rows",
    "Table",
    "drop_expired",
    "ensure_partitions",
    "event_rows",
    "load_migrations",
    "merge_rows",
    "partition_name",
    "performance_rows",
    "rows_from_message",
    "to_timestamp",
    "upgrade",
    "window_rows",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Rows = dict[str, list[dict[str, Any]]]
"""Rows per table name; each row maps column name to a Python value psycopg can adapt."""


class MalformedMessageError(ValueError):
    """A message of the metrics or alerts topic that is not what the worker publishes."""


# -- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """What the writer needs to know of a table: its columns, natural key, partition key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    partition_column: str | None
    on_conflict: Literal["update", "nothing"]


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
        ),
        Table(
            "performance_windows",
            (
                "model", "model_version", "window_start", "window_end", "labelled",
                "label_coverage", "accuracy", "precision", "recall", "f1", "roc_auc", "metrics",
                "baseline_accuracy", "accuracy_drop", "event_ids", "sources",
            ),
            ("model", "model_version", "window_start"),
            "window_start",
            "update",
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
        ),
    )
}  # fmt: skip
PARTITIONED: tuple[str, ...] = tuple(n for n, t in TABLES.items() if t.partition_column)


# -- row mapping (pure) ----------------------------------------------------------------------


def to_timestamp(value: Any, what: str) -> datetime:
    """Epoch seconds (the worker's time unit) as an aware UTC datetime.

    >>> to_timestamp(86400.5, "window_start").isoformat()
    '1970-01-02T00:00:00.500000+00:00'
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedMessageError(f"{what}: expected epoch seconds, got {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedMessageError(f"{what}: {value!r} is not a representable time") from exc


def _opt_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedMessageError(f"{what}: expected a number or null, got {value!r}")
    return float(value)


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise MalformedMessageError(f"{what}: expected an integer or null, got {value!r}")
    return int(value)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedMessageError(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedMessageError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _opt_json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedMessageError(f"{what}: expected a list of strings")
    return list(value)


def _int_list(value: Any, what: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise MalformedMessageError(f"{what}: expected a list of integers")
    return list(value)


def window_rows(message: Mapping[str, Any]) -> Rows:
    """Rows of a ``type: window`` summary: one ``window_metrics`` row and one
    ``feature_drift`` row per tested feature.

    >>> rows = window_rows({"type": "window", "sources": [0], "event_ids": [],
    ...     "estimated_performance": {"accuracy": 0.9},
    ...     "evaluation": {"model": "m", "model_version": "1", "window_start": 0,
    ...         "window_end": 60, "status": "insufficient_samples", "drifted": False,
    ...         "reasons": [], "drifted_features": [], "drift_share": 0.0, "features": {},
    ...         "multivariate": None, "prediction_tests": {},
    ...         "summary": {"n_records": 3, "error_rate": 0.0}}})
    >>> [(t, len(r)) for t, r in rows.items()], rows["window_metrics"][0]["estimated_accuracy"]
    ([('window_metrics', 1), ('feature_drift', 0)], 0.9)
    """
    ev = _mapping(message.get("evaluation"), "evaluation")
    model = _str(ev.get("model"), "evaluation.model")
    version = _str(ev.get("model_version"), "evaluation.model_version")
    start = to_timestamp(ev.get("window_start"), "evaluation.window_start")
    end = to_timestamp(ev.get("window_end"), "evaluation.window_end")
    summary = _mapping(ev.get("summary"), "evaluation.summary")
    estimate = message.get("estimated_performance") or {}
    estimate = _mapping(estimate, "estimated_performance")
    n_records = _opt_int(summary.get("n_records"), "evaluation.summary.n_records")
    if n_records is None:
        raise MalformedMessageError("evaluation.summary.n_records: required")
    drifted = ev.get("drifted")
    if not isinstance(drifted, bool):
        raise MalformedMessageError(f"evaluation.drifted: expected true or false, got {drifted!r}")
    window = {
        "model": model,
        "model_version": version,
        "window_start": start,
        "window_end": end,
        "status": _str(ev.get("status"), "evaluation.status"),
        "drifted": drifted,
        "drift_share": _opt_float(ev.get("drift_share"), "evaluation.drift_share"),
        "n_records": n_records,
        "error_count": _opt_int(summary.get("error_count"), "summary.error_count"),
        "error_rate": _opt_float(summary.get("error_rate"), "summary.error_rate"),
        "latency_p50_seconds": _opt_float(summary.get("latency_p50_seconds"), "latency_p50"),
        "latency_p95_seconds": _opt_float(summary.get("latency_p95_seconds"), "latency_p95"),
        "latency_p99_seconds": _opt_float(summary.get("latency_p99_seconds"), "latency_p99"),
        "mean_score": _opt_float(summary.get("mean_score"), "summary.mean_score"),
        "estimated_accuracy": _opt_float(estimate.get("accuracy"), "estimated accuracy"),
        "estimated_performance": Jsonb(dict(estimate)),
        "reasons": _str_list(ev.get("reasons"), "evaluation.reasons"),
        "drifted_features": _str_list(ev.get("drifted_features"), "drifted_features"),
        "multivariate": _opt_json(ev.get("multivariate")),
        "prediction_tests": _opt_json(ev.get("prediction_tests")),
        "summary": Jsonb(dict(summary)),
        "event_ids": _str_list(message.get("event_ids"), "event_ids"),
        "sources": _int_list(message.get("sources"), "sources"),
        **_output_columns(ev.get("output")),
        **_quality_columns(ev.get("data_quality")),
    }
    features = []
    for name, raw in _mapping(ev.get("features") or {}, "evaluation.features").items():
        f = _mapping(raw, f"features.{name}")
        tests = _mapping(f.get("tests") or {}, f"features.{name}.tests")
        verdict = _opt_str(f.get("verdict_test"), f"features.{name}.verdict_test")
        verdict_result = _mapping(
            tests.get(verdict or "") or {}, f"features.{name}.tests.{verdict}"
        )
        feature_drifted = f.get("drifted")
        if not isinstance(feature_drifted, bool):
            raise MalformedMessageError(f"features.{name}.drifted: expected true or false")
        features.append(
            {
                "model": model,
                "model_version": version,
                "window_start": start,
                "window_end": end,
                "feature": _str(name, "feature name"),
                "kind": _opt_str(f.get("kind"), f"features.{name}.kind"),
                "test": verdict,
                "statistic": _opt_float(verdict_result.get("statistic"), f"{name} statistic"),
                "p_value": _opt_float(f.get("p_value"), f"features.{name}.p_value"),
                "adjusted_p_value": _opt_float(f.get("adjusted_p_value"), f"{name} adjusted p"),
                "alpha": _opt_float(f.get("alpha"), f"features.{name}.alpha"),
                "effect_measure": _opt_str(f.get("effect_measure"), f"{name} effect_measure"),
                "effect": _opt_float(f.get("effect"), f"features.{name}.effect"),
                "min_effect": _opt_float(f.get("min_effect"), f"features.{name}.min_effect"),
                "drifted": feature_drifted,
                "critical": bool(f.get("critical", False)),
                "n": _opt_int(f.get("n"), f"features.{name}.n"),
                "missing": _opt_int(f.get("missing"), f"features.{name}.missing"),
                "invalid": _opt_int(f.get("invalid"), f"features.{name}.invalid"),
                "missing_rate": _opt_float(f.get("missing_rate"), f"{name} missing_rate"),
                "tests": Jsonb(dict(tests)),
            }
        )
    return {"window_metrics": [window], "feature_drift": features}


def _output_columns(raw: Any) -> dict[str, Any]:
    """Columns of a window's output verdict (``evaluation.output``; null when not evaluated)."""
    if raw is None:
        return dict.fromkeys(
            ("output_drifted", "output_severity", "score_drift", "low_confidence_ratio", "output")
        )
    output = _mapping(raw, "evaluation.output")
    drifted = output.get("drifted")
    if not isinstance(drifted, bool):
        raise MalformedMessageError("evaluation.output.drifted: expected true or false")
    signals = _mapping(output.get("signals") or {}, "evaluation.output.signals")
    score = _mapping(signals.get("score") or {}, "evaluation.output.signals.score")
    confidence = _mapping(output.get("confidence") or {}, "evaluation.output.confidence")
    return {
        "output_drifted": drifted,
        "output_severity": _opt_str(output.get("severity"), "evaluation.output.severity"),
        "score_drift": _opt_float(score.get("effect"), "evaluation.output.signals.score.effect"),
        "low_confidence_ratio": _opt_float(
            confidence.get("low_confidence_ratio"), "output.confidence.low_confidence_ratio"
        ),
        "output": Jsonb(dict(output)),
    }


def _quality_columns(raw: Any) -> dict[str, Any]:
    """Columns of a window's data-quality verdict (``evaluation.data_quality``)."""
    if raw is None:
        return {"data_quality_issues": None, "data_quality": None}
    quality = _mapping(raw, "evaluation.data_quality")
    findings = quality.get("findings") or []
    if not isinstance(findings, list):
        raise MalformedMessageError("evaluation.data_quality.findings: expected a list")
    issues = sum(1 for f in findings if isinstance(f, Mapping) and f.get("check") != "new_feature")
    return {"data_quality_issues": issues, "data_quality": Jsonb(dict(quality))}


def performance_rows(message: Mapping[str, Any]) -> Rows:
    """The ``performance_windows`` row of a ``type: performance_window`` summary.

    >>> row = performance_rows({"type": "performance_window", "model": "m",
    ...     "model_version": "1", "window_start": 0, "window_end": 60, "labelled": 90,
    ...     "label_coverage": 0.9, "metrics": {"accuracy": 0.8}, "baseline_accuracy": 0.9,
    ...     "accuracy_drop": 0.111})["performance_windows"][0]
    >>> row["accuracy"], row["accuracy_drop"], row["event_ids"]
    (0.8, 0.111, [])
    """
    metrics = _mapping(message.get("metrics") or {}, "metrics")
    labelled = _opt_int(message.get("labelled"), "labelled")
    if labelled is None:
        raise MalformedMessageError("labelled: required")
    row = {
        "model": _str(message.get("model"), "model"),
        "model_version": _str(message.get("model_version"), "model_version"),
        "window_start": to_timestamp(message.get("window_start"), "window_start"),
        "window_end": to_timestamp(message.get("window_end"), "window_end"),
        "labelled": labelled,
        "label_coverage": _opt_float(message.get("label_coverage"), "label_coverage"),
        **{m: _opt_float(metrics.get(m), f"metrics.{m}") for m in _PERFORMANCE_COLUMNS},
        "metrics": Jsonb(dict(metrics)),
        "baseline_accuracy": _opt_float(message.get("baseline_accuracy"), "baseline_accuracy"),
        "accuracy_drop": _opt_float(message.get("accuracy_drop"), "accuracy_drop"),
        "event_ids": _str_list(message.get("event_ids"), "event_ids"),
        "sources": _int_list(message.get("sources"), "sources"),
    }
    return {"performance_windows": [row]}


_PERFORMANCE_COLUMNS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def event_rows(event: Mapping[str, Any]) -> Rows:
    """The ``drift_events`` row of a drift event. Its partition key ``event_time`` is the
    window start, or for per-sample detections (``concept_drift``: no window) the event time
    of the prediction in the evidence, else ``detected_at``: deterministic for every event the
    worker publishes, so a replayed event has the same key.

    >>> row = event_rows({"schema_version": 1, "event_id": "0" * 32, "type": "concept_drift",
    ...     "severity": "warning", "model": "m", "model_version": "1", "window_start": None,
    ...     "window_end": None, "detected_at": 200.0, "evidence": {"event_time": 100.0}})
    >>> row["drift_events"][0]["event_time"].timestamp()
    100.0
    """
    event_id = _str(event.get("event_id"), "event_id")
    if not re.fullmatch(r"[0-9a-f]{32}", event_id):
        raise MalformedMessageError(f"event_id: expected 32 hex digits, got {event_id!r}")
    evidence = _mapping(event.get("evidence") or {}, "evidence")
    detected = to_timestamp(event.get("detected_at"), "detected_at")
    start_raw, end_raw = event.get("window_start"), event.get("window_end")
    start = None if start_raw is None else to_timestamp(start_raw, "window_start")
    end = None if end_raw is None else to_timestamp(end_raw, "window_end")
    if start is not None:
        event_time = start
    elif evidence.get("event_time") is not None:
        event_time = to_timestamp(evidence["event_time"], "evidence.event_time")
    else:
        event_time = detected
    row = {
        "event_id": event_id,
        "event_time": event_time,
        "schema_version": _opt_int(event.get("schema_version"), "schema_version"),
        "type": _str(event.get("type"), "type"),
        "severity": _str(event.get("severity"), "severity"),
        "model": _str(event.get("model"), "model"),
        "model_version": _str(event.get("model_version"), "model_version"),
        "feature": _opt_str(event.get("feature"), "feature"),
        "test": _opt_str(event.get("test"), "test"),
        "statistic": _opt_float(event.get("statistic"), "statistic"),
        "p_value": _opt_float(event.get("p_value"), "p_value"),
        "threshold": _opt_float(event.get("threshold"), "threshold"),
        "window_start": start,
        "window_end": end,
        "detected_at": detected,
        "evidence": Jsonb(dict(evidence)),
    }
    return {"drift_events": [row]}


def rows_from_message(kind: Literal["metrics", "alerts"], value: bytes | None) -> Rows:
    """Rows of one Kafka message of the metrics or alerts topic; :class:`MalformedMessageError`
    if it is not JSON or not one of the shapes the worker publishes.

    >>> rows_from_message("metrics", b'{"type": "something_else"}')
    Traceback (most recent call last):
    ...
    driftline.sinks.store.MalformedMessageError: unknown metrics message type 'something_else'
    """
    try:
        payload = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError(f"invalid JSON: {exc}") from exc
    payload = _mapping(payload, "message")
    if kind == "alerts":
        return event_rows(payload)
    kind_of = payload.get("type")
    if kind_of == "window":
        return window_rows(payload)
    if kind_of == "performance_window":
        return performance_rows(payload)
    raise MalformedMessageError(f"unknown metrics message type {kind_of!r}")


def merge_rows(batches: Iterable[Rows]) -> Rows:
    """Concatenate row sets table by table."""
    merged: Rows = {}
    for rows in batches:
        for table, items in rows.items():
            merged.setdefault(table, []).extend(items)
    return merged


def _dedupe(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per key (ON CONFLICT cannot touch a row twice in one statement): for
    DO UPDATE tables the last row wins, for DO NOTHING tables the first."""
    seen: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        key = tuple(row[c] for c in table.key)
        if table.on_conflict == "update" or key not in seen:
            seen[key] = row
    return list(seen.values())


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


def upgrade(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None
) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``, each in its own
    transaction under an advisory lock (two processes upgrading at once apply each once).
    Returns the names applied. A recorded migration whose file changed is an error."""
    migrations = load_migrations() if migrations is None else migrations
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
    """Create the missing day partitions of ``table`` (one short transaction each; a
    partition another process created first is fine). Returns the names created."""
    created = []
    for day in sorted(set(days)):
        name = partition_name(table, day)
        statement = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
        ).format(
            sql.Identifier(name),
            sql.Identifier(table),
            sql.Literal(_day_start(day)),
            sql.Literal(_day_start(day + timedelta(days=1))),
        )
        try:
            with conn.transaction():
                exists = conn.execute("SELECT to_regclass(%s)", [name]).fetchone()
                if exists is not None and exists[0] is not None:
                    continue
                conn.execute(statement)
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

    def write(self, rows: Rows) -> dict[str, int]:
        """Write a batch in one transaction (upserts on each table's natural key); returns
        rows inserted or updated per table (duplicates skipped by DO NOTHING not counted)."""
        batches = {name: _dedupe(TABLES[name], items) for name, items in rows.items() if items}
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
                    written[name] = _upsert(conn, TABLES[name], items)
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

    def write_executemany(self, rows: Rows) -> dict[str, int]:
        """The same upserts as :meth:`write`, as a plain ``executemany`` of one INSERT per
        row (the benchmark's baseline)."""
        batches = {name: _dedupe(TABLES[name], items) for name, items in rows.items() if items}
        needed = {
            name: {row[TABLES[name].partition_column or ""].date() for row in items}
            for name, items in batches.items()
        }
        self.ensure_days(needed)
        written: dict[str, int] = {}
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for name, items in batches.items():
                table = TABLES[name]
                statement = _insert(
                    table,
                    sql.SQL("VALUES ({})").format(
                        sql.SQL(", ").join(sql.Placeholder() * len(table.columns))
                    ),
                )
                cur.executemany(statement, [[row[c] for c in table.columns] for row in items])
                written[name] = len(items)
        return written


def _insert(table: Table, source: sql.Composable) -> sql.Composed:
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


def _upsert(conn: psycopg.Connection[Any], table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
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
                copy.write_row([row[c] for c in table.columns])
        cur.execute(_insert(table, sql.SQL("SELECT {} FROM {}").format(columns, temp)))
        return cur.rowcount
