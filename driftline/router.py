"""Champion/challenger routing for inference services, following the model-control topic.

    from driftline.router import ModelRouter

    with ModelRouter("127.0.0.1:9092", default_versions={"fraud": "7"}) as router:
        version = router.route("fraud", prediction_id)   # "7", or the challenger's version
        ... predict with that version, log the prediction with model_version=version ...

`driftline retrain serve` publishes a routing decision per model on the compacted
``driftline.model-control`` topic (key: the model): the champion, the challenger (or none) and
the challenger's traffic share. The router reads the topic from the beginning in a background
thread and keeps the newest decision per model; :func:`choose_version` is pure and
deterministic: a hash of the prediction id (salted with the test id) below the share goes to
the challenger, so a request (and its retries) always gets the same arm, on every process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

__all__ = ["ModelRouter", "RoutingDecision", "choose_version"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingDecision:
    """The value of a model-control record."""

    model: str
    champion: str
    challenger: str | None = None
    challenger_share: float = 0.0
    test_id: str | None = None
    updated_at: float = 0.0

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> RoutingDecision:
        share = float(value.get("challenger_share") or 0.0)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"challenger_share {share}: expected a number in [0, 1]")
        challenger = value.get("challenger")
        return cls(
            model=str(value["model"]),
            champion=str(value["champion"]),
            challenger=None if challenger is None else str(challenger),
            challenger_share=share,
            test_id=value.get("test_id"),
            updated_at=float(value.get("updated_at") or 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "champion": self.champion,
            "challenger": self.challenger,
            "challenger_share": self.challenger_share,
            "test_id": self.test_id,
            "updated_at": self.updated_at,
        }


def choose_version(decision: RoutingDecision, prediction_id: str) -> str:
    """The version that serves ``prediction_id``: the challenger when
    ``hash(test_id, prediction_id) < challenger_share``, else the champion.

    >>> d = RoutingDecision("fraud", "1", "2", 0.2, test_id="t")
    >>> share = sum(choose_version(d, f"p{i}") == "2" for i in range(10_000)) / 10_000
    >>> 0.18 < share < 0.22, choose_version(d, "p7") == choose_version(d, "p7")
    (True, True)
    >>> choose_version(RoutingDecision("fraud", "1"), "p7")
    '1'
    """
    if decision.challenger is None or decision.challenger_share <= 0:
        return decision.champion
    digest = hashlib.sha256(f"{decision.test_id or ''}\x1f{prediction_id}".encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 < decision.challenger_share:
        return decision.challenger
    return decision.champion


class ModelRouter:
    """Follows the model-control topic; :meth:`route` picks a version per prediction."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "driftline.model-control",
        *,
        default_versions: Mapping[str, str] | None = None,
        settings: Mapping[str, str | int | float | bool] | None = None,
        on_change: Callable[[RoutingDecision], None] | None = None,
    ) -> None:
        """``default_versions``: the version of a model that has no decision on the topic
        yet; ``settings``: librdkafka settings (security); ``on_change`` is called in the
        router's thread with each new decision."""
        self.topic = topic
        self._defaults = dict(default_versions or {})
        self._decisions: dict[str, RoutingDecision] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._on_change = on_change
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                **dict(settings or {}),
                "group.id": f"driftline-router-{time.time_ns()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        if metadata.topics[topic].error is not None:
            raise RuntimeError(f"model-control topic {topic}: {metadata.topics[topic].error}")
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
        )
        self._thread = threading.Thread(target=self._follow, name="driftline-router", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, timeout=0.2):
                value = message.value()
                if message.error() is not None or value is None:
                    continue  # a tombstone or a transient error: keep the last decision
                try:
                    decision = RoutingDecision.from_dict(orjson.loads(value))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # not ours: never let a bad record change routing
                with self._changed:
                    self._decisions[decision.model] = decision
                    self._changed.notify_all()
                if self._on_change is not None:
                    try:
                        self._on_change(decision)
                    except Exception:  # the caller's bug must not stop routing updates
                        log.exception("router on_change callback failed")

    def decision(self, model: str) -> RoutingDecision | None:
        with self._lock:
            return self._decisions.get(model)

    def route(self, model: str, prediction_id: str) -> str:
        """The model version that should serve this prediction."""
        decision = self.decision(model)
        if decision is None:
            if model in self._defaults:
                return self._defaults[model]
            raise KeyError(f"no routing decision for model {model!r} and no default version")
        return choose_version(decision, prediction_id)

    def wait_for(
        self, model: str, predicate: Callable[[RoutingDecision], bool], timeout: float
    ) -> RoutingDecision | None:
        """Block until the model's decision satisfies ``predicate`` (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                decision = self._decisions.get(model)
                if decision is not None and predicate(decision):
                    return decision
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
