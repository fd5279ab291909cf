"""Checkpoint values above `worker.checkpoint_message_bytes` on the real Kafka: written in chunks
by the worker's producer settings, read back whole by `read_checkpoints`, stale chunks
tombstoned, and a value larger than the topic's `max.message.bytes` stored at all."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from driftline.config import Config
from driftline.streams.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    ChunkedWriter,
    checkpoint_topic,
    ensure_internal_topics,
    read_checkpoints,
)
from driftline.streams.consumer import producer_settings

pytestmark = pytest.mark.service


def _latest_raw(config: Config) -> dict[str, bytes]:
    """The checkpoint topic's latest bytes per key, as compaction keeps them."""
    topic = checkpoint_topic(config)
    consumer = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"raw-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": MAX_CHECKPOINT_BYTES,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        latest: dict[str, bytes] = {}
        position, deadline = 0, time.monotonic() + 60
        while position < high and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=1.0):
                assert m.error() is None, m.error()
                key = (m.key() or b"").decode()
                if m.value() is None:
                    latest.pop(key, None)
                else:
                    latest[key] = m.value()
                position = (m.offset() or 0) + 1
        return latest
    finally:
        consumer.close()


def test_values_above_the_limit_round_trip_through_kafka(
    isolated_config: tuple[Config, dict[str, str]],
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    topic = checkpoint_topic(config)
    producer = Producer(producer_settings(config))
    writer = ChunkedWriter(max_value_bytes=64 * 1024)

    def write(key: str, value: Any) -> None:
        for part_key, part in writer.messages(key, orjson.dumps(value)):
            producer.produce(topic, key=part_key.encode(), value=part)
        assert producer.flush(30) == 0

    big = {"open": [{"rows": "x" * 300_000, "n": i} for i in range(3)]}  # ~900 KB: 14 chunks
    write("s1/0", big)
    write("s2/fraud", {"small": True})
    assert read_checkpoints(config) == {"s1/0": big, "s2/fraud": {"small": True}}

    # rewritten: larger, then smaller than the limit; each time only the live chunks remain
    bigger = {"open": [{"rows": "y" * 500_000, "n": i} for i in range(3)]}
    write("s1/0", bigger)
    assert read_checkpoints(config)["s1/0"] == bigger
    assert {k for k in _latest_raw(config) if "#chunk/" in k} == set(writer.live["s1/0"])

    # a new process (restart, rebalance) tombstones what the previous one wrote
    restarted = ChunkedWriter(max_value_bytes=64 * 1024)
    restarted.loaded(read_checkpoints(config))
    writer = restarted
    write("s1/0", {"open": []})
    assert read_checkpoints(config) == {"s1/0": {"open": []}, "s2/fraud": {"small": True}}
    assert set(_latest_raw(config)) == {"s1/0", "s2/fraud"}


def test_a_value_above_the_topics_max_message_bytes_is_stored(
    isolated_config: tuple[Config, dict[str, str]],
) -> None:
    """70 MiB: one message would be refused by the producer (message.max.bytes = 64 MiB)."""
    config, _ = isolated_config
    ensure_internal_topics(config)
    topic = checkpoint_topic(config)
    producer = Producer(producer_settings(config))
    writer = ChunkedWriter(max_value_bytes=config.worker.checkpoint_message_bytes)
    value = orjson.dumps({"rows": "z" * (70 * 1024 * 1024)})
    with pytest.raises(Exception, match=r"MSG_SIZE_TOO_LARGE|too large"):
        producer.produce(topic, key=b"unchunked", value=value)
    for part_key, part in writer.messages("s1/3", value):
        producer.produce(topic, key=part_key.encode(), value=part)
    assert producer.flush(60) == 0
    assert orjson.dumps(read_checkpoints(config)["s1/3"]) == value
