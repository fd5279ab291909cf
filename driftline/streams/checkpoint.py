"""The one checkpoint mechanism: latest state per key on a compacted Kafka topic.

State is written on an interval and at every revoke and shutdown, *before* the offsets it
covers can be committed, and carries the last offset it applied; on restart the state is read
back and the records Kafka redelivers (everything after the last committed offset) are skipped
up to that offset. So state is applied exactly once although delivery is at least once. A
stage-1 value (`s1/<partition>`) holds the partition's open windows and its label state, the
join index included (bounded by `labels.max_checkpointed_pending`), so labels still join their
predictions after a restart. Values are JSON (orjson), never pickle (see docs/DESIGN.md,
"Recovery").
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftline.config import Config

__all__ = ["MAX_CHECKPOINT_BYTES", "ensure_internal_topics", "read_checkpoints"]

MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024


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


def read_checkpoints(config: Config, timeout: float = 60.0) -> dict[str, Any]:
    """Every key's latest checkpoint (blocking: call it from an executor)."""
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
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        latest: dict[str, Any] = {}
        if high <= low:
            return latest
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
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
                    latest.pop(key, None)
                else:
                    latest[key] = orjson.loads(value)
                position = (message.offset() or 0) + 1
        return latest
    finally:
        consumer.close()
