"""Checkpoint values above the message limit: chunks of a generation, then the head, then
tombstones; the reader only ever sees a whole value (the previous or the new one)."""

from __future__ import annotations

import random

import orjson
import pytest

from driftline.streams.checkpoint import HEAD_FIELD, ChunkedWriter, assemble_checkpoints
from driftline.streams.intake import restore_partition
from driftline.streams.labels import PartitionLabels
from driftline.streams.windows import ModelWindows


def _apply(topic: dict[str, bytes], messages: list[tuple[str, bytes | None]]) -> None:
    """A compacted topic's latest value per key after these messages (None deletes)."""
    for key, value in messages:
        if value is None:
            topic.pop(key, None)
        else:
            topic[key] = value


def _value(rng: random.Random) -> bytes:
    return orjson.dumps({"open": [rng.random() for _ in range(rng.choice([1, 5, 40, 200]))]})


def test_every_prefix_of_a_write_reads_as_the_old_or_the_new_value() -> None:
    rng = random.Random(1)
    writer = ChunkedWriter(max_value_bytes=300)
    topic: dict[str, bytes] = {}
    current: dict[str, bytes] = {}
    for _ in range(60):
        key = rng.choice(["s1/0", "s1/1", "s2/fraud"])
        value = _value(rng)
        messages = writer.messages(key, value)
        assert all(v is None or len(v) <= 300 for _, v in messages)
        for cut in range(len(messages) + 1):  # a crash after any message
            crashed = dict(topic)
            _apply(crashed, messages[:cut])
            seen = assemble_checkpoints(crashed).get(key)
            previous = orjson.loads(current[key]) if key in current else None
            assert seen in (previous, orjson.loads(value))
        _apply(topic, messages)
        current[key] = value
        values = assemble_checkpoints(topic)
        assert {k: orjson.dumps(v) for k, v in values.items()} == current
        # no chunk left behind: only the current generation of each chunked value
        live = {k for keys in writer.live.values() for k in keys}
        assert {k for k in topic if "#chunk/" in k} == live


def test_a_new_process_tombstones_the_chunks_it_did_not_write() -> None:
    topic: dict[str, bytes] = {}
    first = ChunkedWriter(max_value_bytes=50)
    _apply(topic, first.messages("s1/0", orjson.dumps({"x": list(range(100))})))
    assert sum("#chunk/" in k for k in topic) > 3
    second = ChunkedWriter(max_value_bytes=50)  # after a restart or on another worker
    second.loaded(assemble_checkpoints(topic))
    _apply(topic, second.messages("s1/0", b'{"x":[]}'))
    assert topic == {"s1/0": b'{"x":[]}'}


def test_chunks_missing_or_damaged_are_reported_not_restored() -> None:
    writer = ChunkedWriter(max_value_bytes=20)
    topic: dict[str, bytes] = {}
    _apply(topic, writer.messages("s1/0", orjson.dumps({"x": list(range(30))})))
    chunk = next(k for k in topic if "#chunk/" in k)
    head = orjson.loads(topic["s1/0"])[HEAD_FIELD]
    for damage in ("drop", "flip", "head"):
        broken = dict(topic)
        if damage == "drop":
            del broken[chunk]
        elif damage == "flip":
            broken[chunk] = b"9" * len(broken[chunk])
        else:
            broken["s1/0"] = orjson.dumps({HEAD_FIELD: {**head, "count": "many"}})
        saved = assemble_checkpoints(broken)["s1/0"]
        assert set(saved) == {HEAD_FIELD, "error"}  # from_dict fails: the stage reports it


@pytest.mark.parametrize("size", [0, 1, 49, 50, 51, 500])
def test_values_at_and_around_the_limit(size: int) -> None:
    writer = ChunkedWriter(max_value_bytes=50)
    value = orjson.dumps("a" * size)
    messages = writer.messages("k", value)
    assert len(messages) == (1 if len(value) <= 50 else -(-len(value) // 50) + 1)
    topic: dict[str, bytes] = {}
    _apply(topic, messages)
    assert assemble_checkpoints(topic)["k"] == "a" * size


def test_a_head_that_cannot_be_reassembled_is_dropped_and_reported_by_the_stages() -> None:
    writer = ChunkedWriter(max_value_bytes=20)
    topic: dict[str, bytes] = {}
    _apply(topic, writer.messages("s1/0", orjson.dumps({"x": list(range(30))})))
    del topic[next(k for k in topic if "#chunk/" in k)]
    saved = assemble_checkpoints(topic)["s1/0"]
    joins = PartitionLabels(partition=0, window_size=60.0, horizon=0.0, ttl=50.0, max_pending=3)
    state, error = restore_partition(0, saved, joins)  # stage 1: reported, starts fresh
    assert state is None and error is not None
    with pytest.raises(KeyError):  # stage 2 catches any exception of it and reports it
        ModelWindows.from_dict(saved)
