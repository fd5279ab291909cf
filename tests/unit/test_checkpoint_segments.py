"""Reservoir segments (streams/segments.py): the union of a window's segments, reduced to its
k smallest keys, is the reservoir bit for bit, whatever the batches, checkpoints, consolidations
and closes; a crash between segments and head restores the previous checkpoint; old checkpoints
(reservoir inside the head) still restore."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.config import Config
from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.streams import segments as segments_module
from driftline.streams.segments import (
    EDGES_FIELD,
    SEGMENTS_FIELD,
    ReservoirSegments,
    SegmentPlan,
    restore_segments,
)
from tests.unit.test_pipeline_input import Broker, config, good, messages, pipeline, profile

__all__ = ["config", "profile"]  # fixtures


def _profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    return ReferenceProfile.from_columns(
        {"x": rng.normal(size=500), "y": rng.normal(size=500)},
        model="m",
        model_version="1",
        bins=5,
    )


PROFILE = _profile()


def _batch(rng: np.random.Generator, n: int, first_key: int, keyed: bool) -> RecordBatch:
    x = rng.normal(size=n)
    x[rng.random(n) < 0.2] = np.nan  # missing values travel as NaN
    return RecordBatch(
        numeric={"x": x, "y": rng.standard_cauchy(size=n)},
        categorical={},
        event_time=np.zeros(n),
        prediction=np.array(["a", 1, None, True], dtype=object)[rng.integers(0, 4, n)],
        record_keys=np.arange(first_key, first_key + n, dtype=np.uint64) if keyed else None,
    )


def _apply(topic: dict[str, Any], plan: SegmentPlan, head: dict[str, Any]) -> None:
    """What the checkpoint topic holds after a plan's messages, in their order."""
    topic.update({k: orjson.loads(v) for k, v in plan.segments})
    topic["head"] = head
    for key in plan.tombstones:
        topic.pop(key, None)


