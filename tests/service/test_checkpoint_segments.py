"""Incremental stage-1 checkpoints (reservoir segments) through the real Kafka: after several
checkpoints the restored windows equal the live ones bit for bit; a crash between the segments
and the head restores the previous checkpoint; the segments it left behind are tombstoned by the
next head; a checkpoint written whole (before segments existed) still restores."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.simulate import simulate
from driftline.streams.checkpoint import checkpoint_topic, ensure_internal_topics, read_checkpoints
from driftline.streams.consumer import producer_settings
from driftline.streams.pipeline import Pipeline, Topics
from driftline.streams.windows import PartitionWindows
from tests.service.test_checkpoint_chunks import _latest_raw
from tests.unit.test_pipeline_input import Message

pytestmark = pytest.mark.service

START = 1_767_225_600.0
NOW = START + 3600.0


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    records, labels = simulate(3_000, seed=99)
    return ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    )


class Worker:
    """A pipeline whose checkpoints go to the real checkpoint topic; ``drop_heads`` simulates a
    crash after a checkpoint's segments were sent and before its head."""

    def __init__(self, config: Config, profile: ReferenceProfile) -> None:
        self.config = config
        self.producer = Producer(producer_settings(config))
        self.drop_heads = False
        topic = checkpoint_topic(config)

        async def send(
            to: str, key: bytes | None, value: bytes | None, headers: Any = None
        ) -> None:
            if to != topic:
                return
            # the crash: the head and what follows it (tombstones) are never sent
            segment = b"#seg/" in (key or b"") or b"#join/" in (key or b"")
            if self.drop_heads and (value is None or not segment):
                return
            self.producer.produce(to, key=key, value=value)

        async def load() -> dict[str, Any]:
            assert self.producer.flush(30) == 0
            return read_checkpoints(config)

        self.pipeline = Pipeline(
            config,
            profiles={("fraud", "1"): profile},
            thresholds=thresholds_from_dict({}),
            topics=Topics(config.topics.predictions, "dlq", "partials", "alerts", "m", topic),
            n_sources=1,
            send=send,
            load_checkpoints=load,
            clock=lambda: NOW,
        )

    def feed(self, records: list[dict[str, Any]], first: int) -> None:
        batch = [
            Message(self.config.topics.predictions, 0, first + i, b"k", orjson.dumps(r))
            for i, r in enumerate(records)
        ]
        asyncio.run(self.pipeline.on_predictions(batch))

    def checkpoint(self) -> None:
        asyncio.run(self.pipeline.checkpoint())
        assert self.producer.flush(30) == 0

    def windows(self) -> PartitionWindows:
        return self.pipeline.stage1[0]


def _same(a: PartitionWindows, b: PartitionWindows) -> bool:
    a.flush(), b.flush()

    def exact(s: WindowSketch) -> bytes:
        return orjson.dumps(s.to_dict()) + s.reservoir_rows.tobytes() + s.reservoir_keys.tobytes()

    return (
        a.last_offset == b.last_offset
        and list(a.open) == list(b.open)
        and all(exact(a.open[k]) == exact(b.open[k]) for k in a.open)
    )


def test_incremental_checkpoints_restore_bit_for_bit_through_kafka(
    isolated_config: tuple[Config, dict[str, str]], profile: ReferenceProfile
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    records, _ = simulate(1_500, seed=3, start_time=START, rate_per_second=10.0)
    live = Worker(config, profile)
    for first in range(0, 1_250, 250):  # 125 s: windows of 300 s, reservoirs filling
        live.feed(records[first : first + 250], first)
        live.checkpoint()
    segments = [k for k in _latest_raw(config) if "#seg/" in k]
    assert len(segments) >= 5  # one per checkpoint of the open window, and its bin edges

    restored = Worker(config, profile)
    restored.feed(records[1_249:1_250], 1_249)  # already applied: skipped, state restored
    assert _same(restored.windows(), live.windows())

    # a crash between the segments and the head: the previous checkpoint is restored
    before = PartitionWindows.from_dict(live.windows().to_dict())
    live.feed(records[1_250:1_500], 1_250)
    live.drop_heads = True
    live.checkpoint()
    on_topic = {k for k in _latest_raw(config) if "#seg/" in k}
    assert len(on_topic) > len(segments)  # the new segments made it, the head did not

    after_crash = Worker(config, profile)
    after_crash.feed(records[1_249:1_250], 1_249)
    assert _same(after_crash.windows(), before)
    # re-read from the committed offset, then its next checkpoint tombstones the orphans
    after_crash.feed(records[1_250:1_500], 1_250)
    assert _same(after_crash.windows(), live.windows())
    after_crash.checkpoint()
    raw = _latest_raw(config)
    head = orjson.loads(raw["s1/0"])
    listed = {k for w in head["open"] for k in [*w["reservoir_segments"], w["numeric_edges"]]}
    assert {k for k in raw if "#seg/" in k} == listed
    orphans = on_topic - set(segments)  # written by the crashed checkpoint, in no head
    assert orphans and not orphans & set(raw)


def test_a_checkpoint_written_whole_still_restores(
    isolated_config: tuple[Config, dict[str, str]], profile: ReferenceProfile
) -> None:
    """The value as the code before segments wrote it: every reservoir inside the head."""
    config, _ = isolated_config
    ensure_internal_topics(config)
    records, _ = simulate(600, seed=4, start_time=START, rate_per_second=10.0)
    live = Worker(config, profile)
    live.feed(records, 0)
    state = live.windows()
    old = {**state.to_dict(), "labels": live.pipeline.labels[0].to_dict()}
    live.producer.produce(checkpoint_topic(config), key=b"s1/0", value=orjson.dumps(old))
    assert live.producer.flush(30) == 0

    restored = Worker(config, profile)
    restored.feed(records[-1:], 599)
    assert _same(restored.windows(), state)
    restored.feed(simulate(50, seed=5, start_time=START + 60.0)[0], 600)
    restored.checkpoint()  # from now on in segments
    again = Worker(config, profile)
    again.feed(records[-1:], 649)
    assert _same(again.windows(), restored.windows())
