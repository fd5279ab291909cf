"""What both stages of the pipeline share: the message shape they read, the output topics, the
producer's `send`, the clock, the monitored profiles, the checkpoint cache and the metrics (no
state of either stage: that lives in stage1.py and stage2.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.sinks.prometheus import WorkerMetrics
from driftline.streams.checkpoint import ChunkedWriter
from driftline.streams.events import operational_event
from driftline.streams.profiles import ProfileDirectory

log = logging.getLogger(__name__)

__all__ = ["Checkpoints", "LoadCheckpoints", "Message", "Monitored", "Send", "Shared", "Topics"]

# a value of None is a tombstone (the checkpoint topic's stale chunks)
Send = Callable[[str, bytes | None, bytes | None, Mapping[str, bytes] | None], Awaitable[None]]
LoadCheckpoints = Callable[[], Awaitable[dict[str, Any]]]


class Message(Protocol):
    """The part of a Kafka message the pipeline reads (`consumer.KafkaMessage` fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


@dataclass(frozen=True)
class Topics:
    predictions: str
    dlq: str
    partials: str
    alerts: str
    metrics: str
    checkpoints: str


@dataclass
class Monitored:
    """The model versions with a reference profile; new ones from `directory` without a
    restart (`refresh`)."""

    profiles: dict[tuple[str, str], ReferenceProfile]
    directory: ProfileDirectory | None = None
    models: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.models = sorted({model for model, _ in self.profiles})

    def add(self, profiles: Mapping[tuple[str, str], ReferenceProfile]) -> None:
        """Monitor more model versions from now on (their records so far were not windowed)."""
        self.profiles.update(profiles)
        self.models = sorted({model for model, _ in self.profiles})

    def refresh(self, now: float, force: bool = False) -> None:
        if self.directory is not None:
            self.add(self.directory.new_profiles(now, force=force))


@dataclass
class Checkpoints:
    """The checkpoint topic's latest values, loaded once (and again after a rebalance), and
    the messages that write a new value (chunked above `max_value_bytes`: checkpoint.py)."""

    load: LoadCheckpoints
    cache: dict[str, Any] | None = None
    max_value_bytes: int = 8 * 1024 * 1024
    writer: ChunkedWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = ChunkedWriter(self.max_value_bytes)

    async def get(self, key: str) -> Any:
        if self.cache is None:
            self.cache = await self.load()
            self.writer.loaded(self.cache)
        return self.cache.get(key)

    def messages(self, key: str, value: bytes) -> list[tuple[bytes, bytes | None]]:
        """What to send, in order, to store ``value`` under ``key`` (None: a tombstone)."""
        return [(k.encode(), v) for k, v in self.writer.messages(key, value)]

    def tombstones(self, key: str) -> list[tuple[bytes, bytes | None]]:
        """What to send to delete ``key`` (and its chunks, if it was chunked)."""
        return [(k.encode(), v) for k, v in self.writer.tombstones(key)]

    def under(self, prefix: str) -> dict[str, Any]:
        """The loaded values whose key starts with ``prefix`` (call after `get`)."""
        return {k: v for k, v in (self.cache or {}).items() if k.startswith(prefix)}

    def discard(self, keys: Iterable[str]) -> None:
        """Forget loaded values once restored (their state lives in memory now, and is read
        from the topic again only after `reset`)."""
        for key in keys:
            (self.cache or {}).pop(key, None)

    def reset(self) -> None:
        self.cache = None


@dataclass
class Shared:
    """What both stages use: config, topics, output, clock, profiles, checkpoints, and the
    metrics they count events in (`WorkerMetrics`: the worker's on its registry, a test's own)."""

    config: Config
    topics: Topics
    send: Send
    monitored: Monitored
    checkpoints: Checkpoints
    clock: Callable[[], float] = time.time
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)

    async def alert(self, key: str, event: dict[str, Any]) -> None:
        """One event to the alerts topic (keyed by model), counted by type and severity."""
        await self.send(self.topics.alerts, key.encode(), orjson.dumps(event), None)
        self.metrics.drift_events.labels(event["type"], event["severity"]).inc()

    async def checkpoint_dropped(
        self, stage: str, key: str, saved: Any, error: str | None, model: str = ""
    ) -> None:
        """An `operational` event on the alerts topic, and counted: state was lost and re-fills
        from here."""
        self.metrics.checkpoints_dropped.labels(stage).inc()
        detail = {"stage": stage, "checkpoint_key": key, "error": error, "checkpoint": saved}
        event = operational_event("checkpoint_dropped", key, detail, self.clock(), model)
        await self.alert(model or key, event)
