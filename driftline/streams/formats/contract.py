"""The record contract, field by field: one set of bounds, two equivalent checkers.

`config/schemas/prediction.v1.schema.json` and `label.v1.schema.json` are the published
contract. They are enforced here twice, and a property-based test
(`tests/unit/test_formats_contract.py`, hypothesis against jsonschema) proves that both accept
and reject exactly what the schemas do:

* `PREDICTION_TYPE` / `LABEL_TYPE`: msgspec TypedDicts with the same bounds, for the fast path.
  msgspec decodes and validates a whole message in C (about as fast as `orjson.loads` alone),
  but it is all-or-nothing per message and its messages do not follow our wording.
* `check_prediction` / `check_label`: hand-written, run on a message the fast path refused, to
  keep the good records of a batch and to say which field of which record is wrong.

msgspec is never more lenient than the schema; where it is stricter (an integral float such as
`1.0` as an id, which JSON Schema counts as an integer) the hand-written checker decides. Both
return the same normalised dict: unknown top-level keys dropped, `timestamp`, `score`,
`latency_ms`, probabilities and attributions as float, integral-float ids as int.

Bounds (documented in docs/FORMATS.md; values beyond them are rejected, never clipped):

* every number (features, prediction, label, attributions, latency) within ±1e15
  (`MAX_ABS_NUMBER`): beyond it a sketch's sum of squares could overflow to inf;
  JSON has no NaN/Infinity, and a literal beyond a double (1e400) is not valid JSON here;
* integer ids and versions within a signed 64-bit integer;
* `prediction_id`, `model` 1-256 characters, `model_version` 0-256, feature/class names up to
  256, string values (categories, prediction, error, label) up to 1024 (`MAX_VALUE_LENGTH`);
* at most 10,000 entries in `features`, `probabilities`, `attributions`;
* `timestamp` epoch seconds in [0, 1e11); its bound relative to now is the pipeline's job;
* `score` and probabilities in [0, 1]; `latency_ms` in [0, 1e15];
* no string (id, model, version, name, category, prediction, error, label) contains NUL
  (`\\u0000`): PostgreSQL's text and jsonb cannot store it (UntranslatableCharacter), so a
  record with one would stall every sink that writes it. msgspec has no cheap test for it (a
  regex per string costs 9x the decode), so the decoders send any message whose bytes hold
  `\\u0000` (the only way JSON spells NUL: a raw NUL byte is not valid JSON) to the
  hand-written checker: `may_hold_nul`.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypedDict

import msgspec

__all__ = [
    "ID_MAX",
    "ID_MIN",
    "LABEL_TYPE",
    "MAX_ABS_NUMBER",
    "MAX_ENTRIES",
    "MAX_NAME_LENGTH",
    "MAX_VALUE_LENGTH",
    "PREDICTION_TYPE",
    "TIMESTAMP_LIMIT",
    "RecordError",
    "check_label",
    "check_prediction",
    "json_type",
    "may_hold_nul",
]

MAX_ABS_NUMBER = 1e15
_MAX_ABS_INT = 10**15
ID_MIN, ID_MAX = -(2**63), 2**63 - 1
MAX_NAME_LENGTH = 256
MAX_VALUE_LENGTH = 1024
MAX_ENTRIES = 10_000
TIMESTAMP_LIMIT = 1e11  # exclusive; year 5138


class RecordError(ValueError):
    """A record breaks the contract; the message names the field and is the DLQ reason."""


_NUL_ESCAPE = b"\\u0000"


def may_hold_nul(payload: bytes) -> bool:
    """Whether a JSON message may decode to a string with NUL in it (then it skips the msgspec
    fast path: the hand-written checker rejects such strings, naming the field).

    >>> may_hold_nul(b'{"model": "m\\\\u0000"}'), may_hold_nul(b'{"model": "m"}')
    (True, False)
    """
    # a backslash first: one memchr, where the six-byte pattern is a slow scan of digits
    return b"\\" in payload and _NUL_ESCAPE in payload


def _no_nul(value: str, field: str) -> str:
    if "\x00" in value:
        raise RecordError(
            f"field '{field}' contains the NUL character (\\u0000), which PostgreSQL cannot store"
        )
    return value


# -- the fast path: msgspec types with the same bounds ---------------------------------------

_Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH)]
_IdStr = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
_IdInt = Annotated[int, msgspec.Meta(ge=ID_MIN, le=ID_MAX)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_VALUE_LENGTH)]
_Int = Annotated[int, msgspec.Meta(ge=-_MAX_ABS_INT, le=_MAX_ABS_INT)]
_Float = Annotated[float, msgspec.Meta(ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
_Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_Value = _Int | _Float | _Text | bool | None
_Entries = msgspec.Meta(max_length=MAX_ENTRIES)


class PREDICTION_TYPE(TypedDict):  # noqa: N801 - a type used as a constant
    prediction_id: _IdStr | _IdInt
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
    model_version: _Name | _IdInt
    timestamp: Annotated[float, msgspec.Meta(ge=0.0, lt=TIMESTAMP_LIMIT)]
    features: Annotated[dict[_Name, _Value], _Entries]
    prediction: NotRequired[_Value]
    score: NotRequired[_Unit]
    probabilities: NotRequired[Annotated[dict[_Name, _Unit], _Entries]]
    attributions: NotRequired[Annotated[dict[_Name, _Float], _Entries]]
    latency_ms: NotRequired[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_ABS_NUMBER)]]
    error: NotRequired[_Text | None]


class LABEL_TYPE(TypedDict):  # noqa: N801
    prediction_id: _IdStr | _IdInt
    label: _Int | _Float | _Text | bool
    timestamp: Annotated[float, msgspec.Meta(ge=0.0, lt=TIMESTAMP_LIMIT)]


# -- the explaining path: hand-written, same bounds, reasons that name the field -------------

_PREDICTION_REQUIRED = ("prediction_id", "model", "model_version", "timestamp", "features")
_LABEL_REQUIRED = ("prediction_id", "label", "timestamp")


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons.

    >>> json_type(True), json_type(1.5), json_type([])
    ('boolean', 'number', 'array')
    """
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def check_prediction(record: Any) -> dict[str, Any]:
    """The normalised prediction record, or `RecordError` naming the field.

    >>> check_prediction({"prediction_id": 7.0, "model": "m", "model_version": 2,
    ...     "timestamp": 1, "features": {"x": 1}, "extra": "dropped"})
    {'prediction_id': 7, 'model': 'm', 'model_version': 2, 'timestamp': 1.0, 'features': {'x': 1}}
    >>> try:
    ...     check_prediction({"prediction_id": "a", "model": "m", "model_version": True,
    ...                       "timestamp": 1, "features": {}})
    ... except RecordError as exc:
    ...     print(exc)
    field 'model_version' must be a string of at most 256 characters or an integer, got boolean
    """
    if type(record) is not dict:
        raise RecordError(f"expected a JSON object, got {json_type(record)}")
    for name in _PREDICTION_REQUIRED:
        if name not in record:
            raise RecordError(f"missing required field '{name}'")
    out: dict[str, Any] = {
        "prediction_id": _identifier(record["prediction_id"], "prediction_id", 1),
        "model": _model(record["model"]),
        "model_version": _identifier(record["model_version"], "model_version", 0),
        "timestamp": _timestamp(record["timestamp"]),
        "features": _features(record["features"]),
    }
    if "prediction" in record:
        out["prediction"] = _value(record["prediction"], "prediction", nullable=True)
    if "score" in record:
        out["score"] = _number(record["score"], "score", 0.0, 1.0)
    if "probabilities" in record:
        out["probabilities"] = _numbers(record["probabilities"], "probabilities", 0.0, 1.0)
    if "attributions" in record:
        out["attributions"] = _numbers(
            record["attributions"], "attributions", -MAX_ABS_NUMBER, MAX_ABS_NUMBER
        )
    if "latency_ms" in record:
        out["latency_ms"] = _number(record["latency_ms"], "latency_ms", 0.0, MAX_ABS_NUMBER)
    if "error" in record:
        error = record["error"]
        if error is not None and (type(error) is not str or len(error) > MAX_VALUE_LENGTH):
            raise RecordError(
                f"field 'error' must be null or a string of at most {MAX_VALUE_LENGTH} "
                f"characters, got {_show(error)}"
            )
        out["error"] = error if error is None else _no_nul(error, "error")
    return out


