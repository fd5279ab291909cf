"""Incremental stage-1 checkpoints (reservoir segments) through the real Kafka: after several
checkpoints the restored windows equal the live ones bit for bit; a crash between the segments
and the head restores the previous checkpoint; the segments it left behind are tombstoned by the
next head; a checkpoint written whole (before segments existed) still restores."""

from __future__ import annotations

import orjson
import pytest

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.simulate import simulate
from driftline.streams.checkpoint import checkpoint_topic, ensure_internal_topics
from driftline.streams.windows import PartitionWindows
from tests.service.checkpoint_worker import START, Worker
from tests.service.test_checkpoint_chunks import _latest_raw

pytestmark = pytest.mark.service


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
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    records, _ = simulate(1_500, seed=3, start_time=START, rate_per_second=10.0)
    live = Worker(config, fraud_profile)
    for first in range(0, 1_250, 250):  # 125 s: windows of 300 s, reservoirs filling
        live.feed(records[first : first + 250], first)
        live.checkpoint()
    segments = [k for k in _latest_raw(config) if "#seg/" in k]
    assert len(segments) >= 5  # one per checkpoint of the open window, and its bin edges

    restored = Worker(config, fraud_profile)
    restored.feed(records[1_249:1_250], 1_249)  # already applied: skipped, state restored
    assert _same(restored.windows(), live.windows())

    # a crash between the segments and the head: the previous checkpoint is restored
    before = PartitionWindows.from_dict(live.windows().to_dict())
    live.feed(records[1_250:1_500], 1_250)
    live.drop_heads = True
    live.checkpoint()
    on_topic = {k for k in _latest_raw(config) if "#seg/" in k}
    assert len(on_topic) > len(segments)  # the new segments made it, the head did not

    after_crash = Worker(config, fraud_profile)
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
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    """The value as the code before segments wrote it: every reservoir inside the head."""
    config, _ = isolated_config
    ensure_internal_topics(config)
    records, _ = simulate(600, seed=4, start_time=START, rate_per_second=10.0)
    live = Worker(config, fraud_profile)
    live.feed(records, 0)
    state = live.windows()
    old = {**state.to_dict(), "labels": live.pipeline.labels[0].to_dict()}
    live.producer.produce(checkpoint_topic(config), key=b"s1/0", value=orjson.dumps(old))
    assert live.producer.flush(30) == 0

    restored = Worker(config, fraud_profile)
    restored.feed(records[-1:], 599)
    assert _same(restored.windows(), state)
    restored.feed(simulate(50, seed=5, start_time=START + 60.0)[0], 600)
    restored.checkpoint()  # from now on in segments
    again = Worker(config, fraud_profile)
    again.feed(records[-1:], 649)
    assert _same(again.windows(), restored.windows())
