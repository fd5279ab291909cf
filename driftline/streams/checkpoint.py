"""The one checkpoint mechanism: latest state per key on a compacted Kafka topic.

State is written on an interval and at every revoke and shutdown, *before* the offsets it
covers can be committed, and carries the last offset it applied; on restart the state is read
back and the records Kafka redelivers (everything after the last committed offset) are skipped
up to that offset. So state is applied exactly once although delivery is at least once. A
stage-1 value (`s1/<partition>`) holds the partition's open windows and its label state, the
join index included (bounded by `labels.max_checkpointed_pending`), so labels still join their
predictions after a restart. Values are JSON (orjson), never pickle (see docs/DESIGN.md,
"Recovery").

A value larger than `worker.checkpoint_message_bytes` is written in chunks (`ChunkedWriter`):
the chunks under keys of a new generation (`<key>#chunk/<generation>/<i>`) first, then the
head under the key itself, naming its generation, count, size and SHA-256, then tombstones for
the chunks of the generation it replaces. The topic has one partition and the producer is
idempotent, so a reader that sees a head has seen its chunks; a crash between them leaves the
previous head and its chunks intact. `read_checkpoints` reassembles each head from its own
generation only, and tells the writer (`CheckpointValues.chunk_keys`) which chunk keys are on
the topic, so the next write tombstones them whoever wrote them.

A stage-1 head does not hold its windows' reservoirs: they are in append-only *segments*
(`s1/<p>#seg/<id>`, ordinary values here, chunked like any other), written before the head
that lists them (streams/segments.py; docs/DESIGN.md, "Recovery").
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftline.config import Config

log = logging.getLogger(__name__)

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "CheckpointValues",
    "ChunkedWriter",
    "assemble_checkpoints",
    "ensure_internal_topics",
    "read_checkpoints",
]

MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
CHUNK_MARK = "#chunk/"  # in the keys of chunks: `<key>#chunk/<generation>/<index>`
HEAD_FIELD = "driftline_chunks"  # the only field of a chunked value's head


class CheckpointValues(dict[str, Any]):
    """Every key's latest checkpoint (decoded), and the chunk keys on the topic per head key
    (``chunk_keys``: for `ChunkedWriter`, which tombstones them when it replaces the value)."""

    def __init__(self, values: dict[str, Any], chunk_keys: dict[str, list[str]]) -> None:
        super().__init__(values)
        self.chunk_keys = chunk_keys


@dataclass
class ChunkedWriter:
    """The messages that store one checkpoint value under `max_value_bytes` each (pure: the
    caller sends them in order on the one partition of the checkpoint topic).

    >>> writer = ChunkedWriter(max_value_bytes=4)
    >>> [(k, v) for k, v in writer.messages("s1/0", b"[1]")]
    [('s1/0', b'[1]')]
    >>> big = writer.messages("s1/0", b"[1,2,3]", generation="g1")
    >>> [k for k, _ in big], big[-1][1][:21]
    (['s1/0#chunk/g1/0', 's1/0#chunk/g1/1', 's1/0'], b'{"driftline_chunks":{')
    >>> [(k, v) for k, v in writer.messages("s1/0", b"[]")]  # the old chunks tombstoned
    [('s1/0', b'[]'), ('s1/0#chunk/g1/0', None), ('s1/0#chunk/g1/1', None)]
    """

    max_value_bytes: int
    live: dict[str, list[str]] = field(default_factory=dict)
    """Chunk keys on the topic (written, not yet tombstoned) per head key."""

    def messages(
        self, key: str, value: bytes, generation: str | None = None
    ) -> list[tuple[str, bytes | None]]:
        stale = self.live.pop(key, [])
        out: list[tuple[str, bytes | None]] = []
        if len(value) <= self.max_value_bytes:
            out.append((key, value))
        else:
            generation = generation or uuid.uuid4().hex[:16]
            size = self.max_value_bytes
            keys = [f"{key}{CHUNK_MARK}{generation}/{i}" for i in range(-(-len(value) // size))]
            out += [(k, value[i * size : (i + 1) * size]) for i, k in enumerate(keys)]
            head = {
                "generation": generation,
                "count": len(keys),
                "bytes": len(value),
                "sha256": hashlib.sha256(value).hexdigest(),
            }
            out.append((key, orjson.dumps({HEAD_FIELD: head})))
            self.live[key] = keys
        out += [(k, None) for k in stale if k not in self.live.get(key, ())]
        return out

    def tombstones(self, key: str) -> list[tuple[str, bytes | None]]:
        """The messages that delete ``key`` and its chunks (a segment no head references).

        >>> writer = ChunkedWriter(max_value_bytes=4)
        >>> _ = writer.messages("s1/0#seg/a", b"[1,2,3]", generation="g1")
        >>> writer.tombstones("s1/0#seg/a")
        [('s1/0#seg/a', None), ('s1/0#seg/a#chunk/g1/0', None), ('s1/0#seg/a#chunk/g1/1', None)]
        """
        keys = [key, *self.live.pop(key, [])]
        return [(k, None) for k in keys]

    def loaded(self, values: dict[str, Any]) -> None:
        """The topic's chunk keys as `read_checkpoints` found them (after every own write was
        confirmed): what the next write of each key tombstones."""
        self.live = {k: list(v) for k, v in getattr(values, "chunk_keys", {}).items()}


def checkpoint_topic(config: Config) -> str:
    return f"{config.worker.app_id}-checkpoints"


def partials_topic(config: Config) -> str:
    return f"{config.worker.app_id}-partials"


def ensure_internal_topics(config: Config, timeout: float = 30.0) -> None:
    """The compacted checkpoint topic (1 partition) and the partials repartition topic (keyed by
    model, as many partitions as the predictions topic)."""
    admin = AdminClient(config.kafka.confluent_settings())
    existing = admin.list_topics(timeout=timeout).topics
    wanted = []
    if checkpoint_topic(config) not in existing:
        wanted.append(
            NewTopic(
                checkpoint_topic(config),
                num_partitions=1,
                replication_factor=config.topics.replication_factor,
                config={
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(MAX_CHECKPOINT_BYTES),
                    "segment.ms": "600000",
                },
            )
        )
    if partials_topic(config) not in existing:
        wanted.append(
            NewTopic(
                partials_topic(config),
                num_partitions=config.topics.partitions,
                replication_factor=config.topics.replication_factor,
                config={
                    "max.message.bytes": str(MAX_CHECKPOINT_BYTES),
                    "retention.ms": str(7 * 86400_000),
                },
            )
        )
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise RuntimeError(f"could not create internal topic {name}: {exc}") from exc


def read_checkpoints(config: Config, timeout: float = 60.0) -> CheckpointValues:
    """Every key's latest checkpoint, chunked values reassembled (blocking: call it from an
    executor)."""
    topic = checkpoint_topic(config)
    consumer = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"driftline-checkpoint-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": MAX_CHECKPOINT_BYTES,
        }
    )
    try:
        low, high = _watermarks(consumer, topic, timeout)
        if high <= low:
            return CheckpointValues({}, {})
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        raw: dict[str, bytes] = {}
        position = low
        deadline = time.monotonic() + timeout
        while position < high:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic}: at offset {position} of {high} after {timeout} s"
                )
            for message in consumer.consume(500, timeout=1.0):
                if message.error() is not None:
                    raise RuntimeError(f"reading {topic}: {message.error()}")
                key = (message.key() or b"").decode()
                value = message.value()
                if value is None:
                    raw.pop(key, None)
                else:
                    raw[key] = value
                position = (message.offset() or 0) + 1
        return assemble_checkpoints(raw)
    finally:
        consumer.close()


_NO_LEADER_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def _watermarks(consumer: Consumer, topic: str, timeout: float) -> tuple[int, int]:
    """The topic's low and high offsets; retried while the broker answers with a retriable
    error (a topic created a moment ago has no leader yet: NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if time.monotonic() > deadline or not (
                error.retriable() or error.code() in _NO_LEADER_YET
            ):
                raise
            log.info("reading %s: %s; retrying", topic, exc.args[0].str())
            time.sleep(0.2)


def assemble_checkpoints(raw: dict[str, bytes]) -> CheckpointValues:
    """Decoded values from the topic's latest bytes per key: a chunked value from the chunks of
    its head's generation; when they are missing or do not match it, the head with an error
    (logged; the stage cannot restore it, reports it and starts fresh, as with any damaged
    checkpoint).

    >>> writer = ChunkedWriter(max_value_bytes=4)
    >>> topic = dict(writer.messages("s2/m", b'{"a":[1,2]}'))
    >>> topic["s1/0"] = b"[0]"
    >>> values = assemble_checkpoints(topic)
    >>> dict(values), [len(v) for v in values.chunk_keys.values()]
    ({'s2/m': {'a': [1, 2]}, 's1/0': [0]}, [3])
    """
    chunks = {k: v for k, v in raw.items() if CHUNK_MARK in k}
    chunk_keys: dict[str, list[str]] = {}
    for k in chunks:
        chunk_keys.setdefault(k.split(CHUNK_MARK, 1)[0], []).append(k)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if CHUNK_MARK in key:
            continue
        decoded = orjson.loads(value)
        head = decoded.get(HEAD_FIELD) if isinstance(decoded, dict) and len(decoded) == 1 else None
        if head is None:
            values[key] = decoded
            continue
        try:
            values[key] = orjson.loads(_reassemble(key, head, chunks))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("checkpoint %s: not restored: %s", key, exc)
            # the stage cannot restore this and reports it (`Shared.checkpoint_dropped`)
            values[key] = {HEAD_FIELD: head, "error": str(exc)}
    return CheckpointValues(values, chunk_keys)


def _reassemble(key: str, head: dict[str, Any], chunks: dict[str, bytes]) -> bytes:
    """The value a head names, from the chunks of its generation (ValueError if they are
    missing or do not match it)."""
    generation, count = str(head["generation"]), int(head["count"])
    parts = [chunks.get(f"{key}{CHUNK_MARK}{generation}/{i}") for i in range(count)]
    missing = sum(p is None for p in parts)
    whole = b"".join(p for p in parts if p is not None)
    if missing or len(whole) != int(head["bytes"]):
        raise ValueError(
            f"generation {generation}: {count - missing} of {count} chunks, "
            f"{len(whole)} of {head['bytes']} bytes"
        )
    if hashlib.sha256(whole).hexdigest() != head["sha256"]:
        raise ValueError(f"generation {generation}: SHA-256 does not match")
    return whole
