"""The training-sample tables in PostgreSQL: which predictions are kept (a salted hash below
the rate), one spelling per class, the batched write (a label fills in its sampled prediction
or waits in ``training_pending_labels``), retention, and the stratified read a pipeline trains
on. The Kafka side that feeds them is :mod:`driftline.retrain.sample`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads

from driftline.sinks.store import PostgresStore

__all__ = [
    "hash_unit",
    "normalise_class",
    "read_stratified",
    "refused_data",
    "retention",
    "sampled",
    "write_batch",
]

SAMPLE_SALT = "driftline.sample"

# What PostgreSQL (or the encoding before it) refuses because of the data: retrying the same
# rows can never succeed, so they are isolated and dead-lettered instead.
_REFUSED_DATA = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    ValueError,  # UnicodeEncodeError, a date out of range
    TypeError,
    OverflowError,
)


def refused_data(exc: BaseException) -> bool:
    """Whether a failed write failed because of the rows themselves (never transient).

    >>> refused_data(psycopg.errors.UntranslatableCharacter("\\u0000 cannot be converted"))
    True
    >>> refused_data(psycopg.OperationalError("connection refused"))
    False
    """
    return isinstance(exc, _REFUSED_DATA)


def hash_unit(prediction_id: str, salt: str) -> float:
    """A number in [0, 1) from a SHA-256 of ``salt`` and ``prediction_id``: the same on every
    process and every run.

    >>> hash_unit("p-1", "a") == hash_unit("p-1", "a"), hash_unit("p-1", "a") == hash_unit("p-1", "b")
    (True, False)
    """
    digest = hashlib.sha256(f"{salt}\x1f{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled(prediction_id: str, rate: float) -> bool:
    """Whether the training sample keeps this prediction at ``rate``."""
    return rate >= 1.0 or hash_unit(prediction_id, SAMPLE_SALT) < rate


def normalise_class(value: Any) -> Any:
    """One spelling per class, so that a label and a prediction compare equal in SQL:
    booleans and their spellings, and integral numbers (also as strings), become ints.

    >>> [normalise_class(v) for v in (True, "true", "True", "1", 1.0, 0, "no", "fraud", 2.5)]
    [1, 1, 1, 1, 1, 0, 0, 'fraud', 2.5]
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        if lowered in {"true", "yes"}:
            return 1
        if lowered in {"false", "no"}:
            return 0
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if math.isfinite(number) and number.is_integer() else number
    return value


def _when(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def write_batch(
    store: PostgresStore,
    predictions: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]],
    *,
    max_rows_per_version: int,
) -> dict[str, int]:
    """Write sampled predictions and labels in one transaction: insert predictions (a
    duplicate is ignored), fill in labels (or park them), take parked labels of the new
    predictions, then trim each touched model version to ``max_rows_per_version``."""
    counts = {"predictions": 0, "labels": 0, "pending": 0, "trimmed": 0}
    with store.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        if predictions:
            # COPY into a temporary table, then one INSERT ... ON CONFLICT: far cheaper than a
            # statement per row (the same pattern as the PostgreSQL sink).
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming_samples"
                " (LIKE training_samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            columns = (
                "prediction_id, model, model_version, event_time, features, prediction, score,"
                " latency_ms, error"
            )
            with cursor.copy(f"COPY incoming_samples ({columns}) FROM STDIN".encode()) as copy:
                for r in predictions:
                    score, latency = r.get("score"), r.get("latency_ms")
                    copy.write_row(
                        (
                            str(r["prediction_id"]),
                            str(r["model"]),
                            str(r["model_version"]),
                            _when(r["timestamp"]),
                            Jsonb(r.get("features") or {}),
                            Jsonb(normalise_class(r.get("prediction"))),
                            score if isinstance(score, int | float) else None,
                            latency if isinstance(latency, int | float) else None,
                            None if r.get("error") is None else str(r.get("error")),
                        )
                    )
            cursor.execute(
                f"INSERT INTO training_samples ({columns}) SELECT DISTINCT ON (prediction_id,"
                f" model) {columns} FROM incoming_samples ON CONFLICT DO NOTHING".encode()
            )
            counts["predictions"] = len(predictions)
        if labels:
            latest: dict[str, Mapping[str, Any]] = {str(x["prediction_id"]): x for x in labels}
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming_labels"
                " (LIKE training_pending_labels INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cursor.copy(
                b"COPY incoming_labels (prediction_id, label, label_time) FROM STDIN"
            ) as copy:
                for pid, x in latest.items():
                    copy.write_row(
                        (pid, Jsonb(normalise_class(x.get("label"))), _when(x["timestamp"]))
                    )
            cursor.execute(
                "INSERT INTO training_pending_labels (prediction_id, label, label_time)"
                " SELECT prediction_id, label, label_time FROM incoming_labels"
                " ON CONFLICT (prediction_id) DO UPDATE"
                " SET label = excluded.label, label_time = excluded.label_time"
            )
        # Join parked labels (including the ones just parked) with their predictions.
        cursor.execute(
            "WITH matched AS (UPDATE training_samples s SET label = p.label, labelled_at = now()"
            " FROM training_pending_labels p WHERE s.prediction_id = p.prediction_id"
            " RETURNING s.prediction_id)"
            " DELETE FROM training_pending_labels p USING matched m"
            " WHERE p.prediction_id = m.prediction_id RETURNING p.prediction_id"
        )
        matched = {row[0] for row in cursor.fetchall()}
        counts["labels"] = len(matched)  # labels filled in, some parked by earlier batches
        # labels of this batch left waiting (not len(labels) - matched: that goes negative
        # when new predictions take labels parked earlier)
        counts["pending"] = len({str(x["prediction_id"]) for x in labels} - matched)
        versions = {(str(r["model"]), str(r["model_version"])) for r in predictions}
        for model, version in sorted(versions):
            cursor.execute(
                "DELETE FROM training_samples WHERE model = %s AND model_version = %s"
                " AND (event_time, prediction_id) <= (SELECT event_time, prediction_id"
                " FROM training_samples WHERE model = %s AND model_version = %s"
                " ORDER BY event_time DESC, prediction_id DESC OFFSET %s LIMIT 1)",
                [model, version, model, version, max_rows_per_version],
            )
            counts["trimmed"] += max(cursor.rowcount, 0)
    return counts


