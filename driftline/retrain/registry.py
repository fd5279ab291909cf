"""The model registry and the retraining history in PostgreSQL (migration 0003_retraining).

Versions (status candidate -> challenger -> champion -> retired, or rolled_back), their parent,
offline metrics, artifact path and SHA-256; retraining runs; every policy evaluation (fired or
suppressed, with its reason); A/B tests with their decisions and evidence. The lock that keeps
one retraining per model in flight is a PostgreSQL session advisory lock
(:meth:`Registry.retraining_lock`): several processes on several hosts see the same lock, and
a process that dies releases it with its connection.

Kept whole (~400 lines): one class over one migration's tables, one short SQL statement per
method, sharing one pool and its transactions (a status change with its history row, a
promotion that retires the champion in the same transaction); split by table, a transaction
would cross modules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from driftline.detectors.abtest import ArmStats
from driftline.sinks.store import PostgresStore

__all__ = ["STATUSES", "Registry", "RegistryError"]

log = logging.getLogger(__name__)

STATUSES = ("candidate", "challenger", "champion", "retired", "rolled_back")
_LOCK_KEY = "hashtext('driftline.retrain.' || current_schema() || '.' || %s)"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, a second champion...)."""


class Registry:
    """Registry operations over a :class:`PostgresStore`'s pool (its ``schema`` applies)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.pool = store.pool

    # -- lock --------------------------------------------------------------------------------

    @contextmanager
    def retraining_lock(self, model: str) -> Iterator[bool]:
        """Try to take the model's retraining lock without waiting; yields whether it was
        taken. Held (on a connection of its own) until the block ends."""
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY})", [model]).fetchone()
            taken = bool(row and row[0])
            try:
                yield taken
            finally:
                if taken:
                    conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})", [model])

    # -- policy state and evaluations ----------------------------------------------------------

    def last_fired_at(self, model: str, policy: str) -> datetime | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT max(evaluated_at) FROM retraining_evaluations"
                " WHERE model = %s AND policy = %s AND fired",
                [model, policy],
            ).fetchone()
        return row[0] if row else None

    def last_retrained_at(self, model: str) -> datetime | None:
        """When the model's last successful retraining finished."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT max(finished_at) FROM retraining_runs"
                " WHERE model = %s AND status = 'succeeded'",
                [model],
            ).fetchone()
        return row[0] if row else None

    def new_labels(self, model: str, since_event_time: datetime | None = None) -> int:
        """Labelled sample records of the model: with an event time at or after
        ``since_event_time`` (a drift onset) if given, else labelled since the model's last
        successful retraining."""
        if since_event_time is not None:
            query = (
                "SELECT count(*) FROM training_samples WHERE model = %s AND label IS NOT NULL"
                " AND error IS NULL AND event_time >= %s"
            )
            params: list[Any] = [model, since_event_time]
        else:
            since = self.last_retrained_at(model)
            query = (
                "SELECT count(*) FROM training_samples WHERE model = %s AND label IS NOT NULL"
                " AND error IS NULL AND (%s::timestamptz IS NULL OR labelled_at > %s)"
            )
            params = [model, since, since]
        with self.pool.connection() as conn:
            row = conn.execute(query.encode(), params).fetchone()
        return int(row[0]) if row else 0

    def sample_versions(self, model: str) -> list[str]:
        """Versions of the model seen in the training sample (served, maybe not registered)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT model_version FROM training_samples WHERE model = %s", [model]
            ).fetchall()
        return [r[0] for r in rows]

    def record_evaluation(
        self,
        *,
        model: str,
        policy: str,
        trigger_kind: str,
        fired: bool,
        reason: str,
        event_id: str | None = None,
        run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO retraining_evaluations"
                " (model, policy, trigger_kind, event_id, fired, reason, run_id, details)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    model,
                    policy,
                    trigger_kind,
                    event_id,
                    fired,
                    reason,
                    run_id,
                    Jsonb(dict(details or {})),
                ],
            )

    def evaluations(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM retraining_evaluations WHERE model = %s"
            " ORDER BY evaluated_at DESC, id DESC LIMIT %s",
            [model, limit],
        )

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        run_id: str,
        model: str,
        from_version: str | None,
        policy: str,
        trigger_kind: str,
        reason: str,
        event_id: str | None,
    ) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO retraining_runs (run_id, model, from_version, trigger_event_id,"
                " status, started_at, policy, trigger_kind, reason)"
                " VALUES (%s, %s, %s, %s, 'running', now(), %s, %s, %s)",
                [run_id, model, from_version, event_id, policy, trigger_kind, reason],
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        to_version: str | None = None,
        error: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE retraining_runs SET status = %s, to_version = %s, error = %s,"
                " details = details || %s, finished_at = now() WHERE run_id = %s",
                [status, to_version, error, Jsonb(dict(details or {})), run_id],
            )

    def runs(self, model: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM retraining_runs WHERE model = %s ORDER BY requested_at DESC LIMIT %s",
            [model, limit],
        )

    # -- versions ------------------------------------------------------------------------------

    def register(
        self,
        *,
        model: str,
        version: str,
        status: str,
        parent: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        artifact_path: str | None = None,
        artifact_sha256: str | None = None,
        run_id: str | None = None,
        reason: str = "registered",
    ) -> None:
        """Add a version. Raises RegistryError if it exists, or if ``status`` would make a
        second champion/challenger."""
        import psycopg

        if status not in STATUSES:
            raise RegistryError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO model_versions (model, model_version, parent_version, status,"
                    " metrics, artifact_path, artifact_sha256, run_id, deployed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                    " CASE WHEN %s = 'champion' THEN now() END)",
                    [
                        model,
                        version,
                        parent,
                        status,
                        Jsonb(dict(metrics or {})),
                        artifact_path,
                        artifact_sha256,
                        run_id,
                        status,
                    ],
                )
                conn.execute(
                    "INSERT INTO model_version_history (model, model_version, from_status,"
                    " to_status, reason) VALUES (%s, %s, NULL, %s, %s)",
                    [model, version, status, reason],
                )
        except psycopg.errors.UniqueViolation as exc:
            raise RegistryError(
                f"{model}@{version}: already registered, or {model} already has a {status}"
            ) from exc

    def set_status(
        self,
        model: str,
        version: str,
        status: str,
        reason: str,
        *,
        conn: Any = None,
    ) -> None:
        """Change a version's status and record why (in ``conn``'s transaction if given)."""
        if status not in STATUSES:
            raise RegistryError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        if conn is None:
            with self.pool.connection() as own, own.transaction():
                self.set_status(model, version, status, reason, conn=own)
            return
        row = conn.execute(
            "SELECT status FROM model_versions WHERE model = %s AND model_version = %s FOR UPDATE",
            [model, version],
        ).fetchone()
        if row is None:
            raise RegistryError(f"{model}@{version}: no such version in the registry")
        conn.execute(
            "UPDATE model_versions SET status = %s, status_changed_at = now(),"
            " deployed_at = CASE WHEN %s = 'champion' THEN now() ELSE deployed_at END,"
            " retired_at = CASE WHEN %s IN ('retired', 'rolled_back') THEN now()"
            " ELSE retired_at END WHERE model = %s AND model_version = %s",
            [status, status, status, model, version],
        )
        conn.execute(
            "INSERT INTO model_version_history (model, model_version, from_status, to_status,"
            " reason) VALUES (%s, %s, %s, %s, %s)",
            [model, version, row[0], status, reason],
        )

    def promote(self, model: str, challenger: str, reason: str) -> None:
        """The challenger becomes champion, the champion is retired: one transaction."""
        with self.pool.connection() as conn, conn.transaction():
            current = conn.execute(
                "SELECT model_version FROM model_versions WHERE model = %s"
                " AND status = 'champion' FOR UPDATE",
                [model],
            ).fetchone()
            if current is not None:
                self.set_status(model, current[0], "retired", f"replaced: {reason}", conn=conn)
            self.set_status(model, challenger, "champion", reason, conn=conn)

    def version(self, model: str, version: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM model_versions WHERE model = %s AND model_version = %s",
            [model, version],
        )
        return rows[0] if rows else None

    def with_status(self, model: str, status: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM model_versions WHERE model = %s AND status = %s", [model, status]
        )
        return rows[0] if rows else None

    def versions(self, model: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM model_versions WHERE model = %s ORDER BY registered_at DESC",
            [model],
        )

    def models(self) -> list[str]:
        """Every model in the registry."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT DISTINCT model FROM model_versions ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def status_history(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM model_version_history WHERE model = %s"
            " ORDER BY changed_at DESC, id DESC LIMIT %s",
            [model, limit],
        )

    def next_version(self, model: str) -> str:
        """One more than the largest integer version of the model ("1" for a new model); a
        model with non-integer versions gets "<newest>.1"."""
        versions = [row["model_version"] for row in self.versions(model)]
        versions += self.sample_versions(model)
        numbers = [int(v) for v in versions if v.isdigit()]
        if numbers or not versions:
            return str(max(numbers, default=0) + 1)
        return f"{versions[0]}.1"

    # -- A/B tests ---------------------------------------------------------------------------

    def start_test(
        self, *, test_id: str, model: str, champion: str, challenger: str, share: float
    ) -> None:
        import psycopg

        try:
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO ab_tests (test_id, model, champion_version, challenger_version,"
                    " traffic_share, status) VALUES (%s, %s, %s, %s, %s, 'running')",
                    [test_id, model, champion, challenger, share],
                )
        except psycopg.errors.UniqueViolation as exc:
            raise RegistryError(f"{model}: an A/B test is already running") from exc

    def running_tests(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT *, extract(epoch FROM now() - started_at) AS elapsed_seconds"
            " FROM ab_tests WHERE status = 'running' ORDER BY started_at",
            [],
        )

    def tests(self, model: str, limit: int = 10) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT *, extract(epoch FROM coalesce(decided_at, now()) - started_at)"
            " AS elapsed_seconds FROM ab_tests WHERE model = %s"
            " ORDER BY started_at DESC LIMIT %s",
            [model, limit],
        )

    def look(self, test_id: str, p_value: float, reason: str, evidence: Mapping[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE ab_tests SET looks = looks + 1, p_value = least(p_value, %s),"
                " reason = %s, evidence = %s WHERE test_id = %s AND status = 'running'",
                [p_value, reason, Jsonb(dict(evidence)), test_id],
            )

    def finish_test(
        self, test_id: str, status: str, reason: str, evidence: Mapping[str, Any]
    ) -> bool:
        """Close a running test; False if it was not running any more (another process)."""
        with self.pool.connection() as conn:
            cursor = conn.execute(
                "UPDATE ab_tests SET status = %s, reason = %s, evidence = %s, decided_at = now()"
                " WHERE test_id = %s AND status = 'running'",
                [status, reason, Jsonb(dict(evidence)), test_id],
            )
            return cursor.rowcount == 1

    def arm_stats(self, model: str, version: str, since: datetime) -> ArmStats:
        """Served, failed, labelled and correct sample records of one version whose event
        time is at or after ``since`` (the test's start), and its latency p99 in seconds.

        Event time, not insertion time: a sink that lags or replays (or a restart of
        `sink training-sample`) must not move predictions served before the test into an arm,
        nor leave out those served during it."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*), count(error), count(label) FILTER (WHERE error IS NULL),"
                " count(*) FILTER (WHERE error IS NULL AND label = prediction),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)"
                " FROM training_samples WHERE model = %s AND model_version = %s"
                " AND event_time >= %s",
                [model, version, since],
            ).fetchone()
        assert row is not None
        p99 = None if row[4] is None else float(row[4]) / 1000.0
        return ArmStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), p99)

    # -- helpers -----------------------------------------------------------------------------

    def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(query.encode(), params)
            return list(cursor.fetchall())
