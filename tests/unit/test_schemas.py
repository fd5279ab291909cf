"""The published contracts (config/schemas/*.json) agree with what the code accepts and emits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds
from driftline.simulate import simulate
from driftline.streams.events import drift_event, window_events
from driftline.streams.records import parse_labels, parse_predictions

SCHEMAS = Path(__file__).resolve().parents[2] / "config" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_simulated_records_and_labels_follow_the_schemas() -> None:
    records, labels = simulate(200, seed=1)
    predictions, label_schema = (
        validator("prediction.v1.schema.json"),
        validator("label.v1.schema.json"),
    )
    for record, label in zip(records, labels, strict=True):
        predictions.validate(record)
        label_schema.validate(label)


@pytest.mark.parametrize(
    "record",
    [
        {"model": "fraud", "model_version": "1", "timestamp": 1.0, "features": {}},
        {"prediction_id": "a", "model": "", "model_version": "1", "timestamp": 1.0, "features": {}},
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": "1",
            "timestamp": "soon",
            "features": {},
        },
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": "1",
            "timestamp": 1.0,
            "features": [1],
        },
        {
            "prediction_id": True,
            "model": "m",
            "model_version": "1",
            "timestamp": 1.0,
            "features": {},
        },
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": False,
            "timestamp": 1.0,
            "features": {},
        },
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": "1",
            "timestamp": 1.0,
            "features": {"x": 1e16},
        },
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": "1",
            "timestamp": 1.0,
            "features": {},
            "score": None,
        },
    ],
)
def test_parser_and_schema_reject_the_same_records(record: dict[str, Any]) -> None:
    assert not validator("prediction.v1.schema.json").is_valid(record)
    valid, rejected = parse_predictions(orjson.dumps(record))
    assert valid == [] and rejected[0].kind == "schema_violation"


@pytest.mark.parametrize(
    "label",
    [
        {"prediction_id": "a", "label": None, "timestamp": 1.0},
        {"prediction_id": "a", "label": {"y": 1}, "timestamp": 1.0},
        {"prediction_id": "a", "label": [1], "timestamp": 1.0},
        {"prediction_id": "a", "label": 1, "timestamp": "now"},
        {"label": 1, "timestamp": 1.0},
    ],
)
def test_label_parser_and_schema_reject_the_same_labels(label: dict[str, Any]) -> None:
    assert not validator("label.v1.schema.json").is_valid(label)
    valid, rejected = parse_labels(orjson.dumps(label))
    assert valid == [] and rejected[0].kind == "schema_violation"


def test_dlq_reason_kinds_are_the_decoders_kinds() -> None:
    from driftline.streams.formats import REJECTION_KINDS

    schema = json.loads((SCHEMAS / "dlq_headers.v1.schema.json").read_text())
    assert set(schema["properties"]["driftline.reason.kind"]["enum"]) == REJECTION_KINDS


def test_schemas_state_the_documented_bounds() -> None:
    """The bounds the decoders enforce are written in the published schemas."""
    from driftline.streams.formats import contract

    prediction = json.loads((SCHEMAS / "prediction.v1.schema.json").read_text())
    value = prediction["$defs"]["value"]
    assert value["maximum"] == contract.MAX_ABS_NUMBER == -value["minimum"]
    assert value["maxLength"] == contract.MAX_VALUE_LENGTH
    assert prediction["$defs"]["entries"]["maxProperties"] == contract.MAX_ENTRIES
    assert prediction["properties"]["model"]["maxLength"] == contract.MAX_NAME_LENGTH
    assert prediction["$defs"]["id"]["maximum"] == contract.ID_MAX


def test_drift_events_follow_the_schema() -> None:
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.from_columns(
        {"x": rng.normal(size=5_000), "y": rng.normal(size=5_000)}, model="m", model_version="1"
    )
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    sketch.update(
        RecordBatch(
            numeric={"x": rng.normal(1.0, size=2_000), "y": rng.normal(size=2_000)},
            categorical={},
            event_time=np.zeros(2_000),
            prediction=np.full(2_000, "ok", dtype=object),
        )
    )
    events = window_events(evaluate_window(profile, sketch, ModelThresholds()), detected_at=100.0)
    events.append(
        drift_event(
            type="concept_drift",
            severity="warning",
            model="m",
            model_version="1",
            window_start=None,
            window_end=None,
            detected_at=1.0,
            test="adwin_error",
            evidence={"sample": 3},
            identity="0/adwin_error/3",
        )
    )
    schema = validator("drift_event.v1.schema.json")
    assert events and any(e["type"] == "data_drift" for e in events)
    for event in events:
        schema.validate(orjson.loads(orjson.dumps(event)))


def test_event_id_depends_on_the_finding_not_the_time() -> None:
    common: dict[str, Any] = dict(
        type="data_drift",
        severity="warning",
        model="m",
        model_version="1",
        window_start=0.0,
        window_end=60.0,
        feature="x",
        test="ks",
    )
    first = drift_event(detected_at=1.0, **common)
    again = drift_event(detected_at=99.0, statistic=0.3, **common)
    other = drift_event(detected_at=1.0, **{**common, "feature": "y"})
    assert first["event_id"] == again["event_id"] != other["event_id"]


def test_serving_incidents_become_error_rate_and_latency_events() -> None:
    from driftline.detectors.thresholds import ModelThresholds
    from driftline.streams.events import service_events

    rng = np.random.default_rng(1)
    profile = ReferenceProfile.from_columns(
        {"x": rng.normal(size=2_000)}, model="m", model_version="1"
    )
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    n = 1_000
    sketch.update(
        RecordBatch(
            numeric={"x": rng.normal(size=n)},
            categorical={},
            event_time=np.zeros(n),
            prediction=np.full(n, "0", dtype=object),
            latency_seconds=np.where(np.arange(n) < 950, 0.01, 2.0),
            error=np.array(["timeout" if i < 120 else None for i in range(n)], dtype=object),
        )
    )
    evaluation = evaluate_window(profile, sketch, ModelThresholds())
    events = {e["type"]: e for e in service_events(evaluation, ModelThresholds(), 1.0)}
    assert (
        events["error_rate"]["statistic"] == 0.12 and events["error_rate"]["severity"] == "critical"
    )
    assert events["latency"]["statistic"] == pytest.approx(2.0, rel=0.02)
    quiet = service_events(
        evaluation, ModelThresholds(max_error_rate=0.2, max_latency_p99_seconds=5.0), 1.0
    )
    assert quiet == []
    schema = validator("drift_event.v1.schema.json")
    for event in events.values():
        schema.validate(orjson.loads(orjson.dumps(event)))
