"""Broken pipelines end to end on the real Kafka: a feature that stops arriving, one sent as
null, one stuck at a constant, a x100 unit change and a missing-rate jump each produce a
`data_quality` event naming the feature (and a new field is reported) from one worker run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
BREAK_FROM = 120.0  # seconds after the start: windows 3.. of 60 s are broken
EXPECTED = {
    ("merchant_risk", "absent"),
    ("device_risk", "missing_rate"),
    ("hour_of_day", "constant"),
    ("amount", "out_of_range"),
    ("distance_from_home_km", "missing_rate"),
    ("browser", "new_feature"),
    ("country", "new_category"),
}


def _break(record: dict[str, Any], i: int) -> None:
    features = record["features"]
    features.pop("merchant_risk", None)
    features["device_risk"] = None
    features["hour_of_day"] = 3
    features["amount"] = features["amount"] * 100.0
    if i % 2:
        features["distance_from_home_km"] = None
    features["browser"] = "firefox"
    if i % 10 == 0:
        features["country"] = "ZZ"  # a country the reference never had, 10 % of traffic


def test_broken_pipeline_findings_reach_the_alerts_topic(kafka: Any, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    model = f"fraud-dq-{suffix}"
    references = tmp_path / "references"
    build_reference(references, model=model)
    env = worker_env(kafka.bootstrap_servers, f"e2e-dq-{suffix}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    start = 1_767_225_600.0
    stream, _ = simulate(24_000, seed=6, model=model, start_time=start, rate_per_second=100.0)
    producer = Producer(config.kafka.confluent_settings())
    for i, record in enumerate(stream):
        if record["timestamp"] - start >= BREAK_FROM:
            _break(record, i)
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for message in alerts.messages(timeout=90, stop=lambda: worker.poll() is not None):
            event = orjson.loads(message.value() or b"{}")
            if event["type"] == "data_quality":
                found.setdefault((event["feature"], event["test"]), event)
            if set(found) >= EXPECTED:
                break
    finally:
        stop_worker_processes([worker])
        alerts.close()
    assert set(found) >= EXPECTED, (sorted(found), (tmp_path / "worker.log").read_text()[-2000:])
    for event in found.values():
        assert event["window_start"] >= start + BREAK_FROM  # nothing before the break
    assert found[("merchant_risk", "absent")]["severity"] == "critical"
    assert found[("device_risk", "missing_rate")]["statistic"] == 1.0
