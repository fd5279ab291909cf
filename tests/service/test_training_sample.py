"""`driftline sink training-sample` on bad input, on the real Kafka and PostgreSQL: malformed
messages are skipped, counted and dead-lettered; rows PostgreSQL refuses are isolated and
dead-lettered instead of being retried forever; the good records of the same batch are kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.retrain.sample import TrainingSampleSink
from driftline.sinks.store import PostgresStore
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
    """Step until `expected` messages are handled; a stalled write (the old behaviour: retry
    forever) is stopped after `budget` seconds and shows as fewer messages handled."""
    stop = threading.Event()
    timer = threading.Timer(budget, stop.set)
    timer.start()
    handled = idle = 0
    try:
        while handled < expected and idle < 10 and not stop.is_set():
            step = sink.step(timeout=1.0, stop=stop)
            handled += step
            idle = idle + 1 if step == 0 else 0
    finally:
        timer.cancel()
    return handled


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
    """Defence in depth: a record that passed the contract but that PostgreSQL refuses (here a
    NUL put into a decoded record, as a lenient future decoder could) costs only itself."""
    config = _config(isolated_config, tmp_path)
    producer = Producer(config.kafka.confluent_settings())
    producer.produce(
        config.topics.predictions,
        key=b"b",
        value=orjson.dumps({"records": [_record(i) for i in range(40)]}),
    )
    producer.produce(config.topics.labels, key=b"l", value=orjson.dumps(_label(3)))
    assert producer.flush(30) == 0

    sink = TrainingSampleSink(config, store)
    try:
        messages: list[Any] = []
        deadline = time.monotonic() + 30
        while len(messages) < 2 and time.monotonic() < deadline:
            messages += sink.consumer.consume(10, timeout=1.0)
        predictions, labels = sink._split(messages)
        assert len(predictions) == 40 and len(labels) == 1
        predictions[7].record["features"]["country"] = "F\x00R"
        labels[0].record["label"] = "a\x00"
        started = time.monotonic()
        sink._write(predictions, labels)
        elapsed = time.monotonic() - started
    finally:
        sink.close()

    assert elapsed < 20  # no retry loop: halving finds the two rows in a few writes
    with store.pool.connection() as conn:
        ids = {r[0] for r in conn.execute("SELECT prediction_id FROM training_samples")}
    assert ids == {f"p-{i}" for i in range(40)} - {"p-7"}
    assert sink.rejected == {"store_rejected": 2}
    dead = [d for d in _dead_letters(config) if d.get("driftline.reason.kind") == "store_rejected"]
    assert len(dead) == 2
    assert all("PostgreSQL refused the record" in d["driftline.reason"] for d in dead)
    assert {d.get("driftline.source.index") for d in dead} == {"7", None}
