"""Dead letters of the sinks: a message a sink cannot take goes to the dead-letter topic with
the reason and its origin in headers, the same headers the worker writes
(``Pipeline.dead_letter``), so one reader serves both (docs/OPERATIONS.md, "Reading the
dead-letter topic")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from driftline.sinks import prometheus as metrics

__all__ = ["DeadLetter", "dead_letter_headers", "send_dead_letters"]

log = logging.getLogger(__name__)


@dataclass
class DeadLetter:
    """A consumed message to dead-letter, whole or for one of its records (``index``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # the original bytes
    value: bytes | None
    kind: str
    reason: str
    index: int | None = None  # the record's position in a batch message
    dead_lettered: bool = False  # Kafka confirmed it
    in_flight: bool = False  # produced, not yet confirmed or failed


def dead_letter_headers(
    kind: str,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    index: int | None = None,
    consumer: str | None = None,
) -> dict[str, str | bytes | None]:
    """The headers of a dead letter: why, where the message came from, and (for a consumer of
    driftline's own topics) who rejected it. The worker's ``Pipeline.dead_letter`` writes the
    same.

    >>> dead_letter_headers("malformed_message", "invalid JSON", "driftline.metrics", 2, 41)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'driftline.reason.kind': b'malformed_message', 'driftline.reason': b'invalid JSON',
     'driftline.source.topic': b'driftline.metrics', 'driftline.source.partition': b'2',
     'driftline.source.offset': b'41'}
    """
    headers: dict[str, str | bytes | None] = {
        "driftline.reason.kind": kind.encode(),
        "driftline.reason": reason.encode(errors="replace"),
        "driftline.source.topic": topic.encode(),
        "driftline.source.partition": str(partition).encode(),
        "driftline.source.offset": str(offset).encode(),
    }
    if index is not None:
        headers["driftline.source.index"] = str(index).encode()
    if consumer is not None:
        headers["driftline.consumer"] = consumer.encode()
    return headers


def send_dead_letters(
    producer: Producer, topic: str, letters: Sequence[DeadLetter], timeout: float, consumer: str
) -> None:
    """Produce ``letters`` to ``topic`` and wait (``flush``) up to ``timeout`` seconds; each one
    Kafka confirms gets ``dead_lettered = True``. A letter already confirmed or still in the
    producer's queue is not produced again, so a retry sends each one once."""
    for letter in letters:
        if letter.dead_lettered or letter.in_flight:
            continue
        producer.produce(
            topic,
            key=letter.key,
            value=letter.value or b"",
            headers=dead_letter_headers(
                letter.kind,
                letter.reason,
                letter.topic,
                letter.partition,
                letter.offset,
                letter.index,
                consumer,
            ),
            on_delivery=_on_delivery(letter),
        )
        letter.in_flight = True  # after produce: a letter produce refused is tried again
    producer.flush(timeout)


def _on_delivery(p: DeadLetter) -> Callable[[KafkaError | None, Message], None]:
    def delivered(error: KafkaError | None, message: Message) -> None:
        p.in_flight = False
        if error is None:
            p.dead_lettered = True
            metrics.DLQ_RECORDS.labels(p.topic, p.kind).inc()
        else:
            log.warning("dead letter of %s[%d]@%d not delivered: %s",
                        p.topic, p.partition, p.offset, error)  # fmt: skip

    return delivered
