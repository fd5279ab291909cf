"""Bad input never blinds the worker: `Pipeline` driven in-process with a fake producer.

Each test sends hostile messages next to good ones and checks what reaches the window state,
the dead-letter topic and the checkpoint (issue 9: isolation, event-time bounds, a bounded
DLQ, checkpoints that never stick a partition).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.simulate import simulate
from driftline.streams.pipeline import Pipeline, Topics, record_key

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_767_225_600.0 + 3600.0  # the worker's clock: an hour after the simulated traffic starts
TOPIC = "in.predictions"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Broker:
    """What the pipeline sent, by topic; the checkpoint topic compacted to its latest values."""

    sent: dict[str, list[tuple[bytes | None, bytes | None, dict[str, bytes]]]] = field(
        default_factory=dict
    )

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes] | None,
    ) -> None:
        self.sent.setdefault(topic, []).append((key, value, dict(headers or {})))

    def checkpoints(self) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        for key, value, _ in self.sent.get("ckpt", []):
            if value is None:  # a tombstone (a reservoir segment no head references)
                latest.pop((key or b"").decode(), None)
            else:
                latest[(key or b"").decode()] = orjson.loads(value)
        return latest

    def dlq(self) -> list[tuple[bytes, dict[str, bytes]]]:
        return [(value, headers) for _, value, headers in self.sent.get("dlq", [])]


@pytest.fixture(scope="module")
def profile(fraud_profile: ReferenceProfile) -> ReferenceProfile:
    return fraud_profile


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(
        ROOT / "config" / "driftline.yaml",
        environ={"DRIFTLINE_WINDOWS_SIZE_SECONDS": "60"},
    )


def pipeline(
    config: Config,
    profile: ReferenceProfile,
    broker: Broker,
    saved: dict[str, Any] | None = None,
) -> Pipeline:
    async def load() -> dict[str, Any]:
        return dict(saved or {})

    return Pipeline(
        config,
        profiles={("fraud", "1"): profile},
        thresholds=thresholds_from_dict({}),
        topics=Topics(TOPIC, "dlq", "partials", "alerts", "metrics", "ckpt"),
        n_sources=1,
        send=broker.send,
        load_checkpoints=load,
        clock=lambda: NOW,
    )


def good(n: int, first: int = 0) -> list[dict[str, Any]]:
    """n valid records, 10 per second of event time from the start of the first window."""
    records, _ = simulate(n, seed=3, first_index=first, rate_per_second=10.0)
    return records


def messages(payloads: list[Any], first_offset: int = 0) -> list[Message]:
    return [
        Message(TOPIC, 0, first_offset + i, b"k", p if isinstance(p, bytes) else orjson.dumps(p))
        for i, p in enumerate(payloads)
    ]


def windowed(p: Pipeline) -> int:
    """Records in the open windows of partition 0."""
    p.stage1[0].flush()
    return sum(sketch.n_records for sketch in p.stage1[0].open.values())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("score", "high"),
        ("score", None),
        ("probabilities", [0.1, 0.9]),
        ("probabilities", "0.9"),
        ("attributions", [1, 2]),
        ("prediction", [1, 0]),
        ("error", {"code": 3}),
    ],
)
def test_a_wrong_optional_field_rejects_that_record_only(
    config: Config, profile: ReferenceProfile, field_name: str, value: Any
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    records = good(200)
    records[57] = {**records[57], field_name: value}
    run(p.on_predictions(messages(records)))
    dead = broker.dlq()
    # Each record is either windowed once or dead-lettered once: never both, never lost.
    assert windowed(p) + len(dead) == 200
    assert len(dead) <= 1
    if dead:
        assert dead[0][1]["driftline.source.offset"] == b"57"
        assert dead[0][1]["driftline.reason.kind"] == b"schema_violation"


def test_a_huge_value_is_rejected_and_the_checkpoint_restores_after_a_restart(
    config: Config, profile: ReferenceProfile
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    records = good(300)
    records[10] = {**records[10], "features": {**records[10]["features"], "amount": 1e154}}
    records[11] = {**records[11], "score": 1e308}
    run(p.on_predictions(messages(records)))
    run(p.checkpoint())
    assert windowed(p) == 298 and len(broker.dlq()) == 2
    assert all(math.isfinite(x) for x in _numbers(broker.checkpoints()["s1/0"]))

    restarted = pipeline(config, profile, Broker(), saved=broker.checkpoints())
    run(restarted.on_predictions(messages(good(100, first=300), first_offset=300)))
    assert windowed(restarted) == 398


def test_a_far_future_timestamp_does_not_drop_later_records(
    config: Config, profile: ReferenceProfile
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    future = {**good(1)[0], "prediction_id": "future", "timestamp": 9.9e10}
    unknown_model = {**good(1)[0], "model": "other", "timestamp": NOW + 60}  # no profile
    run(p.on_predictions(messages([future, unknown_model, *good(600)])))
    state = p.stage1[0]
    assert windowed(p) == 600 and state.late_records == 0
    assert state.max_event_time == good(600)[-1]["timestamp"]  # not the unprofiled model's
    (dead,) = broker.dlq()
    assert dead[1]["driftline.reason.kind"] == b"timestamp_out_of_range"


def test_a_far_future_label_is_dead_lettered(config: Config, profile: ReferenceProfile) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    run(p.on_predictions(messages(good(10))))
    labels = [
        {"prediction_id": "p3-0", "label": 1, "timestamp": 9.9e10},
        {"prediction_id": "p3-1", "label": 0, "timestamp": NOW - 100},
    ]
    run(
        p.on_labels(
            [Message("in.labels", 0, i, b"k", orjson.dumps(x)) for i, x in enumerate(labels)]
        )
    )
    assert p.labels[0].joined == 1
    assert p.labels[0].label_watermark == NOW - 100
    (dead,) = broker.dlq()
    assert dead[1]["driftline.reason.kind"] == b"timestamp_out_of_range"


def test_one_dead_letter_per_message_whatever_its_bad_records(
    config: Config, profile: ReferenceProfile
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker)
    bad = [{"model": "fraud", "junk": "x" * 10} for _ in range(10_000)]
    payload = orjson.dumps({"records": [*good(5), *bad]})
    run(p.on_predictions(messages([payload])))
    (dead,) = broker.dlq()
    value, headers = dead
    assert len(payload) > 64 * 1024 and value == payload[: 64 * 1024]
    assert headers["driftline.payload.truncated"] == b"true"
    assert headers["driftline.payload.size"] == str(len(payload)).encode()
    assert headers["driftline.payload.sha256"] == hashlib.sha256(payload).hexdigest().encode()
    assert headers["driftline.rejects.count"] == b"10000"
    assert headers["driftline.source.index"] == b"5"
    assert len(headers["driftline.rejects"]) <= 16384
    assert windowed(p) == 5


def test_a_dead_letter_keeps_the_message_headers(config: Config, profile: ReferenceProfile) -> None:
    """The DLQ copy carries the message's own headers (a binary-mode CloudEvent keeps its
    attributes, so it can be replayed as it came); `driftline.*` names are driftline's."""
    broker = Broker()
    p = pipeline(config, profile, broker)
    sent = [("ce_type", b"dev.example.prediction"), ("traceparent", b"00-ab-01"),
            ("driftline.reason", b"forged by the producer")]  # fmt: skip
    bad = Message(TOPIC, 0, 0, b"k", b"not json", sent)
    run(p.on_predictions([bad]))
    ((value, headers),) = broker.dlq()
    assert value == b"not json"
    assert headers["ce_type"] == b"dev.example.prediction"
    assert headers["traceparent"] == b"00-ab-01"
    assert headers["driftline.reason.kind"] == b"invalid_json"
    assert headers["driftline.reason"] != b"forged by the producer"


