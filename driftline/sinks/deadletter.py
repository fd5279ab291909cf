"""Dead letters of the sinks: a message a sink cannot take goes to the dead-letter topic with
the reason and its origin in headers, the same headers the worker writes
(``Pipeline.dead_letter``, built on :func:`dead_letter_headers`), so one reader serves both
(docs/OPERATIONS.md, "Reading the dead-letter topic"). The message's own headers travel with
it (a binary-mode CloudEvent keeps its ``ce_*`` attributes, so the copy can be replayed as it
came); the ``driftline.*`` names are driftline's."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from driftline.sinks import prometheus as metrics
from driftline.streams.formats.base import header_map

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
    headers: Any = None  # the message's own Kafka headers (pairs, a mapping, or None)
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
    original: Any = None,
) -> dict[str, bytes]:
    """The headers of a dead letter: the message's own (``original``: pairs, a mapping or
    None; any ``driftline.*`` among them dropped), then why (the reason cut at 4 KiB), where
    the message came from, and (for a consumer of driftline's own topics) who rejected it.
    The worker's ``Pipeline.dead_letter`` adds its own details to these.

    >>> dead_letter_headers("invalid_event", "no ce_id", "preds", 2, 41,
    ...                     original=[("ce_type", b"t"), ("driftline.reason", b"forged")])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'ce_type': b't', 'driftline.reason.kind': b'invalid_event', 'driftline.reason': b'no ce_id',
     'driftline.source.topic': b'preds', 'driftline.source.partition': b'2',
     'driftline.source.offset': b'41'}
    """
    # the message's headers, names as sent, without ``driftline.*`` (ours replace them)
    headers = header_map(original, lower_case=False, drop_prefix="driftline.")
    headers |= {
        "driftline.reason.kind": kind.encode(),
        "driftline.reason": reason.encode(errors="replace")[:4096],
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
        headers: dict[str, str | bytes | None] = {
            **dead_letter_headers(
                letter.kind,
                letter.reason,
                letter.topic,
                letter.partition,
                letter.offset,
                letter.index,
                consumer,
                letter.headers,
            )
        }
        producer.produce(
            topic,
            key=letter.key,
            value=letter.value or b"",
            headers=headers,
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
