from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.streams.records import (
    REJECTION_KINDS,
    RecordError,
    RejectedRecord,
    parse_labels,
    parse_predictions,
)

GOOD = {
    "prediction_id": "p-1",
    "model": "fraud",
    "model_version": "3",
    "timestamp": 1_767_225_600.5,
    "features": {"amount": 12.0, "country": "FR", "age": None},
    "prediction": 1,
    "score": 0.8,
}


def test_single_record_is_accepted() -> None:
    valid, rejected = parse_predictions(orjson.dumps(GOOD))
    assert valid == [GOOD] and rejected == []


def test_batch_message_keeps_good_records_and_rejects_bad_ones_by_index() -> None:
    bad = {**GOOD, "timestamp": "yesterday"}
    for payload in ([GOOD, bad, GOOD], {"records": [GOOD, bad, GOOD]}):
        valid, rejected = parse_predictions(orjson.dumps(payload))
        assert len(valid) == 2
        assert [(r.kind, r.index) for r in rejected] == [("schema_violation", 1)]
        assert "timestamp" in rejected[0].reason


def test_malformed_messages_are_rejected_with_a_reason() -> None:
    cases = {
        b"{oops": "invalid_json",
        b'"text"': "invalid_shape",
        b"42": "invalid_shape",
        orjson.dumps({**GOOD, "features": [1, 2]}): "schema_violation",
        orjson.dumps({k: v for k, v in GOOD.items() if k != "model"}): "schema_violation",
        orjson.dumps({**GOOD, "prediction_id": True}): "schema_violation",
        orjson.dumps({**GOOD, "model": ""}): "schema_violation",
    }
    for payload, kind in cases.items():
        valid, rejected = parse_predictions(payload)
        assert valid == [], payload
        assert len(rejected) == 1 and rejected[0].kind == kind, (payload, rejected)
        assert rejected[0].reason


def test_missing_field_is_named() -> None:
    _, rejected = parse_predictions(
        orjson.dumps({k: v for k, v in GOOD.items() if k != "features"})
    )
    assert rejected[0].reason == "missing required field 'features'"


# -- issue 9: every field checked, bounds, labels ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"score": "0.5"}, "'score'"),
        ({"score": None}, "'score'"),
        ({"score": True}, "'score'"),
        ({"prediction": [1, 2]}, "'prediction'"),
        ({"prediction": {"class": 1}}, "'prediction'"),
        ({"error": ["timeout"]}, "'error'"),
        ({"error": {"type": "timeout"}}, "'error'"),
        ({"probabilities": [0.2, 0.8]}, "'probabilities'"),
        ({"probabilities": "0.8"}, "'probabilities'"),
        ({"probabilities": {"a": 1.5}}, "'probabilities.a'"),
        ({"attributions": "shap"}, "'attributions'"),
        ({"attributions": {"amount": 1e308}}, "'attributions.amount'"),
        ({"features": {"amount": 1e154}}, "'features.amount'"),
        ({"features": {"amount": -1e16}}, "'features.amount'"),
        ({"features": {"amount": 10**16}}, "'features.amount'"),
        ({"features": {"country": "x" * 1025}}, "'features.country'"),
        ({"features": {"y" * 257: 1}}, "'features'"),
        ({"latency_ms": -1}, "'latency_ms'"),
        ({"latency_ms": "fast"}, "'latency_ms'"),
        ({"model_version": True}, "'model_version'"),
        ({"model_version": "v" * 257}, "'model_version'"),
        ({"model": "m" * 257}, "'model'"),
        ({"prediction_id": "p" * 257}, "'prediction_id'"),
        ({"prediction_id": ""}, "'prediction_id'"),
        ({"prediction_id": 2**64}, "'prediction_id'"),
        ({"timestamp": 9.9e10 * 2}, "'timestamp'"),
        ({"timestamp": -1}, "'timestamp'"),
    ],
)
def test_every_field_is_checked_and_the_reason_names_it(change: dict[str, Any], field: str) -> None:
    valid, rejected = parse_predictions(json.dumps([GOOD, {**GOOD, **change}]).encode())
    assert valid == [GOOD]
    (reject,) = rejected
    assert reject.kind == "schema_violation" and reject.index == 1
    assert reject.reason.startswith("record 1: field ") and field in reject.reason


