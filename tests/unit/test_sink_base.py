"""The batching sink base, driven through a toy sink and a fake consumer and producer.

`JsonLinesSink` is the "new sink" of docs/DESIGN.md ("How to extend: a new sink"): a subclass
implementing only `write` and `is_transient`. The fakes record every call in one shared
journal, so the tests check the checkpoint order (write, then the dead letters, then the
offsets), backoff, pause on backpressure and commit-only-after-write without a broker; the
Kafka wiring is tested against the real broker in tests/service/test_postgres_sink.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from confluent_kafka import TopicPartition

from driftline.config import load_config
from driftline.sinks.base import BatchingSink, Records, SinkBackpressureError, SinkSettings
from driftline.sinks.prometheus import REGISTRY, SINK_STATE
from driftline.streams.formats import Headers, RejectedRecord

TOPIC = "toy.metrics"


class JsonLinesSink(BatchingSink[dict[str, Any]]):
    """A JSON-lines file sink: one line per message (the whole sink)."""

    name: ClassVar[str] = "jsonl"
    path: Path

    def write(self, items: Sequence[dict[str, Any]]) -> None:
        if any(item.get("refuse") for item in items):
            raise ValueError("this file takes no item with 'refuse'")
        with self.path.open("ab") as file:
            file.write(b"".join(orjson.dumps(item) + b"\n" for item in items))
            file.flush()
            os.fsync(file.fileno())

    def is_transient(self, exc: Exception) -> bool:
        return isinstance(exc, OSError)


# -- fakes ------------------------------------------------------------------------------------


class FakeMessage:
    def __init__(
        self,
        offset: int,
        value: bytes,
        partition: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._offset, self._value, self._partition = offset, value, partition
        self._headers = headers

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class FakeConsumer:
    """One partition of TOPIC; `consume` returns nothing while paused."""

    def __init__(self, journal: list[Any]) -> None:
        self.journal = journal
        self.waiting: list[FakeMessage] = []
        self.paused = False
        self.committed: dict[tuple[str, int], int] = {}
        self.next_offset = 0

    def publish(self, *values: bytes) -> None:
        self.waiting += [FakeMessage(self.next_offset + i, v) for i, v in enumerate(values)]
        self.next_offset += len(values)

    def subscribe(self, topics: list[str], on_revoke: Callable[..., None]) -> None:
        self.journal.append(("subscribe", topics))

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if self.paused:
            return []
        taken, self.waiting = self.waiting[:num_messages], self.waiting[num_messages:]
        return taken

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused = True
        self.journal.append("pause")

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused = False
        self.journal.append("resume")

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        self.journal.append(("commit", [tp.offset for tp in offsets]))

    def close(self) -> None:
        pass


class FakeProducer:
    def __init__(self, journal: list[Any]) -> None:
        self.journal = journal
        self.pending: list[tuple[Callable[..., None], Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.fail = False
        self.hold = False  # nothing confirmed within the flush timeout
        self.produced = 0

    def produce(self, topic: str, key: bytes, value: bytes, headers: Any, on_delivery: Any) -> None:
        self.produced += 1
        self.pending.append((on_delivery, {"topic": topic, "value": value, "headers": headers}))

    def flush(self, timeout: float) -> int:
        self.journal.append(("flush", len(self.pending)))
        if self.hold:
            return len(self.pending)
        for callback, message in self.pending:
            if self.fail:
                callback("broker down", None)
            else:
                self.delivered.append(message)
                callback(None, None)
        self.pending = []
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Harness = tuple[JsonLinesSink, FakeConsumer, FakeProducer, Clock, list[Any]]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    journal: list[Any] = []
    consumer, producer, clock = FakeConsumer(journal), FakeProducer(journal), Clock()
    settings = SinkSettings(
        batch_messages=3, flush_interval=1.0, max_buffer=5, backoff_initial=0.5, backoff_max=2.0
    )
    sink = JsonLinesSink(
        load_config(environ={}), [TOPIC], settings, clock=clock,
        consumer=consumer, producer=producer,  # type: ignore[arg-type]
    )  # fmt: skip
    sink.path = tmp_path / "out.jsonl"
    original = sink.write

    def journaled(items: Sequence[dict[str, Any]]) -> None:
        journal.append(("write", len(items)))
        return original(items)

    sink.write = journaled  # type: ignore[method-assign]
    sink.start()
    yield sink, consumer, producer, clock, journal
    SINK_STATE.untrack(sink)  # its backlog is no longer scraped


def _lines(sink: JsonLinesSink) -> list[dict[str, Any]]:
    if not sink.path.exists():
        return []
    return [orjson.loads(line) for line in sink.path.read_bytes().splitlines()]


def _values(*ns: int) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in ns]


# -- tests ------------------------------------------------------------------------------------


def test_a_full_batch_is_written_then_committed(harness: Harness) -> None:
    sink, consumer, _, _, journal = harness
    consumer.publish(*_values(0, 1))
    sink.step()  # 2 < batch_messages and not a second old: buffered, nothing committed
    assert _lines(sink) == [] and consumer.committed == {} and sink.backlog == 2
    consumer.publish(*_values(2))
    sink.step()
    assert [x["n"] for x in _lines(sink)] == [0, 1, 2]
    assert journal[-2:] == [("write", 3), ("commit", [3])]  # the offset after the last written
    assert sink.backlog == 0


def test_flush_interval_writes_a_partial_batch(harness: Harness) -> None:
    sink, consumer, _, clock, _ = harness
    consumer.publish(*_values(0))
    sink.step()
    assert consumer.committed == {}
    clock.now += 1.0
    sink.step()
    assert consumer.committed == {(TOPIC, 0): 1} and len(_lines(sink)) == 1


def test_transient_errors_back_off_and_keep_the_batch(harness: Harness) -> None:
    sink, consumer, _, clock, journal = harness
    sink.path = sink.path.parent / "missing-dir" / "out.jsonl"  # OSError: transient
    consumer.publish(*_values(0, 1, 2))
    sink.step()
    assert sink.stats["write_failures"] == 1 and consumer.committed == {}
    first_delay = sink.state.retry_at - clock.now
    assert 0.4 <= first_delay <= 0.6  # backoff_initial +-20 %
    sink.step()  # before retry_at: no new attempt
    assert sink.stats["write_failures"] == 1
    clock.now = sink.state.retry_at
    sink.step()
    assert sink.stats["write_failures"] == 2
    assert 0.8 <= sink.state.retry_at - clock.now <= 1.2  # doubled
    sink.path.parent.mkdir()
    clock.now = sink.state.retry_at
    sink.step()
    assert [x["n"] for x in _lines(sink)] == [0, 1, 2] and consumer.committed == {(TOPIC, 0): 3}
    assert ("commit", [3]) not in journal[: journal.index(("write", 3))]  # never before a write
    assert sink.state.backoff == 0.0


def test_a_full_buffer_pauses_the_consumer_until_a_write_succeeds(harness: Harness) -> None:
    sink, consumer, _, clock, journal = harness
    sink.path = sink.path.parent / "missing-dir" / "out.jsonl"
    consumer.publish(*_values(*range(8)))
    for _ in range(4):
        sink.step()
        clock.now += 5.0
    assert sink.paused and consumer.paused and sink.backlog == 5  # max_buffer is a hard bound
    assert len(consumer.waiting) == 3 and consumer.committed == {}
    assert REGISTRY.get_sample_value("driftline_sink_backlog_records") == 5  # read at scrape
    assert REGISTRY.get_sample_value("driftline_sink_paused") == 1
    sink.path.parent.mkdir()
    sink.step()
    assert not consumer.paused and "resume" in journal and consumer.committed == {(TOPIC, 0): 5}
    for _ in range(3):
        clock.now += 5.0
        sink.step()
    assert [x["n"] for x in _lines(sink)] == list(range(8))


def test_backpressure_pauses_at_once_and_retries_after_the_delay(harness: Harness) -> None:
    sink, consumer, _, clock, _ = harness
    calls = []

    def slow_down(items: Sequence[dict[str, Any]]) -> None:
        calls.append(len(items))
        if len(calls) == 1:
            raise SinkBackpressureError(retry_after=7.0)

    sink.write = slow_down  # type: ignore[method-assign]
    consumer.publish(*_values(0, 1, 2))
    sink.step()
    assert sink.paused and consumer.paused and consumer.committed == {}
    assert sink.state.retry_at == clock.now + 7.0
    clock.now += 6.9
    sink.step()
    assert calls == [3]
    clock.now += 0.1
    sink.step()
    assert calls == [3, 3] and not consumer.paused and consumer.committed == {(TOPIC, 0): 3}


def test_malformed_and_refused_messages_are_dead_lettered_before_the_commit(
    harness: Harness,
) -> None:
    sink, consumer, producer, _, journal = harness
    consumer.publish(b"{not json", orjson.dumps({"refuse": True}), *_values(2))
    sink.step()
    assert [x["n"] for x in _lines(sink)] == [2]
    kinds = [m["headers"]["driftline.reason.kind"] for m in producer.delivered]
    assert kinds == [b"malformed_message", b"refused_by_sink"]
    assert [m["value"] for m in producer.delivered] == [b"{not json", b'{"refuse":true}']
    assert producer.delivered[1]["headers"]["driftline.source.offset"] == b"1"
    assert producer.delivered[1]["headers"]["driftline.consumer"] == b"sink-jsonl"
    # the batch (3), then one by one (2: the malformed one is not written), then DLQ, commit
    assert journal[1:] == [("write", 2), ("write", 1), ("write", 1), ("flush", 2), ("commit", [3])]
    assert sink.stats["rejected"] == 2


@pytest.mark.parametrize(
    ("trouble", "produced"),
    [("fail", 2), ("hold", 1)],  # refused: produced again; only slow: waited for, not resent
)
def test_no_commit_until_the_dead_letters_are_confirmed(
    harness: Harness, trouble: str, produced: int
) -> None:
    sink, consumer, producer, clock, _ = harness
    setattr(producer, trouble, True)
    consumer.publish(b"garbage", *_values(1, 2))
    sink.step()
    assert consumer.committed == {} and sink.stats["write_failures"] == 1
    setattr(producer, trouble, False)
    clock.now = sink.state.retry_at
    sink.step()
    assert consumer.committed == {(TOPIC, 0): 3}
    assert producer.produced == produced and len(producer.delivered) == 1
    assert len(_lines(sink)) == 4  # written twice (idempotent writes are the contract)


class RecordsSink(JsonLinesSink):
    """A sink whose messages hold several records: a JSON list; a record that is not an
    object is rejected (with its index), the rest are written (a refused one: dead-lettered)."""

    name: ClassVar[str] = "records"

    def decode_records(
        self, topic: str, value: bytes | None, headers: Headers = None
    ) -> Records[dict[str, Any]]:
        decoded: Records[dict[str, Any]] = Records()
        for index, record in enumerate(orjson.loads(value or b"[]")):
            if isinstance(record, dict):
                decoded.items.append((index, record))
            else:
                decoded.rejected.append(RejectedRecord("schema_violation", "not an object", index))
        return decoded


def test_a_message_of_good_malformed_and_refused_records(harness: Harness) -> None:
    """One message: its good records are written, the malformed one and the one the
    destination refuses are dead-lettered with their index and reason, the offset committed."""
    _, consumer, producer, clock, journal = harness
    sink = RecordsSink(
        load_config(environ={}), [TOPIC], SinkSettings(batch_messages=2), clock=clock,
        consumer=consumer, producer=producer,  # type: ignore[arg-type]
    )  # fmt: skip
    sink.path = harness[0].path
    sink.start()
    message = orjson.dumps([{"n": 0}, 7, {"n": 2, "refuse": True}, {"n": 3}])
    consumer.publish(message, orjson.dumps([{"n": 4}]))
    try:
        assert sink.step() == 2  # both messages written and committed
    finally:
        SINK_STATE.untrack(sink)
    assert [x["n"] for x in _lines(sink)] == [0, 3, 4]
    letters = [(m["headers"], m["value"]) for m in producer.delivered]
    assert [(h["driftline.source.index"], h["driftline.reason.kind"]) for h, _ in letters] == [
        (b"1", b"schema_violation"),
        (b"2", b"refused_by_sink"),
    ]
    assert letters[1][0]["driftline.reason"].startswith(b"ValueError: this file takes no item")
    assert all(value == message for _, value in letters)  # the original message, whole
    assert sink.rejected == {"schema_violation": 1, "refused_by_sink": 1}
    assert consumer.committed == {(TOPIC, 0): 2} and journal[-1] == ("commit", [2])


class HeaderSink(JsonLinesSink):
    """A sink whose format is in the Kafka headers, as CloudEvents binary mode: the record's
    `unit` is the `x-unit` header; a message without it is rejected."""

    name: ClassVar[str] = "headers"

    def decode_records(
        self, topic: str, value: bytes | None, headers: Headers = None
    ) -> Records[dict[str, Any]]:
        pairs = headers if isinstance(headers, list) else []  # confluent-kafka's list of pairs
        units = [v for k, v in pairs if k == "x-unit" and v is not None]
        if not units:
            return Records(rejected=[RejectedRecord("invalid_event", "no x-unit header", None)])
        return Records([(None, {**orjson.loads(value or b"{}"), "unit": units[0].decode()})])


def test_the_message_headers_reach_decode_records(harness: Harness) -> None:
    _, consumer, producer, clock, _ = harness
    sink = HeaderSink(
        load_config(environ={}), [TOPIC], SinkSettings(batch_messages=2), clock=clock,
        consumer=consumer, producer=producer,  # type: ignore[arg-type]
    )  # fmt: skip
    sink.path = harness[0].path
    sink.start()
    consumer.waiting += [
        FakeMessage(0, orjson.dumps({"n": 0}), headers=[("x-unit", b"ms")]),
        FakeMessage(1, orjson.dumps({"n": 1})),
    ]
    try:
        assert sink.step() == 2
    finally:
        SINK_STATE.untrack(sink)
    assert _lines(sink) == [{"n": 0, "unit": "ms"}]
    assert [m["headers"]["driftline.reason"] for m in producer.delivered] == [b"no x-unit header"]
    assert sink.rejected == {"invalid_event": 1}


def test_a_negative_row_count_from_write_does_not_stop_the_sink(harness: Harness) -> None:
    """The rows-written counter refuses a negative count; a sink's bad count must not raise
    out of the loop after the write succeeded (it killed the training sample sink's thread)."""
    sink, consumer, _, _, _ = harness
    sink.write = lambda items: {"jsonl": -1}  # type: ignore[method-assign,assignment,return-value]
    consumer.publish(*_values(0, 1, 2))
    assert sink.step() == 3
    assert consumer.committed == {(TOPIC, 0): 3}