def test_record_keys_are_unique_beyond_4096_records_per_message() -> None:
    keys = {record_key(3, offset, index) for offset in (0, 1) for index in range(20_000)}
    assert len(keys) == 40_000


@pytest.mark.parametrize(
    "corrupt",
    [
        {"garbage": 1},
        {"partition": 0, "size": 60, "lateness": 60, "max_event_time": None, "last_offset": 5},
    ],
)
def test_an_unrestorable_checkpoint_is_dropped_and_the_partition_starts_fresh(
    config: Config, profile: ReferenceProfile, corrupt: dict[str, Any]
) -> None:
    broker = Broker()
    p = pipeline(config, profile, broker, saved={"s1/0": corrupt})
    run(p.on_predictions(messages(good(50))))
    assert windowed(p) == 50
    dropped = {"stage": "stage1"}
    assert p.metrics.registry.get_sample_value("driftline_checkpoints_dropped_total", dropped) == 1
    (event,) = [orjson.loads(value) for _, value, _ in broker.sent["alerts"]]
    assert event["type"] == "operational" and event["test"] == "checkpoint_dropped"
    assert event["evidence"]["checkpoint_key"] == "s1/0" and event["evidence"]["error"]
    again = Broker()  # the same checkpoint dropped after another restart: the same id
    run(pipeline(config, profile, again, saved={"s1/0": corrupt}).on_predictions(messages(good(5))))
    assert orjson.loads(again.sent["alerts"][0][1])["event_id"] == event["event_id"]


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_a_batch_failing_half_way_counts_entirely_or_not_at_all(
    config: Config, profile: ReferenceProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in phase 2 (simulated: the label join raises on one batch): the partition's state
    is dropped, the shell re-reads from the committed offset (0 here), the failed batch's
    messages are dead-lettered once and every other record is windowed exactly once."""
    from driftline.streams.labels import PartitionLabels

    broker = Broker()
    saved: dict[str, Any] = {}
    p = pipeline(config, profile, broker, saved=saved)
    stream = messages(good(300))
    run(p.on_predictions(stream[:100]))
    run(p.checkpoint())
    saved.update(broker.checkpoints())  # offsets 0..99 checkpointed (not committed: replayed)

    add_columns = PartitionLabels.add_columns

    def fail_once(self: PartitionLabels, *args: Any) -> Any:
        monkeypatch.setattr(PartitionLabels, "add_columns", add_columns)
        raise RuntimeError("a bug")

    monkeypatch.setattr(PartitionLabels, "add_columns", fail_once)
    run(p.on_predictions(stream[100:200]))  # windows updated, then the join raises
    assert p.rewound == {0} and 0 not in p.stage1
    p.rewound.clear()
    for first in range(0, 300, 100):  # the shell re-reads from the committed offset 0
        run(p.on_predictions(stream[first : first + 100]))
    assert windowed(p) == 200
    dead = broker.dlq()
    assert sorted(int(h["driftline.source.offset"]) for _, h in dead) == list(range(100, 200))
    assert {h["driftline.reason.kind"] for _, h in dead} == {b"worker_error"}


def test_a_piece_failing_stops_its_partition_and_the_rest_is_applied_once(
    config: Config, profile: ReferenceProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition's batch is applied in pieces of `PIECE_BYTES` (cache-sized): when the second
    piece fails, the first one stays applied, the third is not applied (the shell re-reads
    from the commit), only the failed piece is dead-lettered, every record counts once."""
    from driftline.streams import stage1
    from driftline.streams.labels import PartitionLabels

    stream = messages(good(300))
    monkeypatch.setattr(stage1, "PIECE_BYTES", sum(len(m.value or b"") for m in stream[:100]))
    assert [len(piece) for piece in stage1._pieces(stream, stage1.PIECE_BYTES)] == [100] * 3
    broker = Broker()
    p = pipeline(config, profile, broker)
    add_columns = PartitionLabels.add_columns
    calls = []

    def fail_second(self: PartitionLabels, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return add_columns(self, *args)

    monkeypatch.setattr(PartitionLabels, "add_columns", fail_second)
    run(p.on_predictions(stream))
    assert len(calls) == 2  # the third piece was not applied
    assert p.rewound == {0} and 0 not in p.stage1
    p.rewound.clear()
    run(p.on_predictions(stream))  # re-read from the committed offset 0 (nothing committed)
    assert windowed(p) == 200
    dead = broker.dlq()
    assert sorted(int(h["driftline.source.offset"]) for _, h in dead) == list(range(100, 200))


@pytest.mark.parametrize(
    "value, usable",
    [
        (1e15, True),
        (-1e15, True),
        (1e16, False),
        (-2e15, False),
        (math.inf, True),
        (math.nan, True),
    ],
)
def test_columns_beyond_the_magnitude_bound_are_not_usable(value: float, usable: bool) -> None:
    """`intake._usable` (all columns checked at once): a finite number beyond 1e15 would make
    a window's sums of squares overflow; +/-inf (how the core marks a non-number) and NaN
    (missing) are fine, in any of the columns."""
    from driftline.detectors.batch import RecordBatch
    from driftline.streams.intake import _usable

    record = {"timestamp": 1.0, "features": {"x": 0.5, "y": 1.0}, "score": 0.5, "latency_ms": 3.0}
    assert _usable(RecordBatch.from_records([record], {"x": "numeric", "y": "numeric"}))
    for at in ("x", "y"):
        bad = {**record, "features": {**record["features"], at: value}}
        batch = RecordBatch.from_records([record, bad], {"x": "numeric", "y": "numeric"})
        assert _usable(batch) is usable, at


def test_pieces_grow_with_the_model_versions_they_carry(
    config: Config, profile: ReferenceProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece holds `PIECE_BYTES` for each (model, version) group of the partition's previous
    piece: with 4 versions interleaved, the first piece has 100 messages and the next ~400 (with
    100 models, pieces of 512 KiB left groups of ~9 records, dearer per record than whole
    batches)."""
    from driftline.streams import stage1

    records = good(900)
    for i, record in enumerate(records):
        record["model_version"] = str(1 + i % 4)
    stream = messages(records)
    monkeypatch.setattr(stage1, "PIECE_BYTES", sum(len(m.value or b"") for m in stream[:100]))
    sizes: list[int] = []
    apply = stage1.PartitionStage._partition_batch

    async def counted(self: stage1.PartitionStage, partition: int, piece: list[Message]) -> None:
        sizes.append(len(piece))
        await apply(self, partition, piece)

    monkeypatch.setattr(stage1.PartitionStage, "_partition_batch", counted)
    run(pipeline(config, profile, Broker()).on_predictions(stream))
    assert sum(sizes) == 900 and 99 <= sizes[0] <= 101, sizes
    assert 390 <= sizes[1] <= 410, sizes
