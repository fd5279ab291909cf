"""Read a topic with a plain consumer: for `driftline demo`, `alerts tail`, `notify` and tests.

By default it assigns every partition explicitly (no group, no rebalance, nothing committed),
starting at the end as of construction (only what comes next) or at the beginning. With a
`group` it subscribes as that consumer group and commits what it read, to resume after a
restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from driftline.config import Config

__all__ = ["TopicReader", "decode_object", "describe_skip"]

_ELECTION_ERRORS = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
}


class TopicReader:
    def __init__(
        self,
        config: Config,
        topic: str,
        start: Literal["end", "beginning"] = "end",
        group: str | None = None,
    ) -> None:
        """`group`: read as that consumer group instead, committing what was read (a process
        that must resume where it stopped after a restart); it starts at the end the first time."""
        self.topic = topic
        self._consumer = Consumer(
            {
                **config.kafka.confluent_settings(),
                "group.id": group or f"driftline-reader-{uuid.uuid4()}",
                "enable.auto.commit": group is not None,
                "auto.offset.reset": "latest",
                "enable.partition.eof": False,
            }
        )
        if group is not None:
            self._consumer.subscribe([topic])
            return
        metadata = self._consumer.list_topics(topic, timeout=30)
        if metadata.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic}: {metadata.topics[topic].error}")
        partitions = sorted(metadata.topics[topic].partitions)
        assignment = []
        for p in partitions:
            if start == "end":
                high = self._end_offset(TopicPartition(topic, p))
                assignment.append(TopicPartition(topic, p, high))
            else:
                assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        self._consumer.assign(assignment)

    def _end_offset(self, partition: TopicPartition, timeout: float = 30.0) -> int:
        """The partition's end offset; retried while a new topic's leader is being elected."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(partition, timeout=10)
                return int(high)
            except KafkaException as exc:
                error = exc.args[0]
                transient = error.retriable() or error.code() in _ELECTION_ERRORS
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def messages(
        self, timeout: float, idle: float | None = None, stop: Callable[[], bool] | None = None
    ) -> Iterator[Message]:
        """Yield messages until `timeout` seconds pass, `idle` seconds go by without one, or
        `stop()` says so (e.g. the process that should write them died)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and not (stop and stop()):
            batch = self._consumer.consume(1000, timeout=0.2)
            if batch:
                last = time.monotonic()
            elif idle is not None and time.monotonic() - last > idle:
                return
            for message in batch:
                if message.error() is not None:
                    raise RuntimeError(f"reading {self.topic}: {message.error()}")
                yield message

    def close(self) -> None:
        self._consumer.close()


def decode_object(value: bytes | None) -> dict[str, Any]:
    """A message value that must be one JSON object (driftline's own topics); `ValueError`
    saying why if it is not.

    >>> decode_object(b'{"type": "data_drift"}')
    {'type': 'data_drift'}
    >>> decode_object(b"[1, 2]")
    Traceback (most recent call last):
    ...
    ValueError: a JSON list, not an object
    """
    try:
        decoded = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"a JSON {type(decoded).__name__}, not an object")
    return decoded


def describe_skip(message: Message, reason: object) -> str:
    """One line naming a skipped message: where it is and why.

    >>> class M:
    ...     def topic(self): return "alerts"
    ...     def partition(self): return 0
    ...     def offset(self): return 7
    ...     def value(self): return b"oops"
    >>> describe_skip(M(), "not JSON")
    'skipped malformed message alerts[0]@7 (4 bytes): not JSON'
    """
    size = len(message.value() or b"")
    return (
        f"skipped malformed message {message.topic()}[{message.partition()}]@{message.offset()} "
        f"({size} bytes): {str(reason)[:200]}"
    )
