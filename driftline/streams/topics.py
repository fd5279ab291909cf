"""Creating driftline's topics and checking that predictions and labels are co-partitioned."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftline.config import Config

__all__ = ["TopicError", "check_copartitioned", "ensure_topics"]


class TopicError(RuntimeError):
    """A topic is missing or laid out so that driftline cannot work correctly."""


def _admin(config: Config) -> AdminClient:
    return AdminClient(config.kafka.confluent_settings())


def ensure_topics(config: Config, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent."""
    topics = config.topics
    admin = _admin(config)
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [topics.predictions, topics.labels, topics.alerts, topics.dlq, topics.metrics]
    wanted = [
        NewTopic(
            name, num_partitions=topics.partitions, replication_factor=topics.replication_factor
        )
        for name in names
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                raise TopicError(f"could not create topic {name}: {exc}") from exc
    return created


def check_copartitioned(config: Config, timeout: float = 30.0) -> int:
    """Predictions and labels must have the same partition count (same key, same partitioner),
    or a label would land on a worker that never saw its prediction. Returns the count."""
    metadata = _admin(config).list_topics(timeout=timeout).topics
    counts = {}
    for name in (config.topics.predictions, config.topics.labels):
        if name not in metadata:
            raise TopicError(f"topic {name} does not exist: run `driftline topics create`")
        counts[name] = len(metadata[name].partitions)
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{name} has {n}" for name, n in counts.items())
        raise TopicError(
            f"predictions and labels must be co-partitioned (same partition count): {detail}. "
            "Recreate one of them, or add partitions to the smaller one, before starting the worker."
        )
    return next(iter(counts.values()))