def test_values_at_the_bounds_are_kept() -> None:
    edge = {
        **GOOD,
        "prediction_id": 2**63 - 1,
        "model_version": 7,
        "features": {"amount": 1e15, "count": -(10**15), "country": "é" * 1024, "ok": True},
        "prediction": None,
        "score": 1,
        "probabilities": {"yes": 0, "no": 1.0},
        "attributions": {"amount": -1e15},
        "latency_ms": 0,
        "error": None,
    }
    ((record,), rejected) = parse_predictions(orjson.dumps(edge))
    assert rejected == [] and record["features"] == edge["features"]
    assert record["score"] == 1.0 and isinstance(record["score"], float)


def test_a_number_beyond_a_double_costs_only_its_record() -> None:
    payload = b"[" + orjson.dumps(GOOD) + b', {"prediction_id": 1e400}]'
    valid, rejected = parse_predictions(payload)
    assert valid == [GOOD] and [(r.kind, r.index) for r in rejected] == [("invalid_json", 1)]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"", "invalid_json"), (None, "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
def test_empty_and_undecodable_messages(payload: bytes | None, kind: str) -> None:
    assert [r.kind for r in parse_predictions(payload).rejected] == [kind]


def test_unknown_fields_are_dropped_and_records_key_means_a_batch() -> None:
    ((record,), _) = parse_predictions(orjson.dumps({**GOOD, "debug": {"blob": "x" * 5000}}))
    assert record == GOOD
    valid, _ = parse_predictions(orjson.dumps({"records": [GOOD], "source": "svc-a"}))
    assert valid == [GOOD]


def test_decoded_records_feed_the_columnar_batch() -> None:
    """Downstream keeps its record shape: numbers as strings and booleans still work."""
    sloppy = [
        {**GOOD, "features": {"amount": "12.5", "country": "FR", "age": True}},
        {**GOOD, "prediction_id": 7, "model_version": 3, "features": {"amount": None}},
    ]
    valid, rejected = parse_predictions(orjson.dumps(sloppy))
    assert rejected == []
    batch = RecordBatch.from_records(
        valid, {"amount": "numeric", "country": "categorical", "age": "numeric"}
    )
    assert batch.numeric["amount"].tolist()[0] == 12.5 and batch.numeric["age"].tolist()[0] == 1.0
    assert batch.score is not None and batch.score.tolist() == [0.8, 0.8]


def test_labels_are_validated_against_their_schema() -> None:
    label = {"prediction_id": "p-1", "label": 1, "timestamp": 1_767_225_600}
    ((ok,), rejected) = parse_labels(orjson.dumps(label))
    assert ok == {**label, "timestamp": 1_767_225_600.0} and rejected == []
    for bad in (None, {"class": 1}, [1], "x" * 1025, 1e16):
        decoded = parse_labels(orjson.dumps({**label, "label": bad}))
        assert decoded.records == [] and "'label'" in decoded.rejected[0].reason
    for value in (True, "fraud", 0.0):
        assert parse_labels(orjson.dumps({**label, "label": value})).records[0]["label"] == value
    missing = parse_labels(orjson.dumps({"label": 1, "timestamp": 1}))
    assert missing.rejected[0].reason == "missing required field 'prediction_id'"
    batch = parse_labels(orjson.dumps([label, {**label, "label": None}, label]))
    assert len(batch.records) == 2 and [r.index for r in batch.rejected] == [1]


def test_rejection_kinds_are_a_fixed_set() -> None:
    samples = [
        parse_predictions(b"{oops"),
        parse_predictions(b"42"),
        parse_predictions(orjson.dumps({**GOOD, "score": 3})),
        parse_labels(b"[]"),
    ]
    kinds = {r.kind for decoded in samples for r in decoded.rejected}
    assert kinds <= REJECTION_KINDS and kinds == {
        "invalid_json",
        "invalid_shape",
        "schema_violation",
    }
    assert RejectedRecord("invalid_json", "x", None).index is None
    assert issubclass(RecordError, ValueError)
