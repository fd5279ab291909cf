"""`driftline sink training-sample` on bad input, on the real Kafka and PostgreSQL: malformed
messages are skipped, counted and dead-lettered; rows PostgreSQL refuses are isolated and
dead-lettered instead of being retried forever; the good records of the same batch are kept,
and the offsets are committed after the write."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from driftline.config import Config
from driftline.retrain.sample import SampleItem, TrainingSampleSink, write_batch
from driftline.sinks.base import Records
from driftline.sinks.store import PostgresStore
from driftline.streams.formats import Headers
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.service.test_retrain_helpers import config_of, retrain_env, schema_store

pytestmark = pytest.mark.service


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    with schema_store(postgres_url) as store:
        yield store


def _config(isolated_config: tuple[Config, dict[str, str]], tmp_path: Path) -> Config:
    _, base = isolated_config
    config = config_of(retrain_env(base, tmp_path, RETRAINING_SAMPLE_RATE="1.0"))
    ensure_topics(config)
    return config


def _record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "prediction_id": f"p-{i}",
        "model": "fraud",
        "model_version": "1",
        "timestamp": 1_780_000_000.0 + i,
        "features": {"amount": float(i), "country": "FR"},
        "prediction": i % 2,
        **change,
    }


def _label(i: int, **change: Any) -> dict[str, Any]:
    return {"prediction_id": f"p-{i}", "label": i % 2, "timestamp": 1_780_000_100.0 + i, **change}


def _drain(sink: TrainingSampleSink, expected: int, budget: float = 45.0) -> int:
    """Step until `expected` messages are written and committed, or `budget` seconds (a stalled
    write, e.g. retried forever, shows as fewer messages handled)."""
    sink.start()
    deadline = time.monotonic() + budget
    handled = 0
    while handled < expected and time.monotonic() < deadline:
        handled += sink.step()
    return handled


class _Lenient(TrainingSampleSink):
    """Puts a NUL into the predictions (labels) of the `poisoned` (`poisoned_labels`) ids after
    the contract checked them, as a lenient future decoder could: PostgreSQL refuses those rows
    (defence in depth)."""

    poisoned: frozenset[str] = frozenset()
    poisoned_labels: frozenset[str] = frozenset()

    def decode_records(
        self, topic: str, value: bytes | None, headers: Headers = None
    ) -> Records[SampleItem]:
        decoded = super().decode_records(topic, value, headers)
        for _, item in decoded.items:
            pid = item.record["prediction_id"]
            if item.is_prediction and pid in self.poisoned:
                item.record["features"]["country"] = "F\x00R"
            elif not item.is_prediction and pid in self.poisoned_labels:
                item.record["label"] = "a\x00"
        return decoded


def _committed_everything(config: Config, group: str) -> bool:
    """Whether `group` committed the end of every partition of the predictions and labels."""
    consumer = Consumer({**config.kafka.confluent_settings(), "group.id": group})
    try:
        topics = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(name, p)
            for name in (config.topics.predictions, config.topics.labels)
            for p in topics[name].partitions
        ]
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset != high:
                return False
        return True
    finally:
        consumer.close()


def _dead_letters(config: Config) -> list[dict[str, Any]]:
    reader = TopicReader(config, config.topics.dlq, start="beginning")
    try:
        return [
            {k: (v or b"").decode() for k, v in (m.headers() or [])} | {"value": m.value()}
            for m in reader.messages(20, idle=3)
        ]
    finally:
        reader.close()


def test_malformed_messages_and_nul_strings_are_dead_lettered_and_the_rest_is_kept(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    config = _config(isolated_config, tmp_path)
    producer = Producer(config.kafka.confluent_settings())
    predictions = [orjson.dumps(_record(i)) for i in range(10)]
    predictions += [
        b"[" * 5000,  # RecursionError in the JSON parser: crashed _split before
        b"not json",
        orjson.dumps([_record(10), _record(11, model="fr\x00aud"), _record(12)]),
    ]
    labels = [orjson.dumps(_label(i)) for i in range(10)]
    labels += [
        orjson.dumps(_label(10, label="fr\x00aud")),  # jsonb cannot hold it: stalled the sink
        orjson.dumps([_label(11), _label(12)]),  # a batch of labels: dropped silently before
        b"{" * 3000,
    ]
    for value in predictions:
        producer.produce(config.topics.predictions, key=b"k", value=value)
    for value in labels:
        producer.produce(config.topics.labels, key=b"k", value=value)
    assert producer.flush(30) == 0

    sink = TrainingSampleSink(config, store)
    try:
        handled = _drain(sink, len(predictions) + len(labels))
    finally:
        sink.close()

    assert handled == len(predictions) + len(labels)  # every message handled and committed
    with store.pool.connection() as conn:
        rows = dict(
            conn.execute("SELECT prediction_id, label FROM training_samples").fetchall()  # type: ignore[arg-type]
        )
    kept = {f"p-{i}" for i in (*range(11), 12)}
    assert set(rows) == kept  # p-11 (NUL in model) skipped, its batch neighbours kept
    assert all(rows[f"p-{i}"] == i % 2 for i in (*range(10), 12))  # labels filled in
    assert rows["p-10"] is None  # its only label had a NUL: rejected, not stored
    assert sink.rejected == {"invalid_json": 3, "schema_violation": 2}

    dead = [d for d in _dead_letters(config) if d.get("driftline.consumer") == "training-sample"]
    kinds = sorted(d["driftline.reason.kind"] for d in dead)
    assert kinds == ["invalid_json"] * 3 + ["schema_violation"] * 2
    nul = [d for d in dead if "NUL" in d["driftline.reason"]]
    assert len(nul) == 2 and {d["driftline.source.topic"] for d in nul} == {
        config.topics.predictions,
        config.topics.labels,
    }
    batch = next(d for d in nul if d["driftline.source.topic"] == config.topics.predictions)
    assert batch["driftline.source.index"] == "1"


def test_rows_postgresql_refuses_are_isolated_not_retried_forever(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    """A record that passed the contract but that PostgreSQL refuses costs only itself: the
    batch is halved until it is alone (a few writes, no retry loop)."""
    config = _config(isolated_config, tmp_path)
    producer = Producer(config.kafka.confluent_settings())
    producer.produce(
        config.topics.predictions,
        key=b"b",
        value=orjson.dumps({"records": [_record(i) for i in range(40)]}),
    )
    producer.produce(config.topics.labels, key=b"l", value=orjson.dumps(_label(3)))
    assert producer.flush(30) == 0

    sink = _Lenient(config, store)
    sink.poisoned, sink.poisoned_labels = frozenset({"p-7"}), frozenset({"p-3"})
    try:
        started = time.monotonic()
        handled = _drain(sink, 2)
        elapsed = time.monotonic() - started
    finally:
        sink.close()

    assert handled == 2 and elapsed < 30  # no retry loop: halving finds the two rows
    with store.pool.connection() as conn:
        ids = {r[0] for r in conn.execute("SELECT prediction_id FROM training_samples")}
    assert ids == {f"p-{i}" for i in range(40)} - {"p-7"}
    assert sink.rejected == {"store_rejected": 2} and sink.stats["write_failures"] == 0
    dead = [d for d in _dead_letters(config) if d.get("driftline.reason.kind") == "store_rejected"]
    assert len(dead) == 2
    assert all("UntranslatableCharacter" in d["driftline.reason"] for d in dead)
    assert {d.get("driftline.source.index") for d in dead} == {"7", None}
    assert _committed_everything(config, sink.group_id)


def test_a_message_with_a_good_a_malformed_and_a_refused_record(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    """One batch message: the good record is written, the malformed one and the one PostgreSQL
    refuses are dead-lettered (each with its index and reason, counted), offsets committed."""
    config = _config(isolated_config, tmp_path)
    producer = Producer(config.kafka.confluent_settings())
    batch = [_record(0), {"model": "fraud", "prediction_id": "p-1"}, _record(2)]
    producer.produce(config.topics.predictions, key=b"b", value=orjson.dumps(batch))
    assert producer.flush(30) == 0

    sink = _Lenient(config, store)
    sink.poisoned = frozenset({"p-2"})
    try:
        assert _drain(sink, 1) == 1
    finally:
        sink.close()

    with store.pool.connection() as conn:
        ids = {r[0] for r in conn.execute("SELECT prediction_id FROM training_samples")}
    assert ids == {"p-0"}
    assert sink.rejected == {"schema_violation": 1, "store_rejected": 1}
    assert sink.written["predictions"] == 1
    dead = sorted(
        (d for d in _dead_letters(config) if d.get("driftline.consumer") == "training-sample"),
        key=lambda d: d["driftline.source.index"],
    )
    assert [(d["driftline.source.index"], d["driftline.reason.kind"]) for d in dead] == [
        ("1", "schema_violation"),
        ("2", "store_rejected"),
    ]
    assert "missing required field" in dead[0]["driftline.reason"]
    assert "UntranslatableCharacter" in dead[1]["driftline.reason"]
    assert "cannot be converted" in dead[1]["driftline.reason"]
    assert all(d["value"] == orjson.dumps(batch) for d in dead)  # the original message
    assert _committed_everything(config, sink.group_id)


# -- the input formats of the worker (`formats.predictions` / `formats.labels`) --------------


def _ce_binary(kind: str, event_id: str, **change: bytes) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binding, binary mode: attributes in `ce_*` headers, data in the value."""
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": event_id.encode(),
        "ce_source": b"/inference/fraud",
        "ce_type": f"dev.driftline.{kind}".encode(),
        "content-type": b"application/json",
        **change,
    }
    return [(k, v) for k, v in headers.items() if v]