def check_label(record: Any) -> dict[str, Any]:
    """The normalised label record, or `RecordError` naming the field.

    >>> check_label({"prediction_id": "p-1", "label": 1, "timestamp": 5})
    {'prediction_id': 'p-1', 'label': 1, 'timestamp': 5.0}
    >>> try:
    ...     check_label({"prediction_id": "p-1", "label": None, "timestamp": 5})
    ... except RecordError as exc:
    ...     print(exc)
    field 'label' must be a number within ±1e+15, a string of at most 1024 characters or a boolean, got null
    """
    if type(record) is not dict:
        raise RecordError(f"expected a JSON object, got {json_type(record)}")
    for name in _LABEL_REQUIRED:
        if name not in record:
            raise RecordError(f"missing required field '{name}'")
    return {
        "prediction_id": _identifier(record["prediction_id"], "prediction_id", 1),
        "label": _value(record["label"], "label", nullable=False),
        "timestamp": _timestamp(record["timestamp"]),
    }


def _show(value: Any) -> str:
    """A short description of a bad value for a reason (never the whole value)."""
    if type(value) is float:
        return f"{value:.6g}"
    if type(value) is int:
        return str(value) if abs(value) < 10**20 else "an integer of more than 20 digits"
    if type(value) is str:
        return f"a string of {len(value)} characters"
    return json_type(value)


