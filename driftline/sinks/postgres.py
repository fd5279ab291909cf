"""`driftline sink postgres`: the metrics and alerts topics into PostgreSQL, without loss.

A :class:`~driftline.sinks.base.BatchingSink` (consumer group ``<worker.app_id>-sink-postgres``):
the base buffers, retries with backoff, pauses the consumer when its buffer is full, dead-letters
malformed messages and commits offsets only after the write. This module adds what is
PostgreSQL's: each message becomes rows (:func:`driftline.sinks.rows.rows_from_message`), a batch
is one transaction of upserts on natural keys (:meth:`PostgresStore.write`, so a message
delivered twice gives the same rows), connection errors are transient. The sink does not migrate:
at start it checks that the schema is at this version's migration (retried while PostgreSQL is
unreachable; behind, it stops with one line telling the user to run `driftline db migrate`), so
it can log in as the least-privilege writer role (:mod:`driftline.sinks.grants`). Every
``retention_interval`` seconds it creates the partitions of the coming days and, when its role
owns the tables, drops expired ones (otherwise `driftline db retention` does, as the owner).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import psycopg
from psycopg_pool import PoolTimeout

from driftline.config import Config
from driftline.sinks.base import BatchingSink, SinkSettings
from driftline.sinks.rows import Rows, merge_rows, rows_from_message
from driftline.sinks.store import PostgresStore

__all__ = ["PostgresSink", "SinkSettings", "run_postgres_sink"]

log = logging.getLogger(__name__)

_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class PostgresSink(BatchingSink[Rows]):
    """The metrics and alerts topics into a :class:`PostgresStore`."""

    name: ClassVar[str] = "postgres"

    def __init__(
        self,
        config: Config,
        store: PostgresStore,
        settings: SinkSettings | None = None,
        *,
        retention_interval: float = 3600.0,
        **kwargs: Any,
    ) -> None:
        self.kinds: dict[str, Literal["metrics", "alerts"]] = {
            config.topics.metrics: "metrics",
            config.topics.alerts: "alerts",
        }
        super().__init__(config, list(self.kinds), settings, **kwargs)
        self.store = store
        self.retention_interval = retention_interval
        self.retention_allowed = True  # until the role is refused (a writer role: see grants)

    def decode(self, topic: str, value: bytes | None) -> Rows:
        return rows_from_message(self.kinds[topic], value)

    def write(self, items: Sequence[Rows]) -> Mapping[str, int]:
        return self.store.write(merge_rows(items))

    def is_transient(self, exc: Exception) -> bool:
        return isinstance(exc, _TRANSIENT)

    def setup(self) -> None:
        self.store.check_schema()  # SchemaNotReadyError: not transient, the sink stops

    def housekeeping(self) -> float:
        """Retention: drop expired partitions (if this role may), create those ahead; a minute
        later on failure."""
        dropped: list[str] = []
        try:
            if self.retention_allowed:
                try:
                    dropped = self.store.retention(self.config.postgres.retention_days)
                except psycopg.errors.InsufficientPrivilege:
                    self.retention_allowed = False
                    log.info("retention is left to `driftline db retention` run as the owner: "
                             "the sink's role may not drop partitions")  # fmt: skip
            created = self.store.ensure_ahead()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("retention job failed (%s); retrying in a minute", exc)
            return min(60.0, self.retention_interval)
        log.info("retention: dropped %d partitions, created %d ahead", len(dropped), len(created))
        return self.retention_interval


def run_postgres_sink(
    config: Config,
    *,
    metrics_port: int | None = 9109,
    settings: SinkSettings | None = None,
    schema: str | None = None,
) -> int:
    """The `driftline sink postgres` process: serve /metrics, run until SIGTERM/SIGINT."""
    store = PostgresStore(config.postgres.dsn(), schema=schema)
    try:
        return PostgresSink(config, store, settings).run_until_signalled(metrics_port)
    finally:
        store.close()
