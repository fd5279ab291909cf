"""Parsing and validating records off the wire: bytes in, plain dicts (or a reason) out.

A prediction message is one JSON object, or a batch: `{"records": [...]}` or a JSON array, as
inference servers log batched requests. Each record is checked against the contract in
`config/schemas/prediction.schema.json` (the checks here are the same, hand-written for speed:
jsonschema costs ~50 µs a record, more than the rest of the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["RecordError", "RejectedRecord", "parse_predictions"]

_REQUIRED = ("prediction_id", "model", "model_version", "timestamp", "features")


class RecordError(ValueError):
    """A record that breaks the contract; the message is the DLQ reason."""


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    kind: str  # a fixed set, safe as a metric label: invalid_json, invalid_shape, schema_violation
    reason: str  # for humans, goes into the DLQ header
    index: int | None  # position inside a batch message, None for the message itself


def parse_predictions(payload: bytes) -> tuple[list[dict[str, Any]], list[RejectedRecord]]:
    """Decode one Kafka message into valid prediction records and rejected ones.

    A message that is not JSON at all is rejected whole; in a batch, each bad record is
    rejected on its own and the good ones are kept.

    >>> ok, bad = parse_predictions(b'[{"prediction_id": "1", "model": "fraud", '
    ...     b'"model_version": "3", "timestamp": 1.0, "features": {"x": 1}}, {"model": "fraud"}]')
    >>> len(ok), bad[0].reason
    (1, "record 1: missing required field 'prediction_id'")
    """
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [], [RejectedRecord("invalid_json", f"not valid JSON: {exc}", None)]
    if isinstance(decoded, dict) and "records" in decoded:
        decoded = decoded["records"]
    if isinstance(decoded, dict):
        try:
            return [_check_prediction(decoded)], []
        except RecordError as exc:
            return [], [RejectedRecord("schema_violation", str(exc), None)]
    if not isinstance(decoded, list):
        return [], [
            RejectedRecord(
                "invalid_shape",
                f"expected a JSON object or array, got {type(decoded).__name__}",
                None,
            )
        ]
    valid: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for i, item in enumerate(decoded):
        try:
            valid.append(_check_prediction(item))
        except RecordError as exc:
            rejected.append(RejectedRecord("schema_violation", f"record {i}: {exc}", i))
    return valid, rejected


def _check_prediction(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    for name in _REQUIRED:
        if name not in record:
            raise RecordError(f"missing required field '{name}'")
    if not isinstance(record["prediction_id"], str | int) or isinstance(
        record["prediction_id"], bool
    ):
        raise RecordError("field 'prediction_id' must be a string or an integer")
    if not isinstance(record["model"], str) or not record["model"]:
        raise RecordError("field 'model' must be a non-empty string")
    if not isinstance(record["model_version"], str | int):
        raise RecordError("field 'model_version' must be a string or an integer")
    ts = record["timestamp"]
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 0 <= ts < 1e11:
        raise RecordError("field 'timestamp' must be epoch seconds (a number)")
    if not isinstance(record["features"], dict):
        raise RecordError("field 'features' must be an object")
    return record
