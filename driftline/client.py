"""What an inference service imports: log predictions and labels to Kafka.

    from driftline.client import PredictionLogger

    with PredictionLogger.from_config() as logger:
        logger.log(
            prediction_id="txn-123", model="fraud", model_version="7",
            features={"amount": 42.5, "country": "FR"},
            prediction=1, score=0.91, latency_ms=12.0,
        )
    # leaving the block flushes; a record Kafka refused raises DeliveryError there

`from_config()` follows the same configuration as the worker (`driftline.config.load_config`):
`config/driftline.yaml` when it exists in the working directory, overridden by the `DRIFTLINE_*`
environment variables. So the topics (`DRIFTLINE_TOPICS_PREDICTIONS`, `DRIFTLINE_TOPICS_LABELS`)
and the Kafka connection and security settings (`DRIFTLINE_KAFKA_*`: bootstrap servers, SASL,
TLS) are the worker's, and a mistake there (an unknown `DRIFTLINE_*` variable) fails at once.
The constructor reads no file and no environment: `PredictionLogger("broker:9092", topic=...)`
uses what it is given and the defaults for the rest (`config=` hands it a loaded config), so an
inference service's own variables never break it.

Messages are keyed by `prediction_id` and partitioned with murmur2, like the Java client and
Faust, so a label lands on the same partition as its prediction. The producer is idempotent
(no duplicates from its own retries) and batches on its own (`linger.ms`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
from confluent_kafka import KafkaError, Message, Producer

from driftline.config import DEFAULT_CONFIG_PATH, Config, load_config

__all__ = ["DeliveryError", "LabelLogger", "PredictionLogger"]

Scalar = float | int | str | None


class DeliveryError(RuntimeError):
    """Kafka did not accept some records; `failures` holds (key, reason) pairs."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        sample = "; ".join(f"{key}: {reason}" if key else reason for key, reason in failures[:3])
        super().__init__(f"{len(failures)} record(s) were not delivered ({sample})")


def default_config(path: str | Path | None = None) -> Config:
    """The worker's config: ``path``, else `config/driftline.yaml` if it exists here, with the
    `DRIFTLINE_*` environment variables applied."""
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return load_config(path)