def retention(store: PostgresStore, days: int, pending_ttl_seconds: float) -> int:
    """Delete sample rows older than ``days`` (event time) and parked labels older than the
    label time-to-live; returns the rows deleted."""
    now = datetime.now(UTC)
    with store.pool.connection() as conn, conn.transaction():
        a = conn.execute(
            "DELETE FROM training_samples WHERE event_time < %s", [now - timedelta(days=days)]
        ).rowcount
        b = conn.execute(
            "DELETE FROM training_pending_labels WHERE received_at < %s",
            [now - timedelta(seconds=pending_ttl_seconds)],
        ).rowcount
    return max(a, 0) + max(b, 0)


def read_stratified(
    store: PostgresStore,
    model: str,
    *,
    versions: Sequence[str] | None = None,
    since: datetime | None = None,
    time_buckets: int = 10,
    per_stratum: int = 5_000,
) -> list[dict[str, Any]]:
    """Labelled sample records of ``model`` (of ``versions`` if given, after ``since`` if
    given), stratified: the time span is cut into ``time_buckets`` equal buckets and at most
    ``per_stratum`` records are taken per (bucket, label) (chosen by the sample hash order, so
    deterministic). Rare classes and quiet periods keep their records; a burst or the majority
    class cannot crowd them out. Ordered by event time."""
    query = """
        WITH labelled AS (
            SELECT prediction_id, model_version, event_time, features, prediction, score,
                   label, latency_ms, error
            FROM training_samples
            WHERE model = %(model)s AND label IS NOT NULL AND error IS NULL
              AND (%(versions)s::text[] IS NULL OR model_version = ANY(%(versions)s))
              AND (%(since)s::timestamptz IS NULL OR event_time >= %(since)s)
        ), bounds AS MATERIALIZED (  -- computed once, not per row
            SELECT min(event_time) AS lo, max(event_time) AS hi FROM labelled
        ), ranked AS (
            SELECT l.*, row_number() OVER (
                PARTITION BY width_bucket(extract(epoch FROM l.event_time),
                                          extract(epoch FROM b.lo),
                                          extract(epoch FROM b.hi) + 1e-6, %(buckets)s),
                             l.label
                ORDER BY md5(l.prediction_id)) AS rank
            FROM labelled l CROSS JOIN bounds b
        )
        SELECT prediction_id, model_version, extract(epoch FROM event_time) AS timestamp,
               features, prediction, score, label, latency_ms, error
        FROM ranked WHERE rank <= %(per_stratum)s ORDER BY event_time, prediction_id
    """
    params = {
        "model": model,
        "versions": list(versions) if versions is not None else None,
        "since": since,
        "buckets": time_buckets,
        "per_stratum": per_stratum,
    }
    with store.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        set_json_loads(orjson.loads, cursor)  # several times faster than json.loads
        cursor.execute(query.encode(), params)
        rows = cursor.fetchall()
    for row in rows:
        row["timestamp"] = float(row["timestamp"])
        row["model"] = model
    return list(rows)
