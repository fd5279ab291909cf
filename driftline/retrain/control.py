"""The model-control side of retraining: the compacted control topic, routing decisions
published with the broker's acknowledgement, and the registry's view of a model's routing.
Used through :class:`~driftline.retrain.service.RetrainService` (``publish_routing``,
``current_routing``), also by the A/B evaluator (:mod:`driftline.retrain.evaluator`)."""

from __future__ import annotations

import time

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftline.config import Config
from driftline.retrain.registry import Registry
from driftline.router import RoutingDecision
from driftline.sinks import prometheus as metrics

__all__ = [
    "RoutingNotConfirmedError",
    "ensure_control_topic",
    "publish_routing",
    "routing_of",
]


class RoutingNotConfirmedError(RuntimeError):
    """The broker did not acknowledge a routing change (the registry already records it:
    `RetrainService.republish_routing` publishes it again)."""


def ensure_control_topic(config: Config, timeout: float = 30.0) -> bool:
    """Create the compacted model-control topic if it is missing; True if it was created."""
    admin = AdminClient(config.kafka.confluent_settings())
    name = config.retraining.control_topic
    if name in admin.list_topics(timeout=timeout).topics:
        return False
    topic = NewTopic(
        name,
        num_partitions=1,
        replication_factor=config.topics.replication_factor,
        config={"cleanup.policy": "compact"},
    )
    for future in admin.create_topics([topic], operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            return False
    return True


def publish_routing(
    producer: Producer, topic: str, decisions: tuple[RoutingDecision, ...], timeout: float
) -> None:
    """Publish ``decisions`` on the control ``topic`` and wait for the broker's acknowledgement
    of every one; RoutingNotConfirmedError otherwise. Sets each model's traffic-share gauge."""
    failures: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(str(err.str()))

    for decision in decisions:
        while True:
            try:
                producer.produce(
                    topic,
                    key=decision.model,
                    value=orjson.dumps(decision.to_dict()),
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(timeout)
    if remaining or failures:
        models = ", ".join(sorted({d.model for d in decisions}))
        why = failures[0] if failures else f"no acknowledgement within {timeout:g} s"
        raise RoutingNotConfirmedError(
            f"the broker did not confirm the routing of {models} on {topic}: {why}"
        )
    for decision in decisions:
        metrics.AB_TRAFFIC_SHARE.labels(decision.model).set(
            decision.challenger_share if decision.challenger else 0.0
        )


def routing_of(registry: Registry, model: str) -> RoutingDecision | None:
    """The routing the registry says the model has: the running A/B test's split, else all
    traffic to the champion (None without a champion)."""
    for test in registry.running_tests():
        if test["model"] == model:
            return RoutingDecision(
                model,
                str(test["champion_version"]),
                str(test["challenger_version"]),
                float(test["traffic_share"]),
                str(test["test_id"]),
                time.time(),
            )
    champion = registry.with_status(model, "champion")
    if champion is None:
        return None
    return RoutingDecision(model, str(champion["model_version"]), updated_at=time.time())