def _identifier(value: Any, field: str, min_length: int) -> str | int:
    kind = type(value)
    if kind is str and min_length <= len(value) <= MAX_NAME_LENGTH:
        return _no_nul(str(value), field)
    if kind is int and ID_MIN <= value <= ID_MAX:
        return int(value)
    if kind is float and value.is_integer() and ID_MIN <= value <= ID_MAX:
        return int(value)  # JSON Schema counts 7.0 as an integer; 7 joins with 7
    size = "non-empty " if min_length else ""
    raise RecordError(
        f"field '{field}' must be a {size}string of at most {MAX_NAME_LENGTH} characters "
        f"or an integer, got {_show(value)}"
    )


def _model(value: Any) -> str:
    if type(value) is str and 1 <= len(value) <= MAX_NAME_LENGTH:
        return _no_nul(str(value), "model")
    raise RecordError(
        f"field 'model' must be a non-empty string of at most {MAX_NAME_LENGTH} characters, "
        f"got {_show(value)}"
    )


def _timestamp(value: Any) -> float:
    if type(value) in (int, float) and 0 <= value < TIMESTAMP_LIMIT:
        return float(value)
    raise RecordError(
        f"field 'timestamp' must be epoch seconds (a number in [0, 1e11)), got {_show(value)}"
    )


def _number(value: Any, field: str, low: float, high: float) -> float:
    if type(value) in (int, float) and low <= value <= high:
        return float(value)
    raise RecordError(
        f"field '{field}' must be a number in [{low:g}, {high:g}], got {_show(value)}"
    )


def _value(value: Any, field: str, *, nullable: bool) -> Any:
    """A feature value, prediction or label: bounded number, bounded string, boolean (null)."""
    kind = type(value)
    if kind is float or kind is int:
        if -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER:
            return value
    elif kind is str:
        if len(value) <= MAX_VALUE_LENGTH:
            return _no_nul(value, field)
    elif kind is bool or (value is None and nullable):
        return value
    null = ", a boolean or null" if nullable else " or a boolean"
    raise RecordError(
        f"field '{field}' must be a number within ±{MAX_ABS_NUMBER:g}, a string of at most "
        f"{MAX_VALUE_LENGTH} characters{null}, got {_show(value)}"
    )


def _entries(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise RecordError(f"field '{field}' must be an object, got {json_type(value)}")
    if len(value) > MAX_ENTRIES:
        raise RecordError(f"field '{field}' has {len(value)} entries, more than {MAX_ENTRIES}")
    for name in value:
        if len(name) > MAX_NAME_LENGTH:
            raise RecordError(
                f"field '{field}' has a name of {len(name)} characters, more than {MAX_NAME_LENGTH}"
            )
        if "\x00" in name:
            raise RecordError(
                f"field '{field}' has a name with the NUL character (\\u0000), which PostgreSQL"
                " cannot store"
            )
    return value


def _features(value: Any) -> dict[str, Any]:
    features = _entries(value, "features")
    for name, item in features.items():
        _value(item, f"features.{name}", nullable=True)
    return features


def _numbers(value: Any, field: str, low: float, high: float) -> dict[str, float]:
    entries = _entries(value, field)
    return {name: _number(item, f"{field}.{name}", low, high) for name, item in entries.items()}
