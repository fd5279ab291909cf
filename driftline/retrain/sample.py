"""The training sample: a bounded sample of joined (features, prediction, label, event time)
records per model version in PostgreSQL (`driftline sink training-sample`).

Its own consumer group (``<worker.app_id>-training-sample``) reads the predictions and labels
topics. A prediction is kept when the hash of its ``prediction_id`` falls below the model's rate
(``retraining.sample_rate`` / ``sample_rates``): deterministic, so a redelivered record is kept
or dropped the same way, and independent of the router's hash (another salt), so the sample
does not favour an arm. A label fills in the label of its sampled prediction; a label that
arrives first waits in ``training_pending_labels``. Offsets are committed after the write.

Bounds: at most ``sample_max_rows_per_version`` rows per model version (the oldest by event time
go first), and rows older than ``sample_retention_days`` (event time) are deleted; pending
labels expire after ``labels.ttl_seconds``. Stratification (by label and by time) is applied
when a pipeline reads the sample (:func:`read_stratified`).

Bad input never stops the sink. Messages are decoded with the record contract
(`parse_predictions`, `parse_labels`: batches too); a malformed message or record is skipped,
counted (`driftline_training_sample_rejected_total{topic,kind}`) and sent to the dead-letter
topic with the reason in its headers (`driftline.consumer: training-sample`; the worker
dead-letters the same predictions and labels from its own group). A write PostgreSQL refuses
for the data itself (psycopg DataError, IntegrityError, a value Python cannot encode) is not
retried: the batch is halved until the refused records are found, those are dead-lettered
(`store_rejected`) and the rest is written. Only errors of the connection or the server
(PostgreSQL down, a timeout) are retried, with backoff, and nothing is committed meanwhile.

The tables and the SQL (sampling, write, retention, the stratified read) are in
:mod:`driftline.retrain.sample_table`; their public names are importable from here too.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from driftline.config import Config
from driftline.retrain.sample_table import (
    hash_unit,
    normalise_class,
    read_stratified,
    refused_data,
    retention,
    sampled,
    write_batch,
)
from driftline.sinks.prometheus import TRAINING_SAMPLE_REJECTED
from driftline.sinks.store import PostgresStore
from driftline.streams.records import parse_labels, parse_predictions

__all__ = [
    "hash_unit",
    "normalise_class",
    "read_stratified",
    "run_training_sample_sink",
    "sampled",
    "write_batch",
]

log = logging.getLogger(__name__)


class _Item:
    """A decoded record and where it came from (for the dead-letter headers)."""

    __slots__ = ("index", "is_prediction", "message", "record")

    def __init__(
        self, record: dict[str, Any], message: Message, index: int | None, is_prediction: bool
    ) -> None:
        self.record = record
        self.message = message
        self.index = index
        self.is_prediction = is_prediction


def _positions(n_valid: int, rejected: Sequence[Any]) -> list[int | None]:
    """Where the valid records of a message were: their indexes in a batch, None for a message
    of one record.

    >>> _positions(2, [])
    [0, 1]
    >>> from driftline.streams.formats import RejectedRecord
    >>> _positions(2, [RejectedRecord("schema_violation", "x", 1)])
    [0, 2]
    >>> _positions(1, [])
    [None]
    """
    skipped = {r.index for r in rejected if r.index is not None}
    total = n_valid + len(skipped)
    if total <= 1:
        return [None] * n_valid
    return [i for i in range(total) if i not in skipped]


def _wait(stop: threading.Event | None, seconds: float) -> bool:
    """Sleep ``seconds``; True when ``stop`` was set meanwhile."""
    if stop is not None:
        return stop.wait(seconds)
    time.sleep(seconds)
    return False


class TrainingSampleSink:
    """The consumer loop of `driftline sink training-sample`."""

    def __init__(self, config: Config, store: PostgresStore, group: str | None = None) -> None:
        self.config = config
        self.store = store
        self.group_id = group or f"{config.worker.app_id}-training-sample"
        settings = config.retraining
        self.max_label_rate = max([settings.sample_rate, *settings.sample_rates.values()])
        self.consumer = Consumer(
            {
                **config.kafka.confluent_settings(),
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.subscribe([config.topics.predictions, config.topics.labels])
        self.dead_letters = Producer({**config.kafka.confluent_settings(), "log_level": 3})
        self.written = {"predictions": 0, "labels": 0, "pending": 0, "trimmed": 0}
        self.rejected: dict[str, int] = {}  # rejection kind -> records skipped

    def _reject(self, message: Message, kind: str, reason: str, index: int | None) -> None:
        """Skip a message or one record of it: log, count, dead-letter (original key and bytes,
        the reason in the headers, as docs/FORMATS.md describes)."""
        topic = str(message.topic())
        log.warning(
            "training sample: skipping %s %s[%s]@%s%s: %s",
            kind,
            topic,
            message.partition(),
            message.offset(),
            "" if index is None else f" record {index}",
            reason,
        )
        TRAINING_SAMPLE_REJECTED.labels(topic, kind).inc()
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        headers: dict[str, str | bytes | None] = {
            "driftline.reason.kind": kind.encode(),
            "driftline.reason": reason.encode(errors="replace"),
            "driftline.source.topic": topic.encode(),
            "driftline.source.partition": str(message.partition()).encode(),
            "driftline.source.offset": str(message.offset()).encode(),
            "driftline.consumer": b"training-sample",
        }
        if index is not None:
            headers["driftline.source.index"] = str(index).encode()
        while True:
            try:
                self.dead_letters.produce(
                    self.config.topics.dlq,
                    key=message.key(),
                    value=message.value() or b"",
                    headers=headers,
                )
                break
            except BufferError:
                self.dead_letters.poll(0.1)
        self.dead_letters.poll(0)

    def _split(self, messages: Iterable[Message]) -> tuple[list[_Item], list[_Item]]:
        rates = self.config.retraining
        predictions: list[_Item] = []
        labels: list[_Item] = []
        for message in messages:
            if message.error() is not None:
                log.warning("consume error: %s", message.error())
                continue
            is_label = message.topic() == self.config.topics.labels
            try:
                parse = parse_labels if is_label else parse_predictions
                valid, rejected = parse(message.value() or b"")
                positions = _positions(len(valid), rejected)
                for rejection in rejected:
                    self._reject(message, rejection.kind, rejection.reason, rejection.index)
                for record, index in zip(valid, positions, strict=True):
                    prediction_id = str(record["prediction_id"])
                    if is_label:
                        if sampled(prediction_id, self.max_label_rate):
                            labels.append(_Item(record, message, index, False))
                    elif sampled(prediction_id, rates.sample_rate_for(record["model"])):
                        predictions.append(_Item(record, message, index, True))
            except Exception as exc:  # a bug must cost one message, never a crash-loop
                self._reject(message, "worker_error", f"{type(exc).__name__}: {exc}", None)
        return predictions, labels

    def _write(self, predictions: list[_Item], labels: list[_Item]) -> None:
        """Write the items; rows PostgreSQL refuses are found by halving and dead-lettered.
        A transient error (connection, server) propagates: the caller retries."""
        try:
            counts = write_batch(
                self.store,
                [item.record for item in predictions],
                [item.record for item in labels],
                max_rows_per_version=self.config.retraining.sample_max_rows_per_version,
            )
        except Exception as exc:
            if not refused_data(exc):
                raise
            items = [*predictions, *labels]
            if len(items) == 1:
                item = items[0]
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = f"PostgreSQL refused the record: {type(exc).__name__}: {first}"
                self._reject(item.message, "store_rejected", reason, item.index)
                return
            half = len(items) // 2
            for part in (items[:half], items[half:]):
                self._write(
                    [i for i in part if i.is_prediction], [i for i in part if not i.is_prediction]
                )
            return
        for key, value in counts.items():
            self.written[key] += value

    def step(self, timeout: float = 1.0, stop: threading.Event | None = None) -> int:
        """Consume one batch, write it (retrying with backoff while PostgreSQL is unreachable;
        isolating and dead-lettering the rows it refuses), commit; returns the messages
        handled (0 when stopped before the write succeeded: nothing committed)."""
        messages = self.consumer.consume(5000, timeout=timeout)
        if not messages:
            return 0
        predictions, labels = self._split(messages)
        delay = 0.5
        while predictions or labels:
            try:
                self._write(predictions, labels)
                break
            except Exception:
                log.exception("training sample write failed; retrying in %.1f s", delay)
                if _wait(stop, delay):
                    return 0  # not committed: redelivered after the restart
                delay = min(delay * 2, 30.0)
        # The dead letters are out before the offsets move past their messages.
        while self.dead_letters.flush(10) > 0:
            log.error("training sample: the dead-letter topic does not confirm; waiting")
            if _wait(stop, delay):
                return 0
        self.consumer.commit(asynchronous=False)
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        next_retention = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_retention:
                try:
                    deleted = retention(
                        self.store,
                        self.config.retraining.sample_retention_days,
                        self.config.labels.ttl_seconds,
                    )
                    log.info("training sample retention: %d rows deleted", deleted)
                except Exception:
                    log.exception("training sample retention failed")
                next_retention = time.monotonic() + 3600
            self.step(stop=stop)

    def close(self) -> None:
        self.consumer.close()
        self.dead_letters.flush(10)


def run_training_sample_sink(config: Config, schema: str | None = None) -> int:
    """`driftline sink training-sample`: run until SIGTERM/SIGINT."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with PostgresStore(config.postgres.dsn(), schema=schema) as store:
        store.upgrade()
        sink = TrainingSampleSink(config, store)
        log.info("training sample: group %s", sink.group_id)
        try:
            sink.run(stop)
        finally:
            sink.close()
    return 0
