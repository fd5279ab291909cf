"""driftline's own JSON: one record, a JSON array of records, or `{"records": [...]}`.

The fast path hands the whole message to a msgspec decoder typed with the contract
(`contract.PREDICTION_TYPE`): decoding and every field check run in C, and a message whose
records are all valid costs about what `orjson.loads` alone costs. A message with any bad
record falls back to a plain decode and the hand-written checker, record by record, so the good
records of a batch are kept and each bad one is rejected with its index and reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from driftline.streams.formats.base import (
    Decoded,
    GuardedDecoder,
    Headers,
    RejectedRecord,
    never_raises,
)
from driftline.streams.formats.contract import (
    LABEL_TYPE,
    PREDICTION_TYPE,
    RecordError,
    check_label,
    check_prediction,
    json_type,
    may_hold_nul,
)

__all__ = [
    "DriftlineJson",
    "RecordKind",
    "decode_json",
    "decode_labels",
    "decode_predictions",
    "records_from_object",
]

RecordKind = Literal["prediction", "label"]


@dataclass(frozen=True)
class _Spec:
    one_or_many: msgspec.json.Decoder[Any]
    envelope: msgspec.json.Decoder[Any]
    only_records: msgspec.json.Decoder[Any]  # the envelope without any other key
    one: msgspec.json.Decoder[Any]
    check: Any  # Callable[[Any], dict[str, Any]]


def _spec(record_type: Any, check: Any) -> _Spec:
    envelope = msgspec.defstruct("Envelope", [("records", list[record_type])])
    only_records = msgspec.defstruct(
        "OnlyRecords", [("records", list[record_type])], forbid_unknown_fields=True
    )
    return _Spec(
        msgspec.json.Decoder(record_type | list[record_type]),
        msgspec.json.Decoder(envelope),
        msgspec.json.Decoder(only_records),
        msgspec.json.Decoder(record_type),
        check,
    )


_SPECS: dict[str, _Spec] = {
    "prediction": _spec(PREDICTION_TYPE, check_prediction),
    "label": _spec(LABEL_TYPE, check_label),
}
_PLAIN = msgspec.json.Decoder()
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_RECORDS_KEY = b'"records"'
_ENVELOPE_HEAD = 32  # where `"records"` is looked for in a batch message (after `{`, spaces)


def decode_json(payload: bytes | None, kind: RecordKind = "prediction") -> Decoded:
    """Decode one message of driftline JSON into valid records and rejections.

    >>> ok, bad = decode_json(b'[{"prediction_id": "1", "model": "fraud", '
    ...     b'"model_version": "3", "timestamp": 1.0, "features": {"x": 1}}, {"model": "fraud"}]')
    >>> len(ok), bad[0].reason
    (1, "record 1: missing required field 'prediction_id'")
    """
    return _FAST[kind](payload)


_new = tuple.__new__  # builds a Decoded without NamedTuple's Python-level __new__ (hot path)
_FAILED = (msgspec.ValidationError, msgspec.DecodeError)


def _fast_path(kind: RecordKind) -> Callable[[bytes | None], Decoded]:
    spec = _SPECS[kind]
    one_or_many, envelope = spec.one_or_many.decode, spec.envelope.decode
    only_records = spec.only_records.decode

    def decode(payload: bytes | None) -> Decoded:
        if not payload:
            return Decoded([], [RejectedRecord("invalid_json", "empty message", None)])
        if may_hold_nul(payload):  # msgspec would accept NUL in strings: the checker decides
            return _slow_path(payload, kind)
        if _RECORDS_KEY in payload[:_ENVELOPE_HEAD]:
            # A batch message: `{"records": [...]}` and nothing else can never be a record
            # itself, so trying it first gives what the order below gives, without first
            # parsing the whole batch as a would-be record.
            try:
                return _new(Decoded, (only_records(payload).records, []))
            except _FAILED:
                pass
        try:
            decoded = one_or_many(payload)
            if type(decoded) is not list:
                decoded = [decoded]
            return _new(Decoded, (decoded, []))
        except _FAILED:
            pass
        if _RECORDS_KEY in payload:
            try:
                return _new(Decoded, (envelope(payload).records, []))
            except _FAILED:
                pass
        # some record is bad, or the bytes are not JSON: find out which, slowly
        return _slow_path(payload, kind)

    decode.__doc__ = f"`decode_json(payload, {kind!r})` without the dispatch."
    return never_raises(decode)


def _slow_path(payload: bytes, kind: RecordKind) -> Decoded:
    """A message the fast path refused. An array is split into raw items first, so each
    record still gets the typed decoder and only the bad ones the hand-written checker."""
    spec = _SPECS[kind]
    try:
        items = _RAW_ITEMS.decode(payload)
    except msgspec.ValidationError:
        items = None  # valid JSON, not an array
    except msgspec.DecodeError as exc:
        return Decoded([], [RejectedRecord("invalid_json", f"not valid JSON: {exc}", None)])
    if items is None:
        try:
            value = _PLAIN.decode(payload)
        except _FAILED as exc:
            return Decoded([], [RejectedRecord("invalid_json", f"not valid JSON: {exc}", None)])
        return records_from_object(value, kind)
    one, check = spec.one.decode, spec.check
    valid: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for i, raw in enumerate(items):
        if not may_hold_nul(bytes(raw)):
            try:
                valid.append(one(raw))
                continue
            except _FAILED:
                pass
        try:
            valid.append(check(_PLAIN.decode(raw)))
        except RecordError as exc:
            rejected.append(RejectedRecord("schema_violation", f"record {i}: {exc}", i))
        except _FAILED as exc:  # a number beyond a double: only this record is lost
            rejected.append(RejectedRecord("invalid_json", f"record {i}: not valid JSON: {exc}", i))
    return Decoded(valid, rejected)


def records_from_object(value: Any, kind: RecordKind = "prediction") -> Decoded:
    """The same as `decode_json`, from an already decoded JSON value (the hand-checked path;
    adapters that build records themselves use it too)."""
    check = _SPECS[kind].check
    if type(value) is dict and "records" in value:
        try:  # an object with "records" is a batch, unless it is a valid record itself
            return Decoded([check(value)], [])
        except RecordError:
            pass
        value = value["records"]
        if type(value) is not list:
            return Decoded(
                [],
                [
                    RejectedRecord(
                        "invalid_shape",
                        f"field 'records' must be an array, got {json_type(value)}",
                        None,
                    )
                ],
            )
    if type(value) is dict:
        try:
            return Decoded([check(value)], [])
        except RecordError as exc:
            return Decoded([], [RejectedRecord("schema_violation", str(exc), None)])
    if type(value) is not list:
        return Decoded(
            [],
            [
                RejectedRecord(
                    "invalid_shape",
                    f"expected a JSON object or array, got {json_type(value)}",
                    None,
                )
            ],
        )
    valid: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for i, item in enumerate(value):
        try:
            valid.append(check(item))
        except RecordError as exc:
            rejected.append(RejectedRecord("schema_violation", f"record {i}: {exc}", i))
    return Decoded(valid, rejected)


_FAST: dict[str, Callable[[bytes | None], Decoded]] = {
    "prediction": _fast_path("prediction"),
    "label": _fast_path("label"),
}
decode_predictions = _FAST["prediction"]
decode_labels = _FAST["label"]


@dataclass(frozen=True)
class DriftlineJson(GuardedDecoder):
    """Decoder for driftline's JSON records (`formats.predictions: driftline`, the default).

    Headers are ignored.

    >>> DriftlineJson("label").decode(b'{"prediction_id": "p", "label": true, "timestamp": 2}')
    Decoded(records=[{'prediction_id': 'p', 'label': True, 'timestamp': 2.0}], rejected=[])
    """

    kind: RecordKind = "prediction"

    def decode(self, value: bytes | None, headers: Headers = None) -> Decoded:
        return _FAST[self.kind](value)
