"""One batching sink base: Kafka topics into a destination, committed only after the write.

A sink is a subclass of :class:`BatchingSink` that implements two methods:

- ``write(items)``: write a batch of decoded items durably, or raise;
- ``is_transient(exc)``: is this error of ``write`` (or ``setup``) worth retrying (the
  destination is down) rather than a refusal of the data?

Optional hooks: ``decode(topic, value)`` (one item per message; default: a JSON object),
``decode_records(topic, value, headers)`` instead for a message of several records or an input
format that reads the message's Kafka headers (:class:`Records`: its items, and the records
rejected with their index and reason), ``setup()`` (run at start,
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
  (:class:`MalformedMessageError`), a record ``decode_records`` rejects, or an item the
  destination refuses (a non-transient error of ``write``, found by halving the batch until
  the refused items are alone: a few writes for a few bad rows among thousands) is logged,
  counted in ``driftline_sink_rejected_total{topic}`` (and by :meth:`count_rejected`), sent to
  the dead-letter topic with the reason (and the record's index) in its headers, as the worker
  does, and its offset is committed with the batch. Never retried forever.

Metrics are defined once in :mod:`driftline.sinks.prometheus`; backlog and pause state are read
from the running sinks at scrape time. The loop is one module of about 500 lines on purpose:
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
from driftline.sinks.deadletter import DeadLetter, send_dead_letters
from driftline.streams.formats.base import Headers, RejectedRecord
from driftline.streams.reader import decode_object

__all__ = [
    "BatchingSink",
    "MalformedMessageError",
    "Records",
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


def _refusal(exc: Exception) -> str:
    """Why the destination refused: the error's type, first line and detail (not the rest: a
    database error's context quotes the data).

    >>> _refusal(ValueError("bad value\\nDETAIL:  NUL cannot be converted\\nCONTEXT:  row 2"))
    'ValueError: bad value (DETAIL:  NUL cannot be converted)'
    """
    lines = str(exc).strip().splitlines() or [""]
    detail = [line for line in lines[1:] if line.startswith("DETAIL:")]
    return f"{type(exc).__name__}: {lines[0]}" + (f" ({detail[0]})" if detail else "")


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
class Records(Generic[T]):
    """What ``decode_records`` makes of one message: the items to write, each with its index in
    the message (None for a message of one record), and the records rejected."""

    items: list[tuple[int | None, T]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass
class Pending(Generic[T]):
    """One consumed message: its decoded items still to write, and its dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # the original bytes: a record refused at write time is dead-lettered
    value: bytes | None
    headers: Any = None  # the message's Kafka headers, kept for its dead letters
    items: list[tuple[int | None, T]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


_Entry = tuple[Pending[T], tuple[int | None, T]]  # an item to write and its message


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
    refused_kind: ClassVar[str] = "refused_by_sink"
    """The rejection kind of an item ``write`` refuses (dead-letter header, metrics)."""

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
        self.rejected: dict[str, int] = {}  # rejection kind -> messages or records
        self.dead_letter_consumer = f"sink-{self.name}"  # the driftline.consumer header

    # -- what a sink implements ----------------------------------------------------------

    @abstractmethod
    def write(self, items: Sequence[T]) -> Mapping[str, int] | None:
        """Write ``items`` durably (idempotently: a batch may be written again after a crash);
        return the rows written per destination (e.g. table), or None for ``len(items)``."""

    @abstractmethod
    def is_transient(self, exc: Exception) -> bool:
        """True if ``exc`` means the destination is unavailable (retry later), False if it
        refused the data (the batch is halved until the refused items are dead-lettered)."""

    def decode(self, topic: str, value: bytes | None) -> T:
        """One message's item; :class:`MalformedMessageError` if it is not one. Default: a JSON
        object (:func:`json_object`)."""
        return cast(T, json_object(value))

    def decode_records(
        self, topic: str, value: bytes | None, headers: Headers = None
    ) -> Records[T]:
        """A message's items and rejected records, for a message of several records (or none
        worth writing); ``headers`` are the message's Kafka headers (confluent-kafka's list of
        pairs, or None), for a format that reads them (CloudEvents binary mode). Default: the
        one item of :meth:`decode`."""
        return Records([(None, self.decode(topic, value))])

    def count_rejected(self, topic: str, kind: str) -> None:
        """Count a dead-lettered message or record (a sink may add its own metric)."""
        metrics.SINK_REJECTED.labels(topic).inc()

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
            self.close()

    def close(self) -> None:
        """Leave the group (what is buffered is not committed: read again by the next owner)."""
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

    def step(self) -> int:
        """Consume, write and commit what is due; returns the messages committed."""
        s, st = self.settings, self.state
        room = max(1, min(s.batch_messages, s.max_buffer - len(st.buffer)))  # the bound is hard
        for message in self.consumer.consume(num_messages=room, timeout=s.poll_timeout):
            self._add(message)
        now = self.clock()
        due = st.buffer and (
            len(st.buffer) >= s.batch_messages
            or (st.oldest is not None and now - st.oldest >= s.flush_interval)
        )
        committed = 0
        if due and now >= st.retry_at:
            batch = len(st.buffer)
            committed = batch if self._checkpoint() else 0
        if len(st.buffer) >= s.max_buffer and not st.paused:
            self._pause(f"buffer full ({len(st.buffer)} messages)")
        elif st.paused and (assignment := self.consumer.assignment()):
            self.consumer.pause(assignment)  # partitions assigned since the pause
        if now >= st.next_housekeeping and not st.buffer:
            st.next_housekeeping = now + self._housekeeping()
        return committed

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
        # a consumed message's headers are (str, bytes | None) pairs; the stubs' type also
        # covers the producer's forms (a dict, str values)
        headers = cast(Headers, message.headers())
        pending: Pending[T] = Pending(
            topic, partition, offset, message.key(), message.value(), headers
        )
        try:
            records = self.decode_records(topic, pending.value, headers)
        except Exception as exc:  # a decoder's bug must not stop the sink either
            if not isinstance(exc, MalformedMessageError):
                log.exception("%s sink: decode failed", self.name)
            self._reject(pending, "malformed_message", str(exc))
        else:
            pending.items = records.items
            for r in records.rejected:
                self._reject(pending, r.kind, r.reason, r.index)
        if self.state.oldest is None:
            self.state.oldest = self.clock()
        self.state.buffer.append(pending)

    def _reject(self, p: Pending[T], kind: str, reason: str, index: int | None = None) -> None:
        p.letters.append(DeadLetter(p.topic, p.partition, p.offset, p.key, p.value, kind, reason,
                                    index, p.headers))  # fmt: skip
        self.count_rejected(p.topic, kind)
        self.stats["rejected"] += 1
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        log.error("%s: %s skipped and dead-lettered (%s[%d]@%d): %s", kind,
                  "message" if index is None else f"record {index}",
                  p.topic, p.partition, p.offset, reason)  # fmt: skip

    # -- the checkpoint: write, then the dead letters, then the offsets -------------------

    def _checkpoint(self) -> bool:
        st = self.state
        batch = st.buffer
        todo: list[_Entry[T]] = [(p, item) for p in batch for item in p.items]
        written = self._write(todo) if todo else {}
        if written is None or not self._dead_letter(batch):
            return False
        for destination, count in written.items():
            if count > 0:  # a negative count (a sink's bug) must not stop the sink after a write
                metrics.SINK_ROWS_WRITTEN.labels(destination).inc(count)
        self._commit(batch)
        self.stats["written_messages"] += len(batch)
        st.buffer, st.oldest = [], None
        st.backoff, st.retry_at = 0.0, 0.0
        if st.paused:
            self._resume()
        return True

    def _write(self, todo: list[_Entry[T]]) -> dict[str, int] | None:
        """Write the items; on a refusal, each half in turn until the refused items are alone
        (rejected, and dropped from their message). None if the destination is unavailable."""
        try:
            return self._counted(self.write([item for _, (_, item) in todo]), len(todo))
        except SinkBackpressureError as exc:
            self._failed(f"backpressure: {exc}", exc.retry_after)
            self._pause(str(exc))
            return None
        except Exception as exc:
            if self.is_transient(exc):
                self._failed(f"destination unavailable: {exc}")
                return None
            if len(todo) == 1:
                pending, entry = todo[0]
                pending.items = [e for e in pending.items if e is not entry]
                self._reject(pending, self.refused_kind, _refusal(exc), entry[0])
                return {}
            log.warning("%s sink: a batch of %d refused (%s); halving it", self.name, len(todo),
                        _refusal(exc))  # fmt: skip
        total: dict[str, int] = {}
        half = len(todo) // 2
        for part in (todo[:half], todo[half:]):
            written = self._write(part)
            if written is None:
                return None
            for destination, count in written.items():
                total[destination] = total.get(destination, 0) + count
        return total

    def _counted(self, written: Mapping[str, int] | None, n: int) -> dict[str, int]:
        return {self.name: n} if written is None else dict(written)

    def _dead_letter(self, batch: list[Pending[T]]) -> bool:
        """Produce the batch's rejected messages to the DLQ and wait for their delivery
        (each is delivered once: a retry sends only the unconfirmed)."""
        todo = [d for p in batch for d in p.letters if not d.dead_lettered]
        if not todo:
            return True
        try:
            send_dead_letters(
                self.producer,
                self.config.topics.dlq,
                todo,
                self.settings.dlq_timeout,
                consumer=self.dead_letter_consumer,
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
