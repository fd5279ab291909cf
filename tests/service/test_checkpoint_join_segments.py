"""The join index's incremental checkpoints (`segments.JoinSegments`) through the real Kafka:
predictions and labels between checkpoints, the restored join index equals the live one's
newest `max_checkpointed_pending` entries; a crash between segments and head restores the
previous checkpoint, and the next head tombstones what the crash left; a head holding the whole
index (older versions) still restores."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.simulate import simulate
from driftline.streams.checkpoint import checkpoint_topic, ensure_internal_topics
from driftline.streams.labels import PartitionLabels
from tests.service.checkpoint_worker import START, Worker
from tests.service.test_checkpoint_chunks import _latest_raw
from tests.unit.test_pipeline_input import Message

pytestmark = pytest.mark.service


def _view(labels: PartitionLabels, limit: int) -> tuple[bytes, list[int]]:
    """The newest `limit` waiting predictions, in order, model versions by name, and their
    arrival numbers."""
    index = labels.pending
    slots = index.newest_slots(limit)
    entries = index.at(slots)
    fields = (
        entries.ids,
        [index.pairs[c] for c in entries.code.tolist()],
        entries.start,
        entries.prediction,
        entries.score,
        entries.time,
    )
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY), index.seqs(slots).tolist()


class LabelledWorker(Worker):
    label_offset = 0

    def label(self, records: list[dict[str, Any]], rng: np.random.Generator) -> None:
        """Labels for a random half of `records`, in random order."""
        chosen = rng.permutation(len(records))[: len(records) // 2].tolist()
        batch = []
        for i in chosen:
            value = {"prediction_id": records[i]["prediction_id"], "label": 1, "timestamp": START}
            batch.append(
                Message(self.config.topics.labels, 0, self.label_offset, b"k", orjson.dumps(value))
            )
            self.label_offset += 1
        asyncio.run(self.pipeline.on_labels(batch))

    def joins(self) -> PartitionLabels:
        return self.pipeline.labels[0]


def _joins_on_topic(config: Config) -> set[str]:
    return {k for k in _latest_raw(config) if "#join/" in k}


def test_the_join_index_restores_from_its_segments_through_kafka(
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    limit = config.labels.max_checkpointed_pending
    rng = np.random.default_rng(5)
    records, _ = simulate(1_500, seed=6, start_time=START, rate_per_second=10.0)
    live = LabelledWorker(config, fraud_profile)
    for first in range(0, 1_000, 250):
        live.feed(records[first : first + 250], first)
        live.label(records[max(0, first - 250) : first + 250], rng)  # some wait on
        live.checkpoint()
    written = _joins_on_topic(config)
    assert len(written) >= 3  # one segment per checkpoint, those fully joined tombstoned
    waiting = len(live.joins().pending)
    assert 0 < waiting < 1_000

    restored = LabelledWorker(config, fraud_profile)
    restored.feed(records[999:1_000], 999)  # already applied: skipped, state restored
    assert _view(restored.joins(), limit) == _view(live.joins(), limit)

    # a crash between the segments and the head: the previous checkpoint is restored
    before = _view(live.joins(), limit)
    live.feed(records[1_000:1_250], 1_000)
    live.label(records[750:1_250], rng)
    live.drop_heads = True
    live.checkpoint()
    orphans = _joins_on_topic(config) - written
    assert orphans  # the new segment made it, the head did not

    after_crash = LabelledWorker(config, fraud_profile)
    after_crash.feed(records[999:1_000], 999)
    assert _view(after_crash.joins(), limit) == before
    after_crash.feed(records[1_000:1_250], 1_000)  # re-read from the committed offset
    after_crash.label_offset = live.label_offset
    after_crash.checkpoint()
    raw = _latest_raw(config)
    head = orjson.loads(raw["s1/0"])
    listed = {s["key"] for s in head["labels"]["pending_segments"]}
    assert _joins_on_topic(config) == listed and not orphans & set(raw)
    again = LabelledWorker(config, fraud_profile)
    again.feed(records[1_249:1_250], 1_249)
    assert _view(again.joins(), limit) == _view(after_crash.joins(), limit)


def test_a_head_with_the_whole_join_index_still_restores(
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    """The value as the code before join segments wrote it: the index inside the head."""
    config, _ = isolated_config
    ensure_internal_topics(config)
    limit = config.labels.max_checkpointed_pending
    records, _ = simulate(600, seed=7, start_time=START, rate_per_second=10.0)
    live = LabelledWorker(config, fraud_profile)
    live.feed(records, 0)
    live.label(records[:300], np.random.default_rng(8))
    old = {**live.windows().to_dict(), "labels": live.joins().to_dict()}
    assert "pending" in old["labels"]
    live.producer.produce(checkpoint_topic(config), key=b"s1/0", value=orjson.dumps(old))
    assert live.producer.flush(30) == 0

    restored = LabelledWorker(config, fraud_profile)
    restored.feed(records[-1:], 599)
    assert _view(restored.joins(), limit)[0] == _view(live.joins(), limit)[0]
    more, _ = simulate(50, seed=9, start_time=START + 60.0, rate_per_second=10.0)
    restored.feed(more, 600)
    restored.checkpoint()  # from now on in segments
    assert len(_joins_on_topic(config)) == 1
    again = LabelledWorker(config, fraud_profile)
    again.feed(more[-1:], 649)
    assert _view(again.joins(), limit) == _view(restored.joins(), limit)
