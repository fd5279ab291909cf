"""Stage-2 checkpoints through the real Kafka: the pending partials are written as the
partials messages that brought them (bytes unchanged), and a model restored from them closes
its windows exactly as the live one does."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.simulate import simulate
from driftline.streams.checkpoint import checkpoint_topic, ensure_internal_topics, read_checkpoints
from driftline.streams.consumer import producer_settings
from driftline.streams.payloads import WatermarkMessage
from driftline.streams.pipeline import Pipeline, Topics
from tests.service.test_checkpoint_chunks import _latest_raw
from tests.service.test_checkpoint_segments import NOW, START
from tests.unit.test_pipeline_input import Message

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def fraud_profile() -> ReferenceProfile:
    records, labels = simulate(3_000, seed=99)
    return ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    )


class Worker:
    """A pipeline with two source partitions whose checkpoints go to the real topic; what it
    sends to the partials and metrics topics is kept."""

    def __init__(self, config: Config, profile: ReferenceProfile) -> None:
        self.producer = Producer(producer_settings(config))
        self.sent: dict[str, list[bytes]] = {"partials": [], "m": []}
        self.config = config
        topic = checkpoint_topic(config)

        async def send(
            to: str, key: bytes | None, value: bytes | None, headers: Any = None
        ) -> None:
            if to == topic:
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
            n_sources=2,
            send=send,
            load_checkpoints=load,
            clock=lambda: NOW,
        )

    def partials(self, values: list[bytes]) -> None:
        batch = [Message("partials", 0, i, b"fraud", v) for i, v in enumerate(values)]
        asyncio.run(self.pipeline.on_partials(batch))

    def checkpoint(self) -> None:
        asyncio.run(self.pipeline.checkpoint())
        assert self.producer.flush(30) == 0


def test_pending_partials_are_checkpointed_as_received_and_restore_the_same_windows(
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    live = Worker(config, fraud_profile)
    # stage 1 of source 0: 700 s of records close two 300-s windows, handed on as partials
    records, _ = simulate(1_400, seed=4, start_time=START, rate_per_second=2.0)
    batch = [
        Message(config.topics.predictions, 0, i, b"k", orjson.dumps(r))
        for i, r in enumerate(records)
    ]
    asyncio.run(live.pipeline.on_predictions(batch))
    partials = [v for v in live.sent["partials"] if v.startswith(b'{"kind":"partial"')]
    assert len(partials) == 2
    live.partials(partials)  # source 1 has not reported: both windows stay pending
    assert len(live.pipeline.stage2["fraud"].pending) == 2
    live.checkpoint()
    raw = _latest_raw(config)["s2/fraud"]
    assert all(p in raw for p in partials)  # written as they came, not serialised again

    # source 1 goes idle: both windows close, on the live model and on the restored one
    idle = WatermarkMessage(1, None, True, None).encode()
    restored = Worker(config, fraud_profile)
    restored.partials([idle])
    live.partials([idle])
    windows = [orjson.loads(v) for v in live.sent["m"] if b'"type":"window"' in v]
    assert [w["evaluation"]["window_start"] for w in windows] == [START, START + 300.0]
    assert restored.sent["m"] == live.sent["m"]
