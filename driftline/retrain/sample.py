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

Bad input never stops the sink. Messages are decoded, with their Kafka headers, by the input
format of their topic, as the worker decodes them (`formats.predictions` / `formats.labels`:
driftline JSON with batches, CloudEvents binary or structured mode, OIP request/response pairs
joined by id; `driftline.streams.formats`, docs/FORMATS.md); a malformed message or record is
skipped, counted (`driftline_training_sample_rejected_total{topic,kind}`) and sent to the
dead-letter topic with the reason in its headers (`driftline.consumer: training-sample`; the
worker dead-letters the same predictions and labels from its own group). A write PostgreSQL refuses
for the data itself (psycopg DataError, IntegrityError, a value Python cannot encode) is not
retried: the batch is halved until the refused records are found, those are dead-lettered
(`store_rejected`) and the rest is written. Only errors of the connection or the server
(PostgreSQL down, a timeout) are retried, with backoff, and nothing is committed meanwhile.
The consuming, buffering, backoff, dead letters and commit-after-write are the sink base's
(:class:`driftline.sinks.base.BatchingSink`); this module decodes, samples and writes.

The tables and the SQL (sampling, write, retention, the stratified read) are in
:mod:`driftline.retrain.sample_table`; their public names are importable from here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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
from driftline.sinks.base import BatchingSink, Records, SinkSettings
from driftline.sinks.prometheus import TRAINING_SAMPLE_REJECTED
from driftline.sinks.store import PostgresStore
from driftline.streams.formats import Headers, RejectedRecord, label_decoder, prediction_decoder

__all__ = [
    "SampleItem",
    "TrainingSampleSink",
    "hash_unit",
    "normalise_class",
    "read_stratified",
    "run_training_sample_sink",
    "sampled",
    "write_batch",
]

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 3600.0  # seconds between retention runs


@dataclass(frozen=True, slots=True)
class SampleItem:
    """A sampled prediction, or a label of a prediction that may be sampled."""

    record: dict[str, Any]
    is_prediction: bool


def _positions(n_valid: int, rejected: Sequence[RejectedRecord]) -> list[int | None]:
    """Where the valid records of a message were: their indexes in a batch, None for a message
    of one record.

    >>> _positions(2, [])
    [0, 1]
    >>> _positions(2, [RejectedRecord("schema_violation", "x", 1)])
    [0, 2]
    >>> _positions(1, [])
    [None]
    >>> _positions(2, [RejectedRecord("unjoined", "x", 7)])  # an index beyond the message
    [0, 1]
    """
    skipped = {r.index for r in rejected if r.index is not None}
    if n_valid + len(skipped) <= 1:
        return [None] * n_valid
    # the first n_valid positions not rejected (an index beyond the message cannot misalign)
    positions: list[int | None] = []
    index = 0
    while len(positions) < n_valid:
        if index not in skipped:
            positions.append(index)
        index += 1
    return positions


class TrainingSampleSink(BatchingSink[SampleItem]):
    """`driftline sink training-sample`: the predictions and labels topics into the sample."""

    name: ClassVar[str] = "training-sample"
    refused_kind: ClassVar[str] = "store_rejected"

    def __init__(
        self,
        config: Config,
        store: PostgresStore,
        group: str | None = None,
        settings: SinkSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config,
            [config.topics.predictions, config.topics.labels],
            settings or SinkSettings(batch_messages=5000),
            group_id=group or f"{config.worker.app_id}-training-sample",
            **kwargs,
        )
        self.store = store
        self.dead_letter_consumer = "training-sample"
        rates = config.retraining
        # A label is kept if its prediction may be sampled at any model's rate.
        self.max_label_rate = max([rates.sample_rate, *rates.sample_rates.values()])
        # The worker's formats (not its hot-path variant), built once: a joining format (oip)
        # keeps the half of a pair that waits for the other in its decoder.
        self.predictions_in = prediction_decoder(config)
        self.labels_in = label_decoder(config)
        self.written = {"predictions": 0, "labels": 0, "pending": 0, "trimmed": 0}

    def decode_records(
        self, topic: str, value: bytes | None, headers: Headers = None
    ) -> Records[SampleItem]:
        """The message's sampled predictions (or labels that may be), and its bad records."""
        is_label = topic == self.config.topics.labels
        valid, rejected = (self.labels_in if is_label else self.predictions_in).decode(
            value, headers
        )
        decoded: Records[SampleItem] = Records(rejected=list(rejected))
        rates = self.config.retraining
        for record, index in zip(valid, _positions(len(valid), rejected), strict=True):
            rate = self.max_label_rate if is_label else rates.sample_rate_for(record["model"])
            if sampled(str(record["prediction_id"]), rate):
                decoded.items.append((index, SampleItem(record, not is_label)))
        return decoded

    def write(self, items: Sequence[SampleItem]) -> Mapping[str, int]:
        counts = write_batch(
            self.store,
            [i.record for i in items if i.is_prediction],
            [i.record for i in items if not i.is_prediction],
            max_rows_per_version=self.config.retraining.sample_max_rows_per_version,
        )
        for key, value in counts.items():
            self.written[key] += value
        # rows per table: predictions inserted and labels filled in, labels parked
        return {
            "training_samples": counts["predictions"] + counts["labels"],
            "training_pending_labels": counts["pending"],
        }

    def is_transient(self, exc: Exception) -> bool:
        # Everything but a refusal of the data itself is retried (nothing committed meanwhile).
        return not refused_data(exc)

    def count_rejected(self, topic: str, kind: str) -> None:
        super().count_rejected(topic, kind)
        TRAINING_SAMPLE_REJECTED.labels(topic, kind).inc()

    def housekeeping(self) -> float:
        """Retention: rows older than ``sample_retention_days``, parked labels past their TTL."""
        deleted = retention(
            self.store, self.config.retraining.sample_retention_days, self.config.labels.ttl_seconds
        )
        log.info("training sample retention: %d rows deleted", deleted)
        return RETENTION_INTERVAL


def run_training_sample_sink(config: Config, schema: str | None = None) -> int:
    """`driftline sink training-sample`: run until SIGTERM/SIGINT."""
    with PostgresStore(config.postgres.dsn(), schema=schema) as store:
        store.upgrade()
        return TrainingSampleSink(config, store).run_until_signalled()