def _ce_structured(kind: str, event_id: str, data: Any) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/inference/fraud",
            "type": f"dev.driftline.{kind}",
            "datacontenttype": "application/json",
            "data": data,
        }
    )


_STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def _rows(store: PostgresStore) -> dict[str, tuple[Any, ...]]:
    with store.pool.connection() as conn:
        found = conn.execute(
            "SELECT prediction_id, model, model_version, features, prediction, label,"
            " latency_ms FROM training_samples"
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in found}


def test_cloudevents_predictions_and_labels_land_in_the_sample(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    """`formats: cloudevents` on both topics: binary mode (attributes in the headers) and
    structured mode (the event in the value) are read as the worker reads them; an event
    without its `id` is dead-lettered as `invalid_event`, as the worker does."""
    _, base = isolated_config
    config = config_of(
        retrain_env(base, tmp_path, FORMATS_PREDICTIONS="cloudevents", FORMATS_LABELS="cloudevents")
    )
    ensure_topics(config)
    producer = Producer(config.kafka.confluent_settings())
    send = producer.produce
    send(config.topics.predictions, orjson.dumps(_record(1)), b"k",
         headers=_ce_binary("prediction", "e-1"))  # fmt: skip
    send(config.topics.predictions, _ce_structured("prediction", "e-2", [_record(2), _record(3)]),
         b"k", headers=_STRUCTURED)  # fmt: skip
    send(config.topics.predictions, orjson.dumps(_record(4)), b"k",
         headers=_ce_binary("prediction", "e-4", ce_id=b""))  # fmt: skip
    send(config.topics.labels, orjson.dumps(_label(1)), b"k", headers=_ce_binary("label", "l-1"))
    send(config.topics.labels, _ce_structured("label", "l-2", _label(2)), b"k",
         headers=_STRUCTURED)  # fmt: skip
    assert producer.flush(30) == 0

    sink = TrainingSampleSink(config, store)
    try:
        assert _drain(sink, 5) == 5
    finally:
        sink.close()

    rows = _rows(store)
    assert set(rows) == {"p-1", "p-2", "p-3"}
    assert rows["p-1"][:5] == ("fraud", "1", {"amount": 1.0, "country": "FR"}, 1, 1)
    assert (rows["p-2"][4], rows["p-3"][4]) == (0, None)  # labels of binary and structured
    assert sink.rejected == {"invalid_event": 1}
    dead = [d for d in _dead_letters(config) if d.get("driftline.consumer") == "training-sample"]
    assert [d["driftline.reason.kind"] for d in dead] == ["invalid_event"]
    assert "lacks the required attribute 'id'" in dead[0]["driftline.reason"]
    # the event's own attributes travel with it: the copy can be mended and replayed as it came
    assert dead[0]["ce_type"] == "dev.driftline.prediction"
    assert dead[0]["ce_specversion"] == "1.0" and dead[0]["content-type"] == "application/json"
    assert _committed_everything(config, sink.group_id)


def _kserve(half: str, request_id: str, time: str) -> list[tuple[str, bytes]]:
    """KServe's payload logger after Knative's KafkaSink (binary mode)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", request_id.encode()),
        ("ce_source", b"http://localhost:9081/"),
        ("ce_type", f"org.kubeflow.serving.inference.{half}".encode()),
        ("ce_time", time.encode()),
        ("ce_inferenceservicename", b"sklearn-iris"),
        ("content-type", b"application/json"),
    ]


def test_oip_request_and_response_pairs_land_in_the_sample(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    """`formats.predictions: oip`: a request and its response, consumed by the same sink,
    join into the rows of the pair (one per row of the batch); a response whose tensor does
    not match its request is dead-lettered with the reason. Labels stay driftline JSON."""
    _, base = isolated_config
    config = config_of(retrain_env(base, tmp_path, FORMATS_PREDICTIONS="oip"))
    ensure_topics(config)
    request = {
        "id": "r-1",
        "inputs": [
            {"name": "sepal", "shape": [2, 2], "datatype": "FP32", "data": [[6.8, 2.8], [6.0, 3.4]]}
        ],
    }
    response = {
        "model_name": "iris",
        "model_version": "7",
        "id": "r-1",
        "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT32", "data": [1, 2]}],
    }
    short_output = {"name": "output-0", "shape": [2], "datatype": "INT32", "data": [1]}
    short = {**response, "id": "r-2", "outputs": [short_output]}  # 2 rows requested, 1 answered
    producer = Producer(config.kafka.confluent_settings())
    topic = config.topics.predictions
    producer.produce(topic, orjson.dumps(request), b"k",
                     headers=_kserve("request", "r-1", "2026-12-01T10:00:00Z"))  # fmt: skip
    producer.produce(topic, orjson.dumps({**request, "id": "r-2"}), b"k",
                     headers=_kserve("request", "r-2", "2026-12-01T10:00:00Z"))  # fmt: skip
    producer.produce(topic, orjson.dumps(response), b"k",
                     headers=_kserve("response", "r-1", "2026-12-01T10:00:00.040Z"))  # fmt: skip
    producer.produce(topic, orjson.dumps(short), b"k",
                     headers=_kserve("response", "r-2", "2026-12-01T10:00:00.040Z"))  # fmt: skip
    label = {"prediction_id": "r-1:1", "label": 2, "timestamp": 1_796_119_300}
    producer.produce(config.topics.labels, orjson.dumps(label), b"k")
    assert producer.flush(30) == 0

    sink = TrainingSampleSink(config, store)
    try:
        assert _drain(sink, 5) == 5
    finally:
        sink.close()

    rows = _rows(store)
    assert rows == {
        "r-1:0": ("iris", "7", {"sepal_0": 6.8, "sepal_1": 2.8}, 1, None, 40.0),
        "r-1:1": ("iris", "7", {"sepal_0": 6.0, "sepal_1": 3.4}, 2, 2, 40.0),
    }
    assert sink.rejected == {"invalid_shape": 1}
    dead = [d for d in _dead_letters(config) if d.get("driftline.consumer") == "training-sample"]
    assert [d["driftline.reason.kind"] for d in dead] == ["invalid_shape"]
    assert "inference 'r-2'" in dead[0]["driftline.reason"]
    assert _committed_everything(config, sink.group_id)


def test_predictions_taking_labels_parked_earlier_count_no_negative_pending(
    store: PostgresStore,
) -> None:
    """Labels first (parked), their predictions in a later batch: the second write fills in
    two labels and leaves none of its own waiting. It once reported -2 pending rows, and the
    negative count raised in the rows-written counter and killed the sink's thread."""
    write = dict(max_rows_per_version=100)
    parked = write_batch(store, [], [_label(1), _label(2), _label(3)], **write)
    assert (parked["labels"], parked["pending"]) == (0, 3)
    taken = write_batch(store, [_record(1), _record(2)], [_label(4)], **write)
    assert (taken["predictions"], taken["labels"], taken["pending"]) == (2, 2, 1)