def _same(a: WindowSketch, b: WindowSketch) -> bool:
    return (
        a.reservoir_keys.tobytes() == b.reservoir_keys.tobytes()
        and a.reservoir_rows.tobytes() == b.reservoir_rows.tobytes()
        and a.reservoir_predictions.tolist() == b.reservoir_predictions.tolist()
        and orjson.dumps(a.to_dict()) == orjson.dumps(b.to_dict())
    )


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=25),
    k=st.integers(1, 12),
    keyed=st.booleans(),
    close_at=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_restored_reservoir_equals_the_live_one_after_every_checkpoint(
    sizes: list[int], k: int, keyed: bool, close_at: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    log = ReservoirSegments("s1/0")
    topic: dict[str, Any] = {}
    windows: dict[tuple[str, str, float], WindowSketch] = {}
    first_key = 0
    for step, n in enumerate(sizes):
        start = 60.0 * (step // 7)  # a new window every 7 checkpoints
        key = ("m", "1", start)
        if key not in windows:
            windows[key] = WindowSketch.empty(PROFILE, start, start + 60.0, reservoir_size=k)
        windows[key].update(_batch(rng, n, first_key, keyed))
        first_key += n
        if step == close_at:  # the oldest window closes (handed on): its segments go
            windows.pop(min(windows))
        plan = log.plan(windows)
        _apply(topic, plan, {"open": [plan.sketch_dict(s) for s in windows.values()]})
        log.commit(plan)
        segment_keys = {k for k in topic if k != "head"}
        assert segment_keys == set(log.keys())  # nothing stale, nothing missing
        for window in log.windows.values():  # bounded: consolidated
            assert len(window.keys) <= segments_module.MAX_SEGMENTS
            assert window.rows <= segments_module.MAX_ROWS_FACTOR * k + k
        on_topic = {k: v for k, v in topic.items() if k != "head"}
        restored, again = restore_segments("s1/0", topic["head"], on_topic)
        assert restored is not None
        back = [WindowSketch.from_dict(d) for d in restored["open"]]
        assert len(back) == len(windows)
        assert all(_same(a, b) for a, b in zip(back, windows.values(), strict=True))
        assert set(again.keys()) == set(log.keys()) and again.stale == []


def test_a_crash_between_segments_and_head_restores_the_previous_checkpoint() -> None:
    rng = np.random.default_rng(1)
    sketch = WindowSketch.empty(PROFILE, 0.0, 60.0, reservoir_size=50)
    log, topic = ReservoirSegments("s1/0"), {}
    sketch.update(_batch(rng, 30, 0, True))
    plan = log.plan({("m", "1", 0.0): sketch})
    _apply(topic, plan, {"open": [plan.sketch_dict(sketch)]})
    log.commit(plan)
    before = WindowSketch.from_dict(sketch.to_dict())
    sketch.update(_batch(rng, 200, 30, True))
    plan = log.plan({("m", "1", 0.0): sketch})
    topic.update({k: orjson.loads(v) for k, v in plan.segments})  # then the crash: no head
    on_topic = {k: v for k, v in topic.items() if k != "head"}
    restored, again = restore_segments("s1/0", topic["head"], on_topic)
    assert restored is not None
    assert _same(WindowSketch.from_dict(restored["open"][0]), before)
    # the segment the crash left behind is stale: the next head's write tombstones it
    assert again.stale == [k for k, _ in plan.segments]
    assert set(again.plan({}).tombstones) == set(on_topic)


def test_a_missing_segment_fails_the_restore_and_old_checkpoints_still_restore() -> None:
    rng = np.random.default_rng(2)
    sketch = WindowSketch.empty(PROFILE, 0.0, 60.0, reservoir_size=20)
    sketch.update(_batch(rng, 100, 0, True))
    log = ReservoirSegments("s1/0")
    plan = log.plan({("m", "1", 0.0): sketch})
    head = {"open": [plan.sketch_dict(sketch)]}
    with pytest.raises(ValueError, match="2 of 2 segments missing"):
        restore_segments("s1/0", head, {})
    old = {"open": [sketch.to_dict()]}  # written before segments: the reservoir inline
    restored, again = restore_segments("s1/0", old, {})
    assert restored is not None and _same(WindowSketch.from_dict(restored["open"][0]), sketch)
    assert again.windows == {}  # its first incremental checkpoint writes the whole reservoir
    first = again.plan({("m", "1", 0.0): sketch})
    assert len(first.sketches[("m", "1", 0.0)][SEGMENTS_FIELD]) == 1
    assert len(first.segments) == 2  # its reservoir, and its bin edges


def test_equal_keys_keep_the_reservoir_inside_the_head() -> None:
    sketch = WindowSketch.empty(PROFILE, 0.0, 60.0, reservoir_size=5)
    same = np.array([7, 7, 8], dtype=np.uint64)  # the same record twice: equal keys
    sketch.update(_batch(np.random.default_rng(3), 3, 0, True))
    sketch.update(
        RecordBatch({"x": np.ones(3), "y": np.ones(3)}, {}, np.zeros(3),
                    np.array(["a"] * 3, dtype=object), record_keys=same)
    )  # fmt: skip
    plan = ReservoirSegments("s1/0").plan({("m", "1", 0.0): sketch})
    assert plan.segments == [] and SEGMENTS_FIELD not in plan.sketch_dict(sketch)
    restored, _ = restore_segments("s1/0", {"open": [plan.sketch_dict(sketch)]}, {})
    assert restored is not None and _same(WindowSketch.from_dict(restored["open"][0]), sketch)


def test_the_pipeline_restores_its_windows_bit_for_bit_after_incremental_checkpoints(
    config: Config, profile: ReferenceProfile
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    records = good(1_500)  # 150 s at 10/s: three windows of 60 s, one closing on the way
    for first in range(0, 1_500, 250):
        asyncio.run(p.on_predictions(messages(records[first : first + 250], first)))
        asyncio.run(p.checkpoint())
    saved = broker.checkpoints()
    assert any("#seg/" in k for k in saved)
    live = p.stage1[0]
    restarted = pipeline(config, profile, Broker(), saved=saved)
    asyncio.run(restarted.on_predictions(messages(records[-1:], 1_499)))  # replayed: skipped
    back = restarted.stage1[0]
    assert back.last_offset == live.last_offset == 1_499
    assert list(back.open) == list(live.open) and live.open
    assert all(_same(back.open[k], live.open[k]) for k in live.open)
    # closed windows' segments are tombstoned: only those of the open windows remain
    heads = saved["s1/0"]["open"]
    listed = {k for w in heads for k in [*w[SEGMENTS_FIELD], w[EDGES_FIELD]]}
    assert listed == {k for k in saved if "#seg/" in k}


def test_a_model_without_numeric_features_round_trips() -> None:
    """Reservoir rows of width 0 (only categorical features): `reshape(-1, 0)` cannot infer
    them, so such a sketch could not be read back, in a checkpoint or a partial."""
    profile = ReferenceProfile.from_columns(
        {"c": np.array(["a", "b"] * 50, dtype=object)}, model="m", model_version="1"
    )
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    values = np.array(["a", "b", "z"], dtype=object)
    sketch.update(RecordBatch({}, {"c": values}, np.zeros(3), values.copy()))
    assert _same(WindowSketch.from_dict(sketch.to_dict()), sketch)
    plan = ReservoirSegments("s1/0").plan({("m", "1", 0.0): sketch})
    topic = {k: orjson.loads(v) for k, v in plan.segments}
    restored, _ = restore_segments("s1/0", {"open": [plan.sketch_dict(sketch)]}, topic)
    assert restored is not None
    assert _same(WindowSketch.from_dict(restored["open"][0]), sketch)
