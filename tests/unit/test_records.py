from __future__ import annotations

import orjson

from driftline.streams.records import parse_predictions

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
