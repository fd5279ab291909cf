"""The worker's shell: one confluent-kafka consumer and one producer around `Pipeline`.

    predictions, labels, partials --consume(batch_size, batch_timeout)--> Pipeline.on_*
    every `checkpoint_interval_seconds`, on revoke and on shutdown:
        Pipeline.checkpoint() -> producer.flush() (every output confirmed) -> commit offsets

Why confluent-kafka and not Faust (measured, docs/DESIGN.md "Ingestion"): librdkafka fetches,
decompresses and runs the group protocol in C threads and `consume(n)` hands over a list of
messages for one Python call, while Faust's per-event path costs ~100 µs per message before our
code runs (a no-op Faust agent stayed under 10,000 messages/s here).

Consumer-group semantics:
- One group (`worker.app_id`) subscribed to the three input topics with the **range** assignor:
  for topics with equal partition counts, range gives a member the same partition numbers of
  every topic, so predictions partition p and labels partition p (the join is per partition)
  always have the same owner. Cooperative-sticky balances all partitions of all topics together
  and does not keep that guarantee.
- `enable.auto.commit=false`: offsets are committed explicitly, only after `Pipeline.checkpoint`
  wrote every changed state (which carries the last offset it applied) and the producer confirmed
  every message sent so far (DLQ, partials, events, summaries, checkpoints). After a crash the
  records since the last commit are redelivered and the restored state skips what it already
  holds: exactly-once in effect, as before.
- On revoke (inside `consume`, in the consumer thread): checkpoint, confirm, commit, then
  `Pipeline.forget_partitions`; on assign: `Pipeline.assign_partitions`. The callbacks hand the
  work to the event loop and wait for it, so the pipeline is only ever touched from the loop.

`consume` blocks (up to `batch_timeout_seconds`), so it runs in a dedicated thread; the loop
stays free for the idle-partition timer meanwhile.

One module of ~430 lines on purpose: the consume loop, the rebalance callbacks and the
checkpoint-confirm-commit order are one protocol and read in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from driftline.config import Config
from driftline.streams.checkpoint import MAX_CHECKPOINT_BYTES, partials_topic, read_checkpoints
from driftline.streams.pipeline import Message, Pipeline

log = logging.getLogger(__name__)

__all__ = ["IngestWorker", "KafkaMessage", "consumer_settings", "producer_settings"]

T = TypeVar("T")
IDLE_CHECK_SECONDS = 1.0
PREFETCH_BATCHES = 2
"""librdkafka's prefetch queue holds this many batches of `worker.batch_max_bytes`: so
`consume` finds its batch waiting while librdkafka fetches the next one. A batch as big as the
queue (32 MiB batches, 16 MiB queue) drained it and then waited for fetches to refill it, every
batch: the event loop sat idle ~10 % of a run with batch messages (docs/DESIGN.md,
"Ingestion")."""
NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: no position yet


class KafkaMessage:
    """One consumed message as plain attributes (what `pipeline.Message` describes)."""

    __slots__ = ("headers", "key", "offset", "partition", "topic", "value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers


class DeliveryError(RuntimeError):
    """The broker did not confirm an output message: offsets must not be committed."""


def batch_messages(consumed: int, consumed_bytes: int, batch_size: int, max_bytes: int) -> int:
    """How many messages the next `consume` asks for: `batch_size`, or fewer when the messages
    just consumed were so big that as many would exceed `max_bytes` (a batch's decoded records
    live at once: peak memory follows the batch's bytes, not its count).

    >>> batch_messages(5000, 5000 * 400, 5000, 32 << 20)  # single-record messages: all
    5000
    >>> batch_messages(800, 800 * 40_000, 5000, 32 << 20)  # messages of 100 records: ~840
    838
    >>> batch_messages(1, 50 << 20, 5000, 32 << 20)  # one huge message: still one
    1
    """
    if consumed == 0 or consumed_bytes == 0:
        return batch_size
    return max(1, min(batch_size, max_bytes * consumed // consumed_bytes))


def consumer_settings(config: Config) -> dict[str, Any]:
    """librdkafka settings of the worker's consumer (see the module docstring for why).

    >>> from driftline.config import WorkerConfig
    >>> settings = consumer_settings(Config(worker=WorkerConfig(session_timeout_seconds=10)))
    >>> settings["session.timeout.ms"], settings["heartbeat.interval.ms"]
    (10000, 2500)
    """
    session_timeout_ms = round(config.worker.session_timeout_seconds * 1000)
    return {
        **config.kafka.confluent_settings(),
        "group.id": config.worker.app_id,
        "partition.assignment.strategy": "range",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "queued.min.messages": 4 * config.worker.batch_size,
        # librdkafka's default is 64 MiB; 16 MiB with the default batch bound
        "queued.max.messages.kbytes": PREFETCH_BATCHES * config.worker.batch_max_bytes // 1024,
        # fetch far ahead (librdkafka's threads), so that `consume` finds a full batch waiting;
        # when the prefetch queue is full, librdkafka waits fetch.queue.backoff.ms (1 s by
        # default) before fetching again: `consume` then stalled ~1 s every few batches here
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "fetch.queue.backoff.ms": 10,
        # a fetch response is held whole in memory; a bigger message still comes (KIP-74)
        "fetch.max.bytes": 16 * 1024 * 1024,
        "receive.message.max.bytes": MAX_CHECKPOINT_BYTES + 1_000_000,
        # a subscribed topic created a moment ago (the partials topic, at first start) can be
        # missing from the first metadata: with librdkafka's default of 5 min, stage 2 then
        # received nothing for minutes (seen in test_pipeline under load)
        "topic.metadata.refresh.interval.ms": 5_000,
        # a worker that dies without leaving (kill -9, a lost host) keeps its partitions this
        # long; heartbeats must come well within it (librdkafka: 3 s, Kafka: at most 1/3)
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": min(3_000, session_timeout_ms // 4),
    }


def producer_settings(config: Config) -> dict[str, Any]:
    return {
        **config.kafka.confluent_settings(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_CHECKPOINT_BYTES,
        "queue.buffering.max.kbytes": 1_048_576,
    }


class IngestWorker:
    """Runs a `Pipeline` on batches from one consumer until `stop()` (or SIGTERM/SIGINT)."""

    def __init__(
        self,
        config: Config,
        build_pipeline: Callable[
            [Callable[..., Awaitable[None]], Callable[[], Awaitable[dict[str, Any]]]], Pipeline
        ],
    ) -> None:
        self.config = config
        self.topics = config.topics
        self.partials = partials_topic(config)
        self._delivery_errors: list[str] = []
        self.producer = Producer({**producer_settings(config), "on_delivery": self._delivered})
        self.consumer = Consumer(consumer_settings(config))
        self.pipeline = build_pipeline(self._send, self._load_checkpoints)
        self._consumer_thread = ThreadPoolExecutor(1, thread_name_prefix="driftline-consume")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._next_offsets: dict[tuple[str, int], int] = {}  # processed, to commit
        self._committed: dict[tuple[str, int], int] = {}
        self._rewound: set[int] = set()  # source partitions re-read since this batch failed
        self._last_checkpoint = time.monotonic()
        self.batches = 0
        # the next consume's count: until a batch has shown the messages' size, as if each were
        # 64 KiB (the first batch of a backlog is otherwise the biggest of all)
        self.batch_max_bytes = config.worker.batch_max_bytes
        self.batch_messages = batch_messages(1, 64 * 1024, config.worker.batch_size,
                                             self.batch_max_bytes)  # fmt: skip

    # -- producing -----------------------------------------------------------------------------

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(f"{message.topic()}: {error}")

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes] | None,
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=dict(headers) if headers else None
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.05)

    async def _drain(self) -> int:
        """Wait until what was produced so far is delivered or failed (at most 120 s); how
        many are still queued. Raises nothing: `_confirm` does, after the whole checkpoint,
        so a failure loses no more than before."""
        return await self._in_thread(None, self.producer.flush, 120.0)

    async def _confirm(self) -> None:
        """Wait until the broker confirmed every message produced so far."""
        remaining = await self._drain()
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(
                f"{remaining} output messages unconfirmed after 120 s; failed: {errors[:5]}"
            )

    async def _load_checkpoints(self) -> dict[str, Any]:
        await self._confirm()  # our own checkpoints must be on the broker before we read them
        return await self._in_thread(None, read_checkpoints, self.config)

    async def _in_thread(
        self, executor: ThreadPoolExecutor | None, function: Callable[..., T], *args: Any
    ) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    # -- checkpoint and commit ---------------------------------------------------------------

    async def checkpoint(self) -> list[TopicPartition]:
        """Checkpoint changed state, confirm every output; the offsets now safe to commit."""
        await self.pipeline.checkpoint(self._drain)  # delivered as it goes: less queued
        await self._confirm()
        self._last_checkpoint = time.monotonic()
        return [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self._next_offsets.items()
            if self._committed.get((topic, partition)) != offset
        ]

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance started: the next commit covers it
            log.warning("committing %d offsets failed: %s", len(offsets), exc)
            return
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    # -- rebalance (called by librdkafka inside consume/close, in the consumer thread) ---------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _describe(partitions))
        self._on_loop(self._assigned(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", _describe(partitions))
        self._commit(self._on_loop(self._revoked(partitions, lost=False)))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s (no commit: another member may own them now)", _describe(partitions))
        self._on_loop(self._revoked(partitions, lost=True))

    def _on_loop(self, coroutine: Awaitable[T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    async def _assigned(self, partitions: list[TopicPartition]) -> None:
        self.pipeline.assign_partitions((tp.topic, tp.partition) for tp in partitions)

    async def _revoked(self, partitions: list[TopicPartition], lost: bool) -> list[TopicPartition]:
        offsets: list[TopicPartition] = []
        if not lost:
            try:
                offsets = await self.checkpoint()
            except Exception:  # never raise into librdkafka; the state is replayed instead
                log.exception("checkpoint on revoke failed; the next owner replays from the commit")
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.pipeline.forget_partitions(revoked)
        for key in revoked:
            self._next_offsets.pop(key, None)
            self._committed.pop(key, None)
        return [tp for tp in offsets if (tp.topic, tp.partition) in revoked]

    # -- the loop ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):  # not the main thread (tests)
                loop.add_signal_handler(sig, self.stop)
        self.consumer.subscribe(
            [self.topics.predictions, self.topics.labels, self.partials],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        timer = asyncio.create_task(self._idle_timer())
        worker = self.config.worker
        # What exists now (modules, profiles, config) lives as long as the process: out of the
        # collector's sight, a full collection takes milliseconds instead of ~0.3 s, and batches
        # of decoded records trigger one every few seconds (measured: 20 % of a batch-message run)
        gc.collect()
        gc.freeze()
        try:
            while not self._stopping.is_set():
                raw = await self._in_thread(
                    self._consumer_thread,
                    self.consumer.consume,
                    self.batch_messages,
                    worker.batch_timeout_seconds,
                )
                if raw:
                    await self._process(raw)
                self.producer.poll(0)
                if time.monotonic() - self._last_checkpoint >= worker.checkpoint_interval_seconds:
                    self._commit(await self.checkpoint())
        finally:
            timer.cancel()
            try:
                self._commit(await self.checkpoint())
            finally:
                await self._in_thread(self._consumer_thread, self.consumer.close)
                self.producer.flush(30)
                self._consumer_thread.shutdown()
                gc.unfreeze()  # what run() froze (its producer among it) can be freed again
            log.info("worker stopped after %d batches", self.batches)

    async def _process(self, raw: list[Any]) -> None:
        by_topic: dict[str, list[Message]] = {}
        consumed_bytes = 0
        for m in raw:
            error = m.error()
            if error is not None:
                log.warning("consume: %s", error)
                continue
            value = m.value()
            message = KafkaMessage(
                m.topic(), m.partition(), m.offset(), m.key(), value, m.headers()
            )
            if value:
                consumed_bytes += len(value)
            by_topic.setdefault(message.topic, []).append(message)
            self._next_offsets[(message.topic, message.partition)] = message.offset + 1
        self.batches += 1
        self.batch_messages = batch_messages(
            len(raw),
            consumed_bytes,
            self.config.worker.batch_size,
            self.batch_max_bytes,
        )
        self._rewound.clear()
        for topic, handler, what in (
            (self.topics.predictions, self.pipeline.on_predictions, "predictions"),
            (self.topics.labels, self.pipeline.on_labels, "labels"),
            (self.partials, self.pipeline.on_partials, "partials"),
        ):
            messages = by_topic.get(topic)
            if messages and self._rewound and topic == self.topics.labels:
                # re-read after the rewind of their partition, with its predictions
                messages = [m for m in messages if m.partition not in self._rewound]
            if messages:
                await self._handle(handler, messages, what)

    async def _handle(
        self,
        handler: Callable[[list[Message]], Awaitable[None]],
        messages: list[Message],
        what: str,
    ) -> None:
        try:
            await handler(messages)
        except Exception:  # the last resort: nothing may stop the loop
            log.exception("%s batch of %d messages failed; dead-lettering it", what, len(messages))
            for message in messages:
                await self.pipeline.dead_letter(
                    message, "worker_error", f"worker error processing the {what} batch", None
                )
        if self.pipeline.rewound:
            await self._rewind()

    async def _rewind(self) -> None:
        """A partition's batch failed half-way and the pipeline dropped its state (restored from
        the checkpoint next, see `Pipeline.rewind`): re-read its predictions and labels from
        the committed offsets."""
        partitions, self.pipeline.rewound = self.pipeline.rewound, set()
        self._rewound |= partitions
        tps = [
            TopicPartition(t, p)
            for p in sorted(partitions)
            for t in (self.topics.predictions, self.topics.labels)
        ]
        committed = await self._in_thread(None, self.consumer.committed, tps, 10.0)
        for tp in committed:
            key = (tp.topic, tp.partition)
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            if tp.offset >= 0:
                self._next_offsets[key] = self._committed[key] = tp.offset
            else:
                self._next_offsets.pop(key, None)
        log.warning("re-reading partitions %s from their committed offsets", sorted(partitions))

    async def _idle_timer(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            try:
                await self._declare_idle()
            except Exception:
                log.exception("declaring idle partitions failed; retrying on the next tick")

    def _end_offsets(self, partitions: list[int], cached: bool) -> dict[int, int]:
        """End offsets of predictions partitions. Cached: the high watermark of the last fetch
        response (no request; fetches of a caught-up partition come back every
        fetch.wait.max.ms). Asking the broker instead, while `consume` ran in the consumer
        thread, delayed `consume` by ~1 s each time here."""
        ends = {}
        for p in partitions:
            tp = TopicPartition(self.topics.predictions, p)
            if cached:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            else:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
            if high is not None and high >= 0:
                ends[p] = int(high)
        return ends

    async def _declare_idle(self) -> None:
        pipeline = self.pipeline
        assigned = pipeline.assigned_partitions()
        if not assigned:
            return
        # Every consumer call of the timer runs in the consumer thread, between two `consume`
        # calls: called from the loop while `consume` ran a rebalance callback (which waits for
        # the loop), it blocked the loop and the callback for good (seen: a group stuck in a
        # rebalance, the worker's stack dumped with `kill -USR1`).
        ends = await self._in_thread(self._consumer_thread, self._end_offsets, assigned, True)
        unknown = [p for p in assigned if p not in ends]  # nothing fetched yet
        if unknown:
            ends.update(await self._in_thread(None, self._end_offsets, unknown, False))
        pipeline.end_offsets = ends  # the consumer lag, read when Prometheus scrapes
        quiet = pipeline.quiet_partitions()
        if quiet:
            tps = [TopicPartition(self.topics.predictions, p) for p in quiet]
            positions = {
                tp.partition: (None if tp.offset == NO_OFFSET else int(tp.offset))
                for tp in await self._in_thread(self._consumer_thread, self.consumer.position, tps)
            }
            # A partition nobody ever wrote to has no position (librdkafka reports
            # OFFSET_INVALID until a fetch returns a message): empty, it is caught up. Without
            # this, fewer keys than partitions stalled every window (tests/faults).
            positions.update(
                {p: 0 for p, at in positions.items() if at is None and ends.get(p) == 0}
            )
            await pipeline.declare_idle({p: ends[p] for p in quiet if p in ends}, positions)


def _describe(partitions: list[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(ps)}" for t, ps in sorted(by_topic.items())) or "nothing"