class _Logger:
    default_topic: str

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        topic: str | None = None,
        *,
        settings: Mapping[str, str | int | float | bool] | None = None,
        config: Config | None = None,
    ) -> None:
        """Connection, security settings and topic come from ``config`` (default: the built-in
        defaults, no file and no environment read; use `from_config()` for the worker's);
        ``bootstrap_servers`` and ``topic`` override them, and ``settings`` (librdkafka
        settings: tuning, security) override the producer's."""
        config = config if config is not None else Config()
        self.topic = topic or self._configured_topic(config)
        conf: dict[str, Any] = {
            **config.kafka.confluent_settings(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",  # the Java client's (and Faust's) partitioner
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
        if bootstrap_servers:
            conf["bootstrap.servers"] = bootstrap_servers
        # The last error, to say why records stayed queued; kept apart from the logger, which
        # the producer would otherwise hold (a cycle only the garbage collector breaks).
        last_error: deque[str] = deque(maxlen=1)
        conf["error_cb"] = lambda err: last_error.append(err.str())
        conf.update(settings or {})
        # What the producer was given, for inspection and logs (the password masked).
        self.settings = {k: ("***" if "password" in k else v) for k, v in conf.items()}
        self._failures: list[tuple[str, str]] = []
        self._last_error = last_error
        self._producer = Producer(conf)

    @classmethod
    def from_config(
        cls,
        config: Config | None = None,
        *,
        path: str | Path | None = None,
        settings: Mapping[str, str | int | float | bool] | None = None,
    ) -> Self:
        """A logger with the worker's topics and Kafka settings: from ``config``, or loaded
        from ``path`` (default `config/driftline.yaml` if present) and the environment."""
        return cls(settings=settings, config=config if config is not None else default_config(path))

    def _configured_topic(self, config: Config) -> str:
        raise NotImplementedError

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            key = msg.key()
            reason = f"{err.str()} (topic {msg.topic()})"
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                reason = self._missing_topic_reason()
            self._failures.append((key.decode() if key else "", reason))

    def _missing_topic_reason(self) -> str:
        return (
            f"topic {self.topic} does not exist: create it (`driftline topics create`) "
            "or set the topic the worker reads (topics.*, DRIFTLINE_TOPICS_*)"
        )

    def _topic_missing(self) -> bool:
        """Whether the broker answers and does not know our topic (records that timed out
        waiting for a topic nobody created). All topics are listed: asking for ours by name
        could auto-create it."""
        try:
            return self.topic not in self._producer.list_topics(timeout=5).topics
        except Exception:  # the broker does not answer: the timeout says enough
            return False

    def _send(self, key: str, record: Mapping[str, Any]) -> None:
        value = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every record is acknowledged; raise DeliveryError if some were refused."""
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        if any("timed out" in reason for _, reason in failures) and self._topic_missing():
            failures = [(key, self._missing_topic_reason()) for key, _ in failures]
        if remaining:
            servers = self.settings.get("bootstrap.servers")
            why = f" (last error: {self._last_error[-1]})" if self._last_error else ""
            failures.append(
                (
                    "",
                    f"{remaining} record(s) still queued after {timeout:g} s: Kafka at {servers} "
                    f"did not acknowledge them{why}; check that the broker is running and "
                    "kafka.bootstrap_servers (DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS)",
                )
            )
        if failures:
            raise DeliveryError(failures)

    def close(self, timeout: float = 30.0) -> None:
        """Flush (as `flush`), then drop what is still queued: the producer stops retrying.
        Each queued record's delivery callback holds this logger, so a record for a broker that
        is down kept the logger and its producer alive, reconnecting and logging, for as long as
        the process ran."""
        try:
            self.flush(timeout)
        finally:
            self._producer.purge()
            self._producer.poll(0)  # serves the purged records' callbacks: they let go

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PredictionLogger(_Logger):
    """Publish prediction records to the predictions topic."""

    default_topic = "driftline.predictions"

    def _configured_topic(self, config: Config) -> str:
        return config.topics.predictions

    def log(
        self,
        *,
        prediction_id: str,
        model: str,
        model_version: str,
        features: Mapping[str, Scalar],
        prediction: Scalar,
        score: float | None = None,
        probabilities: Mapping[str, float] | None = None,
        attributions: Mapping[str, float] | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "prediction_id": prediction_id,
            "model": model,
            "model_version": model_version,
            "timestamp": time.time() if timestamp is None else timestamp,
            "features": features,
            "prediction": prediction,
        }
        optional = {
            "score": score,
            "probabilities": probabilities,
            "attributions": attributions,
            "latency_ms": latency_ms,
            "error": error,
        }
        record.update({k: v for k, v in optional.items() if v is not None})
        self._send(prediction_id, record)

    def log_batch(self, records: list[dict[str, Any]], key: str) -> None:
        """Publish many prediction records as one message (`{"records": [...]}`), as an
        inference server logs a batched request. Far cheaper for the worker per prediction.

        Every record needs the fields of `log` (see config/schemas/prediction.v1.schema.json).
        The message is keyed by `key`: log the labels of these predictions with the same key
        (`LabelLogger.log(..., key=key)`) so that they land on the same partition.
        """
        self._send(key, {"records": records})


class LabelLogger(_Logger):
    """Publish ground-truth labels, keyed by the prediction they belong to."""

    default_topic = "driftline.labels"

    def _configured_topic(self, config: Config) -> str:
        return config.topics.labels

    def log(
        self,
        *,
        prediction_id: str,
        label: Scalar,
        timestamp: float | None = None,
        key: str | None = None,
    ) -> None:
        """Publish one label. `key` defaults to `prediction_id`; pass the batch key when the
        prediction was logged with `PredictionLogger.log_batch`."""
        record = {
            "prediction_id": prediction_id,
            "label": label,
            "timestamp": time.time() if timestamp is None else timestamp,
        }
        self._send(key or prediction_id, record)
