"""`driftline sink postgres`: the metrics and alerts topics into PostgreSQL, without loss.

A confluent-kafka consumer (group ``<worker.app_id>-sink-postgres``, manual commits) reads the
metrics and alerts topics; each message becomes rows (:func:`driftline.sinks.store.rows_from_message`)
held in an in-memory buffer. The buffer is written in one PostgreSQL transaction when it
holds ``batch_messages`` messages or its oldest is ``flush_interval`` seconds old, and the Kafka
offsets of the written messages are committed **only after** that transaction committed. Writes
are upserts on natural keys, so a message delivered twice (a crash between the database commit
and the offset commit, a rebalance) gives the same rows.

When PostgreSQL is down the write fails, the buffer is kept and retried with exponential
backoff (``backoff_initial`` doubling up to ``backoff_max``, with jitter); consuming goes on
until the buffer holds ``max_buffer`` messages, then the assigned partitions are **paused**
(nothing is committed, the consumer keeps polling so it stays in its group) until a write
succeeds. Nothing is lost: what is not in PostgreSQL is either in the buffer or after the
committed offset.

A malformed message (the worker's own output, so a bug signal) is logged, counted in
``driftline_sink_rejected_total`` and skipped (its offset is committed with the batch).
Every ``retention_interval`` seconds the sink drops expired partitions and creates those of the
coming days.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Literal

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge
from psycopg_pool import PoolTimeout

from driftline.config import Config
from driftline.sinks.prometheus import REGISTRY
from driftline.sinks.store import (
    MalformedMessageError,
    PostgresStore,
    Rows,
    merge_rows,
    rows_from_message,
)

__all__ = [
    "BACKLOG",
    "PAUSED",
    "REJECTED",
    "ROWS_WRITTEN",
    "WRITE_FAILURES",
    "PostgresSink",
    "SinkSettings",
    "run_postgres_sink",
]

log = logging.getLogger(__name__)

BACKLOG = Gauge(
    "driftline_sink_backlog_records",
    "Kafka messages read by the PostgreSQL sink and not yet written to PostgreSQL.",
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter(
    "driftline_sink_rows_written",
    "Rows inserted or updated in PostgreSQL by the sink (duplicates skipped are not counted).",
    ["table"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "driftline_sink_rejected",
    "Malformed messages skipped by the PostgreSQL sink (a bug signal: the worker wrote them).",
    ["topic"],
    registry=REGISTRY,
)
WRITE_FAILURES = Counter(
    "driftline_sink_write_failures",
    "Failed PostgreSQL write attempts of the sink (each is retried with backoff).",
    registry=REGISTRY,
)
PAUSED = Gauge(
    "driftline_sink_paused",
    "1 while the sink's buffer is full and its Kafka partitions are paused.",
    registry=REGISTRY,
)

_TRANSIENT = (psycopg.OperationalError, PoolTimeout, psycopg.errors.InterfaceError)


@dataclass(frozen=True)
class SinkSettings:
    batch_messages: int = 1000
    flush_interval: float = 1.0
    max_buffer: int = 20_000  # messages; when full, partitions are paused
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retention_interval: float = 3600.0
    poll_timeout: float = 0.2


@dataclass
class _Pending:
    topic: str
    partition: int
    offset: int
    rows: Rows


@dataclass
class _State:
    buffer: list[_Pending] = field(default_factory=list)
    oldest: float | None = None
    backoff: float = 0.0
    retry_at: float = 0.0
    paused: bool = False
    next_retention: float = 0.0


class PostgresSink:
    """The sink's loop; :meth:`run` until ``stop`` is set (or SIGTERM with the CLI)."""

    def __init__(
        self,
        config: Config,
        store: PostgresStore,
        settings: SinkSettings | None = None,
        *,
        group_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.settings = settings or SinkSettings()
        self.clock = clock
        self.kinds: dict[str, Literal["metrics", "alerts"]] = {
            config.topics.metrics: "metrics",
            config.topics.alerts: "alerts",
        }
        self.group_id = group_id or f"{config.worker.app_id}-sink-postgres"
        self.consumer = Consumer(
            {
                **config.kafka.confluent_settings(),
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.state = _State()
        self.stats = {"written_messages": 0, "rejected": 0, "write_failures": 0}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Apply migrations (retrying while PostgreSQL is unreachable), then subscribe."""
        delay = self.settings.backoff_initial
        while True:
            try:
                applied = self.store.upgrade()
                if applied:
                    log.info("migrations applied: %s", ", ".join(applied))
                break
            except _TRANSIENT as exc:
                log.warning("PostgreSQL unreachable at start (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max)
        self.state.next_retention = self.clock()  # run once at start
        self.consumer.subscribe(list(self.kinds), on_revoke=self._on_revoke)

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                self.step()
            self._final_flush()
        finally:
            self.consumer.close()

    def _final_flush(self) -> None:
        """One last attempt on shutdown; what is not written is redelivered next time."""
        if self.state.buffer and not self._flush():
            log.warning(
                "stopping with %d unwritten messages: not committed, they will be read again",
                len(self.state.buffer),
            )

    # -- one iteration -------------------------------------------------------------------

    def step(self) -> None:
        s = self.settings
        st = self.state
        room = max(1, min(s.batch_messages, s.max_buffer - len(st.buffer)))  # the bound is hard
        for message in self.consumer.consume(num_messages=room, timeout=s.poll_timeout):
            self._add(message)
        now = self.clock()
        due = st.buffer and (
            len(st.buffer) >= s.batch_messages
            or (st.oldest is not None and now - st.oldest >= s.flush_interval)
        )
        if due and now >= st.retry_at:
            self._flush()
        if len(st.buffer) >= s.max_buffer and not st.paused:
            self._pause()
        elif st.paused and (assignment := self.consumer.assignment()):
            self.consumer.pause(assignment)  # partitions assigned since the pause
        if now >= st.next_retention and not st.buffer:
            self._retention(now)
        BACKLOG.set(len(st.buffer))

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        try:
            rows = rows_from_message(self.kinds[topic], message.value())
        except MalformedMessageError as exc:
            REJECTED.labels(topic).inc()
            self.stats["rejected"] += 1
            log.error("malformed message skipped (%s[%d]@%d): %s", topic, partition, offset, exc)
            rows = {}
        if self.state.oldest is None:
            self.state.oldest = self.clock()
        self.state.buffer.append(_Pending(topic, partition, offset, rows))

    def _flush(self) -> bool:
        st = self.state
        batch = st.buffer
        try:
            written = self.store.write(merge_rows(p.rows for p in batch))
        except _TRANSIENT as exc:
            self._failed(f"PostgreSQL unavailable: {exc}")
            return False
        except psycopg.Error as exc:  # a row the database refuses: find it, write the rest
            log.error("batch write failed (%s); writing message by message", exc)
            by_message = self._write_one_by_one(batch)
            if by_message is None:
                return False
            written = by_message
        for table, count in written.items():
            ROWS_WRITTEN.labels(table).inc(count)
        self._commit(batch)
        self.stats["written_messages"] += len(batch)
        st.buffer, st.oldest = [], None
        st.backoff, st.retry_at = 0.0, 0.0
        if st.paused:
            self._resume()
        BACKLOG.set(0)
        return True

    def _write_one_by_one(self, batch: list[_Pending]) -> dict[str, int] | None:
        total: dict[str, int] = {}
        for pending in batch:
            try:
                written = self.store.write(pending.rows)
            except _TRANSIENT as exc:
                self._failed(f"PostgreSQL unavailable: {exc}")
                return None
            except psycopg.Error as exc:
                REJECTED.labels(pending.topic).inc()
                self.stats["rejected"] += 1
                log.error(
                    "message refused by PostgreSQL, skipped (%s[%d]@%d): %s",
                    pending.topic, pending.partition, pending.offset, exc,
                )  # fmt: skip
                continue
            for table, count in written.items():
                total[table] = total.get(table, 0) + count
        return total

    def _failed(self, reason: str) -> None:
        st, s = self.state, self.settings
        WRITE_FAILURES.inc()
        self.stats["write_failures"] += 1
        st.backoff = min(st.backoff * 2 if st.backoff else s.backoff_initial, s.backoff_max)
        delay = st.backoff * random.uniform(0.8, 1.2)
        st.retry_at = self.clock() + delay
        log.warning("%s; %d messages buffered, retrying in %.1fs", reason, len(st.buffer), delay)

    def _commit(self, batch: list[_Pending]) -> None:
        """Commit, per partition, the offset after the last message written."""
        ends: dict[tuple[str, int], int] = {}
        for p in batch:
            key = (p.topic, p.partition)
            ends[key] = max(ends.get(key, -1), p.offset + 1)
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items() if (t, p) in assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # rows are written; a redelivery rewrites the same rows
            log.warning("offset commit failed (%s): those messages will be read again", exc)

    def _retention(self, now: float) -> None:
        try:
            dropped = self.store.retention(self.config.postgres.retention_days)
            created = self.store.ensure_ahead()
            log.info(
                "retention: dropped %d partitions, created %d ahead", len(dropped), len(created)
            )
            self.state.next_retention = now + self.settings.retention_interval
        except psycopg.Error as exc:
            log.warning("retention job failed (%s); retrying in a minute", exc)
            self.state.next_retention = now + min(60.0, self.settings.retention_interval)
        except PoolTimeout as exc:
            log.warning("retention job: PostgreSQL unavailable (%s)", exc)
            self.state.next_retention = now + min(60.0, self.settings.retention_interval)

    # -- pause / resume and rebalances ---------------------------------------------------

    def _pause(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self.state.paused = True
        PAUSED.set(1)
        BACKLOG.set(len(self.state.buffer))
        log.warning(
            "buffer full (%d messages): consumer paused until PostgreSQL accepts writes",
            len(self.state.buffer),
        )

    def _resume(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)
        self.state.paused = False
        PAUSED.set(0)
        log.info("PostgreSQL writes succeed again: consumer resumed")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Write what we hold of the revoked partitions if we can; either way forget it (not
        committed, so the partitions' new owner reads it again)."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        st = self.state
        if any((p.topic, p.partition) in revoked for p in st.buffer):
            self._flush()
        st.buffer = [p for p in st.buffer if (p.topic, p.partition) not in revoked]
        if not st.buffer:
            st.oldest = None
        BACKLOG.set(len(st.buffer))


def run_postgres_sink(
    config: Config,
    *,
    metrics_port: int | None = 9109,
    settings: SinkSettings | None = None,
    schema: str | None = None,
) -> int:
    """The `driftline sink postgres` process: serve /metrics, run until SIGTERM/SIGINT."""
    from driftline.sinks.prometheus import serve

    if metrics_port:
        serve(metrics_port)
        log.info("sink metrics on http://127.0.0.1:%d/metrics", metrics_port)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    store = PostgresStore(config.postgres.url.reveal(), schema=schema)
    try:
        sink = PostgresSink(config, store, settings)
        log.info("PostgreSQL sink: group %s, topics %s", sink.group_id, ", ".join(sink.kinds))
        sink.run(stop)
    finally:
        store.close()
    return 0
