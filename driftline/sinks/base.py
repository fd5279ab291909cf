"""One batching sink base: Kafka topics into a destination, committed only after the write.

A sink is a subclass of :class:`BatchingSink` that implements two methods:

- ``write(items)``: write a batch (one decoded item per Kafka message) durably, or raise;
- ``is_transient(exc)``: is this error of ``write`` (or ``setup``) worth retrying (the
  destination is down) rather than a refusal of the data?

Optional hooks: ``decode(topic, value)`` (default: a JSON object), ``setup()`` (run at start,
retried while transient) and ``housekeeping()`` (at start, then periodically when the buffer is
empty).

The base owns the rest, modelled on quixstreams' ``BatchingSink`` and its checkpoint:

- **Buffering**: a confluent-kafka consumer (manual commits) feeds a buffer written when it
  holds ``batch_messages`` messages or its oldest is ``flush_interval`` seconds old.
- **Checkpoint order**: write the batch, then confirm the dead letters on the producer, then
  commit the batch's offsets. Nothing is committed before it is written, so what is not at the
  destination is either in the buffer or after the committed offset; a crash in between
  redelivers, so ``write`` must be idempotent (upserts on natural keys).
- **Backoff**: a transient error keeps the buffer and retries with exponential backoff
  (``backoff_initial`` doubling up to ``backoff_max``, +-20 % jitter) while consuming goes on.
- **Backpressure**: at ``max_buffer`` messages, or when ``write`` raises
  :class:`SinkBackpressureError`, the assigned partitions are paused (still polling, so the
  consumer stays in its group) until a write succeeds.
- **Bad input never kills the sink**: a message ``decode`` rejects
  (:class:`MalformedMessageError`), or one the destination refuses (a non-transient error of
  ``write``, found by retrying the batch message by message), is logged, counted in
  ``driftline_sink_rejected_total{topic}``, sent to the dead-letter topic with the reason in
  its headers (as the worker does), and its offset is committed with the batch.

Metrics are defined once in :mod:`driftline.sinks.prometheus`; backlog and pause state are read
from the running sinks at scrape time. The loop is one module of about 440 lines on purpose:
buffer, retry, pause and the checkpoint order read in one place (dead letters: deadletter.py).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from driftline.config import Config
from driftline.sinks import prometheus as metrics
from driftline.sinks.deadletter import send_dead_letters
from driftline.streams.reader import decode_object

__all__ = [
    "BatchingSink",
    "MalformedMessageError",
    "SinkBackpressureError",
    "SinkSettings",
    "json_object",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class MalformedMessageError(ValueError):
    """A message that is not what the sink consumes (``decode`` raises it): dead-lettered."""


class SinkBackpressureError(Exception):
    """Raised by ``write`` when the destination asks to slow down: the batch is kept, the
    consumer paused, and the write retried after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str = "destination asks to slow down"):
        super().__init__(reason)
        self.retry_after = retry_after


def json_object(value: bytes | None) -> dict[str, Any]:
    """A message of driftline's own topics as one JSON object (`reader.decode_object`), or
    :class:`MalformedMessageError` saying why not.

    >>> json_object(b"[1]")
    Traceback (most recent call last):
    ...
    driftline.sinks.base.MalformedMessageError: a JSON list, not an object
    """
    try:
        return decode_object(value)
    except ValueError as exc:
        raise MalformedMessageError(str(exc)) from None


@dataclass(frozen=True)
class SinkSettings:
    batch_messages: int = 1000
    flush_interval: float = 1.0
    max_buffer: int = 20_000  # messages; when full, partitions are paused
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    poll_timeout: float = 0.2
    dlq_timeout: float = 10.0  # seconds to wait for the dead letters' delivery
    # A sink killed (kill -9, OOM) holds its partitions until the group coordinator stops
    # hearing from it: librdkafka's default of 45 s is the whole of a restarted sink's recovery
    # time. The loop polls every `poll_timeout`, even paused, so 10 s is plenty of margin.
    session_timeout: float = 10.0


