"""Broken pipelines end to end on the real Kafka: a feature that stops arriving, one sent as
null, one stuck at a constant, a x100 unit change and a missing-rate jump each produce a
`data_quality` event naming the feature (and a new field is reported) from one worker run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from driftline.simulate import simulate
from tests.service.e2e import START, model_run, produce, worker_events

pytestmark = pytest.mark.service

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
    run = model_run(kafka, tmp_path, f"e2e-dq-{suffix}", f"fraud-dq-{suffix}")
    stream, _ = simulate(24_000, seed=6, model=run.model, start_time=START, rate_per_second=100.0)
    for i, record in enumerate(stream):
        if record["timestamp"] - START >= BREAK_FROM:
            _break(record, i)
    produce(run.config, stream)

    found: dict[tuple[str, str], dict[str, Any]] = {}
    with worker_events(run) as events:
        for event in events:
            if event["type"] == "data_quality":
                found.setdefault((event["feature"], event["test"]), event)
            if set(found) >= EXPECTED:
                break
    assert set(found) >= EXPECTED, (sorted(found), run.log.read_text()[-2000:])
    for event in found.values():
        assert event["window_start"] >= START + BREAK_FROM  # nothing before the break
    assert found[("merchant_risk", "absent")]["severity"] == "critical"
    assert found[("device_risk", "missing_rate")]["statistic"] == 1.0
