"""Join index segments (streams/segments.py, `JoinSegments`): after any sequence of
predictions, repeated ids, labels, evictions and checkpoints, the index restored from the head
and its segments is the live index's newest `max_checkpointed` entries, bit for bit (ids,
fields, order, arrival numbers), also when a restored index goes on; a crash between segments
and head restores the previous checkpoint; a checkpoint with the index inside the head (older
versions) still restores."""

from __future__ import annotations

import math
from typing import Any
from unittest.mock import patch

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.streams import segments as segments_module
from driftline.streams.labels import PartitionLabels
from driftline.streams.segments import (
    JOIN_FIELD,
    JoinPlan,
    JoinSegments,
    restore_join_segments,
)

HEAD = "s1/0"


def _labels(max_pending: int, max_checkpointed: int) -> PartitionLabels:
    return PartitionLabels(0, 60.0, 3600.0, 1e9, max_pending, max_checkpointed=max_checkpointed)


def _add(labels: PartitionLabels, ids: list[str], rng: np.random.Generator) -> None:
    n = len(ids)
    score = rng.random(n)
    score[rng.random(n) < 0.2] = math.nan  # a missing score travels as null
    predictions: list[Any] = list(
        np.array(["yes", 1, None, True, "no"], dtype=object)[rng.integers(0, 5, n)]
    )
    model = str(rng.choice(["m", "n"]))
    labels.add_columns(model, "1", ids, rng.uniform(0, 600, n), predictions, score)


def _checkpoint(
    labels: PartitionLabels, log: JoinSegments, topic: dict[str, Any]
) -> tuple[JoinPlan, bytes]:
    """One checkpoint: the plan, the head's bytes; the topic updated in the order sent."""
    plan = log.plan(labels.pending, labels.max_checkpointed)
    topic.update({k: orjson.loads(v) for k, v in plan.segments})
    head = orjson.dumps({"labels": {**labels.to_dict(pending=False), JOIN_FIELD: plan.head}})
    topic[HEAD] = orjson.loads(head)
    for key in plan.tombstones:
        topic.pop(key, None)
    log.commit(plan)
    return plan, head


def _restore(
    topic: dict[str, Any], labels: PartitionLabels
) -> tuple[PartitionLabels, JoinSegments]:
    on_topic = {k: v for k, v in topic.items() if k != HEAD}
    saved, log = restore_join_segments(HEAD, topic[HEAD], on_topic)
    assert saved is not None
    again = _labels(labels.max_pending, labels.max_checkpointed)
    again.restore(saved["labels"])
    return again, log


def _view(labels: PartitionLabels, limit: int | None = None) -> tuple[bytes, list[int]]:
    """The newest `limit` entries (all by default) as JSON, in order (model versions by name:
    their interned numbers may differ), and their arrival numbers."""
    index = labels.pending
    n = len(index) if limit is None else limit
    slots = index.newest_slots(n)
    entries = index.at(slots)
    rows = [index.pairs[c] for c in entries.code.tolist()]
    fields = (entries.ids, rows, entries.start, entries.prediction, entries.score, entries.time)
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY), index.seqs(slots).tolist()


@settings(max_examples=60, deadline=None)
@given(
    n_steps=st.integers(1, 80),
    max_pending=st.integers(1, 80),
    max_checkpointed=st.integers(0, 50),
    label_share=st.floats(0.0, 1.0),
    max_segments=st.sampled_from([2, 4, segments_module.MAX_SEGMENTS]),
    seed=st.integers(0, 2**32 - 1),
)
def test_restored_index_equals_the_live_newest_entries_after_every_checkpoint(
    n_steps: int,
    max_pending: int,
    max_checkpointed: int,
    label_share: float,
    max_segments: int,
    seed: int,
) -> None:
    with patch.object(segments_module, "MAX_SEGMENTS", max_segments):  # consolidations too
        _random_steps(n_steps, max_pending, max_checkpointed, label_share, seed)