@dataclass
class Pending(Generic[T]):
    """One consumed message: its decoded item, or why it is dead-lettered."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # the original bytes: a message refused at write time is dead-lettered
    value: bytes | None
    item: T | None = None
    rejection: tuple[str, str] | None = None  # (kind, reason)
    dead_lettered: bool = False
    in_flight: bool = False  # its dead letter is in the producer's queue


@dataclass
class _State(Generic[T]):
    buffer: list[Pending[T]] = field(default_factory=list)
    oldest: float | None = None
    backoff: float = 0.0
    retry_at: float = 0.0
    paused: bool = False
    next_housekeeping: float = 0.0


class BatchingSink(ABC, Generic[T]):
    """Consume ``topics`` into a destination; :meth:`run` until ``stop`` is set."""

    name: ClassVar[str]
    """Short name: consumer group ``<worker.app_id>-sink-<name>``, rows-written label."""

    def __init__(
        self,
        config: Config,
        topics: Sequence[str],
        settings: SinkSettings | None = None,
        *,
        group_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
    ) -> None:
        self.config = config
        self.topics = list(topics)
        self.settings = settings or SinkSettings()
        self.clock = clock
        self.group_id = group_id or f"{config.worker.app_id}-sink-{self.name}"
        kafka = config.kafka.confluent_settings()
        self.consumer = consumer or Consumer(
            {
                **kafka,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(self.settings.session_timeout * 1000),
            }
        )
        self.producer = producer or Producer(kafka)  # the dead letters
        self.state: _State[T] = _State()
        self.stats = {"written_messages": 0, "rejected": 0, "write_failures": 0}

    # -- what a sink implements ----------------------------------------------------------

    @abstractmethod
    def write(self, items: Sequence[T]) -> Mapping[str, int] | None:
        """Write ``items`` durably (idempotently: a batch may be written again after a crash);
        return the rows written per destination (e.g. table), or None for ``len(items)``."""

    @abstractmethod
    def is_transient(self, exc: Exception) -> bool:
        """True if ``exc`` means the destination is unavailable (retry later), False if it
        refused the data (the batch is retried message by message, the refused dead-lettered)."""

    def decode(self, topic: str, value: bytes | None) -> T:
        """One message's item; :class:`MalformedMessageError` if it is not one. Default: a JSON
        object (:func:`json_object`)."""
        return cast(T, json_object(value))

    def setup(self) -> None:
        """Run once at start (e.g. migrations), retried while :meth:`is_transient`."""

    def housekeeping(self) -> float:
        """Periodic work, run at start and then when nothing is buffered; returns seconds
        until the next run."""
        return float("inf")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, stop: threading.Event | None = None) -> None:
        """:meth:`setup` (retried with backoff while the destination is unreachable), then
        subscribe."""
        delay = self.settings.backoff_initial
        while True:
            try:
                self.setup()
                break
            except Exception as exc:
                if not self.is_transient(exc):
                    raise
                log.warning("%s sink: destination unreachable at start (%s); retrying in %.1fs",
                            self.name, exc, delay)  # fmt: skip
                if stop is not None and stop.wait(delay):
                    return
                if stop is None:
                    time.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max)
        # once before consuming (e.g. retention), so it never runs between a write and a read
        self.state.next_housekeeping = self.clock() + self._housekeeping()
        metrics.SINK_STATE.track(self)
        self.consumer.subscribe(self.topics, on_revoke=self._on_revoke)

    def run(self, stop: threading.Event) -> None:
        self.start(stop)
        try:
            while not stop.is_set():
                self.step()
            if self.state.buffer and not self._checkpoint():
                log.warning("stopping with %d unwritten messages: not committed, they will be "
                            "read again", len(self.state.buffer))  # fmt: skip
        finally:
            metrics.SINK_STATE.untrack(self)
            self.consumer.close()

    def run_until_signalled(self, metrics_port: int | None = None) -> int:
        """The job of a `driftline sink <name>` process: serve /metrics on ``metrics_port`` (if
        any), :meth:`run` until SIGTERM or SIGINT, then stop after the current batch; 0."""
        if metrics_port:
            metrics.serve(metrics_port)
            log.info("%s sink metrics on http://127.0.0.1:%d/metrics", self.name, metrics_port)
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the current batch", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info("%s sink: group %s, topics %s", self.name, self.group_id, ", ".join(self.topics))
        self.run(stop)
        return 0

    @property
    def backlog(self) -> int:
        """Messages consumed and not yet written (the backlog gauge, read at scrape time)."""
        return len(self.state.buffer)

    @property
    def paused(self) -> bool:
        return self.state.paused

    # -- one iteration -------------------------------------------------------------------

    def step(self) -> None:
        s, st = self.settings, self.state
        room = max(1, min(s.batch_messages, s.max_buffer - len(st.buffer)))  # the bound is hard
        for message in self.consumer.consume(num_messages=room, timeout=s.poll_timeout):
            self._add(message)
        now = self.clock()
        due = st.buffer and (
            len(st.buffer) >= s.batch_messages
            or (st.oldest is not None and now - st.oldest >= s.flush_interval)
        )
        if due and now >= st.retry_at:
            self._checkpoint()
        if len(st.buffer) >= s.max_buffer and not st.paused:
            self._pause(f"buffer full ({len(st.buffer)} messages)")
        elif st.paused and (assignment := self.consumer.assignment()):
            self.consumer.pause(assignment)  # partitions assigned since the pause
        if now >= st.next_housekeeping and not st.buffer:
            st.next_housekeeping = now + self._housekeeping()

    def _housekeeping(self) -> float:
        try:
            return self.housekeeping()
        except Exception:
            log.exception("%s sink: housekeeping failed; retrying in a minute", self.name)
            return 60.0

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        pending: Pending[T] = Pending(topic, partition, offset, message.key(), message.value())
        try:
            pending.item = self.decode(topic, pending.value)
        except Exception as exc:  # a decoder's bug must not stop the sink either
            if not isinstance(exc, MalformedMessageError):
                log.exception("%s sink: decode failed", self.name)
            self._reject(pending, "malformed_message", str(exc))
        if self.state.oldest is None:
            self.state.oldest = self.clock()
        self.state.buffer.append(pending)

    def _reject(self, pending: Pending[T], kind: str, reason: str) -> None:
        pending.rejection = (kind, reason)
        metrics.SINK_REJECTED.labels(pending.topic).inc()
        self.stats["rejected"] += 1
        log.error("%s: message skipped and dead-lettered (%s[%d]@%d): %s", kind,
                  pending.topic, pending.partition, pending.offset, reason)  # fmt: skip

    # -- the checkpoint: write, then the dead letters, then the offsets -------------------

    def _checkpoint(self) -> bool:
        st = self.state
        batch = st.buffer
        todo = [p for p in batch if p.rejection is None]
        written = self._write(todo) if todo else {}
        if written is None or not self._dead_letter(batch):
            return False
        for destination, count in written.items():
            metrics.SINK_ROWS_WRITTEN.labels(destination).inc(count)
        self._commit(batch)
        self.stats["written_messages"] += len(batch)
        st.buffer, st.oldest = [], None
        st.backoff, st.retry_at = 0.0, 0.0
        if st.paused:
            self._resume()
        return True

    def _write(self, todo: list[Pending[T]]) -> dict[str, int] | None:
        """Write the batch; on a refusal, message by message (the refused are rejected).
        None if the destination is unavailable (retry later)."""
        try:
            return self._counted(self.write([cast(T, p.item) for p in todo]), len(todo))
        except SinkBackpressureError as exc:
            self._failed(f"backpressure: {exc}", exc.retry_after)
            self._pause(str(exc))
            return None
        except Exception as exc:
            if self.is_transient(exc):
                self._failed(f"destination unavailable: {exc}")
                return None
            log.error("%s sink: batch refused (%s); writing message by message", self.name, exc)
        total: dict[str, int] = {}
        for pending in todo:
            try:
                written = self._counted(self.write([cast(T, pending.item)]), 1)
            except Exception as exc:
                if isinstance(exc, SinkBackpressureError) or self.is_transient(exc):
                    self._failed(f"destination unavailable: {exc}")
                    return None
                self._reject(pending, "refused_by_sink", f"{type(exc).__name__}: {exc}")
                continue
            for destination, count in written.items():
                total[destination] = total.get(destination, 0) + count
        return total

    def _counted(self, written: Mapping[str, int] | None, n: int) -> dict[str, int]:
        return {self.name: n} if written is None else dict(written)

    def _dead_letter(self, batch: list[Pending[T]]) -> bool:
        """Produce the batch's rejected messages to the DLQ and wait for their delivery
        (each is delivered once: a retry sends only the unconfirmed)."""
        todo = [p for p in batch if p.rejection is not None and not p.dead_lettered]
        if not todo:
            return True
        try:
            send_dead_letters(
                self.producer,
                self.config.topics.dlq,
                todo,
                self.settings.dlq_timeout,
                consumer=f"sink-{self.name}",
            )
        except (KafkaException, BufferError) as exc:
            self._failed(f"dead-letter topic unavailable: {exc}")
            return False
        if all(p.dead_lettered for p in todo):
            return True
        self._failed("dead letters not confirmed by Kafka")
        return False

    def _failed(self, reason: str, delay: float | None = None) -> None:
        st, s = self.state, self.settings
        metrics.SINK_WRITE_FAILURES.inc()
        self.stats["write_failures"] += 1
        st.backoff = min(st.backoff * 2 if st.backoff else s.backoff_initial, s.backoff_max)
        if delay is None:
            delay = st.backoff * random.uniform(0.8, 1.2)
        st.retry_at = self.clock() + delay
        log.warning("%s sink: %s; %d messages buffered, retrying in %.1fs",
                    self.name, reason, len(st.buffer), delay)  # fmt: skip

    def _commit(self, batch: list[Pending[T]]) -> None:
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
        except KafkaException as exc:  # written; a redelivery rewrites the same rows
            log.warning("offset commit failed (%s): those messages will be read again", exc)

    # -- pause / resume and rebalances ---------------------------------------------------

    def _set_paused(self, paused: bool) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(assignment)
        self.state.paused = paused

    def _pause(self, why: str) -> None:
        if not self.state.paused:
            log.warning("%s sink: %s: consumer paused until a write succeeds", self.name, why)
        self._set_paused(True)

    def _resume(self) -> None:
        self._set_paused(False)
        log.info("%s sink: writes succeed again: consumer resumed", self.name)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Write what we hold of the revoked partitions if we can; either way forget it (not
        committed, so the partitions' new owner reads it again)."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        st = self.state
        if any((p.topic, p.partition) in revoked for p in st.buffer):
            self._checkpoint()
        st.buffer = [p for p in st.buffer if (p.topic, p.partition) not in revoked]
        if not st.buffer:
            st.oldest = None
