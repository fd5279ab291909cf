"""A `Pipeline` whose checkpoints go to the real checkpoint topic, for the checkpoint service
tests: what it sends to the partials and metrics topics is kept, and ``drop_heads`` simulates a
crash after a checkpoint's segments were sent and before its head."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from confluent_kafka import Producer

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.streams.checkpoint import checkpoint_topic, read_checkpoints
from driftline.streams.consumer import producer_settings
from driftline.streams.pipeline import Pipeline, Topics
from driftline.streams.windows import PartitionWindows
from tests.unit.test_pipeline_input import Message

START = 1_767_225_600.0
NOW = START + 3600.0


class Worker:
    def __init__(self, config: Config, profile: ReferenceProfile, n_sources: int = 1) -> None:
        self.config = config
        self.producer = Producer(producer_settings(config))
        self.drop_heads = False
        self.sent: dict[str, list[bytes]] = {"partials": [], "m": []}
        topic = checkpoint_topic(config)

        async def send(
            to: str, key: bytes | None, value: bytes | None, headers: Any = None
        ) -> None:
            if to == topic:
                # the crash: the head and what follows it (tombstones) are never sent
                segment = b"#seg/" in (key or b"") or b"#join/" in (key or b"")
                if not (self.drop_heads and (value is None or not segment)):
                    self.producer.produce(to, key=key, value=value)
            elif to in self.sent and value is not None:
                self.sent[to].append(value)

        async def load() -> dict[str, Any]:
            assert self.producer.flush(30) == 0
            return read_checkpoints(config)

        self.pipeline = Pipeline(
            config,
            profiles={("fraud", "1"): profile},
            thresholds=thresholds_from_dict({}),
            topics=Topics(config.topics.predictions, "dlq", "partials", "alerts", "m", topic),
            n_sources=n_sources,
            send=send,
            load_checkpoints=load,
            clock=lambda: NOW,
        )

    def feed(self, records: list[dict[str, Any]], first: int) -> None:
        """`records` as single-record messages of source partition 0 from offset `first`."""
        batch = [
            Message(self.config.topics.predictions, 0, first + i, b"k", orjson.dumps(r))
            for i, r in enumerate(records)
        ]
        asyncio.run(self.pipeline.on_predictions(batch))

    def partials(self, values: list[bytes]) -> None:
        batch = [Message("partials", 0, i, b"fraud", v) for i, v in enumerate(values)]
        asyncio.run(self.pipeline.on_partials(batch))

    def checkpoint(self) -> None:
        asyncio.run(self.pipeline.checkpoint())
        assert self.producer.flush(30) == 0

    def windows(self) -> PartitionWindows:
        return self.pipeline.stage1[0]