def _random_steps(
    n_steps: int, max_pending: int, max_checkpointed: int, label_share: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)  # the steps: drawn from the seed hypothesis gives
    labels = _labels(max_pending, max_checkpointed)
    log, topic = JoinSegments(HEAD), dict[str, Any]()
    next_id = 0
    for _ in range(n_steps):
        op = rng.choice(["add", "label", "checkpoint", "restore"], p=[0.35, 0.25, 0.3, 0.1])
        n = int(rng.integers(0, 30))
        if op == "add":  # new ids, some ids again (replaced: moved to the end)
            fresh = [f"p{next_id + i}" for i in range(n)]
            next_id += n
            again = [f"p{i}" for i in rng.integers(0, max(next_id, 1), n // 4)]
            _add(labels, fresh + again, rng)
        elif op == "label":  # labels for waiting ids, oldest first or at random, and orphans
            waiting = list(labels.pending)
            k = int(label_share * len(waiting))
            ids = waiting[:k] if rng.random() < 0.5 else list(rng.permutation(waiting)[:k])
            ids += [f"p{i}" for i in rng.integers(0, max(next_id, 1), n // 4)]
            labels.add_labels([{"prediction_id": i, "label": 1, "timestamp": 9.0} for i in ids])
        elif op == "restore" and topic:  # the restored join goes on, as after a restart
            labels, log = _restore(topic, labels)
        else:
            _checkpoint(labels, log, topic)
            restored, again_log = _restore(topic, labels)
            limit = min(len(labels.pending), max_checkpointed)
            assert _view(restored) == _view(labels, limit)
            assert [p.key for p in again_log.parts] == [p.key for p in log.parts]
            assert again_log.stale == []
            assert {k for k in topic if k != HEAD} == {p.key for p in log.parts}
            assert len(log.parts) <= segments_module.MAX_SEGMENTS
            held = sum(p.seqs.size for p in log.parts)
            assert held <= segments_module.MAX_ROWS_FACTOR * limit


def test_a_crash_between_segments_and_head_restores_the_previous_checkpoint() -> None:
    rng = np.random.default_rng(1)
    labels = _labels(1000, 100)
    log, topic = JoinSegments(HEAD), dict[str, Any]()
    _add(labels, [f"a{i}" for i in range(40)], rng)
    _checkpoint(labels, log, topic)
    before = _view(labels)
    _add(labels, [f"b{i}" for i in range(30)], rng)
    labels.add_labels([{"prediction_id": f"a{i}", "label": 0, "timestamp": 1.0} for i in range(5)])
    plan = log.plan(labels.pending, labels.max_checkpointed)
    topic.update({k: orjson.loads(v) for k, v in plan.segments})  # then the crash: no head
    restored, again = _restore(topic, labels)
    assert _view(restored) == before
    # the segment the crash left behind is stale: the next head's write tombstones it
    assert again.stale == [k for k, _ in plan.segments]
    assert set(again.plan(restored.pending, 100).tombstones) >= set(again.stale)


def test_old_checkpoints_restore_and_a_missing_segment_fails_the_restore() -> None:
    rng = np.random.default_rng(2)
    labels = _labels(1000, 100)
    _add(labels, [f"a{i}" for i in range(50)], rng)
    old = {"labels": labels.to_dict()}  # the index inside the head, as before segments
    saved, log = restore_join_segments(HEAD, old, {f"{HEAD}#join/x": {}})
    assert saved is old and log.parts == [] and log.stale == [f"{HEAD}#join/x"]
    again = _labels(1000, 100)
    again.restore(old["labels"])
    assert _view(again) == _view(labels)
    # its first incremental checkpoint writes every entry in one segment
    plan = log.plan(again.pending, 100)
    assert len(plan.segments) == 1 and plan.tombstones == [f"{HEAD}#join/x"]
    topic: dict[str, Any] = {}
    _checkpoint(labels, JoinSegments(HEAD), topic)
    del topic[next(k for k in topic if k != HEAD)]
    with pytest.raises(ValueError, match="missing"):
        _restore(topic, labels)


def test_only_new_entries_are_written_and_joined_segments_are_tombstoned() -> None:
    rng = np.random.default_rng(3)
    labels = _labels(10_000, 1000)
    log, topic = JoinSegments(HEAD), dict[str, Any]()
    batches = [[f"b{b}-{i}" for i in range(100)] for b in range(4)]
    sizes = []
    for ids in batches:
        _add(labels, ids, rng)
        plan, _ = _checkpoint(labels, log, topic)
        sizes.append(sum(len(orjson.loads(v)["ids"]) for _, v in plan.segments))
    assert sizes == [100, 100, 100, 100]
    labels.add_labels([{"prediction_id": i, "label": 1, "timestamp": 1.0} for i in batches[0]])
    plan, _ = _checkpoint(labels, log, topic)
    assert plan.segments == [] and len(plan.tombstones) == 1 and len(log.parts) == 3


def test_a_restored_index_numbers_new_entries_after_every_entry_on_the_topic() -> None:
    """The newest entry joined: its number is still in a segment on the topic, so a restored
    index must not give it to the next prediction (which would then pass for it)."""
    rng = np.random.default_rng(4)
    labels = _labels(1000, 100)
    log, topic = JoinSegments(HEAD), dict[str, Any]()
    _add(labels, ["a", "b", "c"], rng)
    _checkpoint(labels, log, topic)
    labels.add_labels([{"prediction_id": "c", "label": 1, "timestamp": 1.0}])
    _checkpoint(labels, log, topic)
    labels, log = _restore(topic, labels)
    _add(labels, ["d"], rng)
    _checkpoint(labels, log, topic)
    restored, _ = _restore(topic, labels)
    assert list(restored.pending) == ["a", "b", "d"]
    assert _view(restored) == _view(labels)
