"""The fast and the explaining checker accept and reject exactly what the JSON Schemas do.

Hypothesis generates records near every bound of config/schemas/*.json (lengths 255/256/257,
1e15 and the next double, 64-bit integer limits, integral floats, booleans where numbers go,
wrong types in every field, missing fields); each is judged by jsonschema, by the msgspec fast
path, by the hand-written checker and by the public decoder, alone and inside a batch message.
JSON has no NaN or Infinity, so none are generated (a literal beyond a double is `invalid_json`,
tested in test_records.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.streams.formats import parse_labels, parse_predictions
from driftline.streams.formats.contract import (
    LABEL_TYPE,
    PREDICTION_TYPE,
    RecordError,
    check_label,
    check_prediction,
    may_hold_nul,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "config" / "schemas"
PREDICTION_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((SCHEMAS / "prediction.v1.schema.json").read_text())
)
LABEL_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((SCHEMAS / "label.v1.schema.json").read_text())
)
FAST = {
    "prediction": msgspec.json.Decoder(PREDICTION_TYPE),
    "label": msgspec.json.Decoder(LABEL_TYPE),
}
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- values near every bound ------------------------------------------------------------------

_chars = st.characters(blacklist_categories=("Cs",))  # no lone surrogates: not encodable
_lengths = st.sampled_from([0, 1, 2, 255, 256, 257, 1023, 1024, 1025])
long_text = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀"]), _lengths)
# NUL ("\u0000" on the wire) is part of every string strategy: PostgreSQL cannot store it, so
# the contract rejects it anywhere in a record (and the fast path must not let it through).
with_nul = st.sampled_from(["\x00", "a\x00", "\x00b", "k\x00ey"])
text = st.one_of(st.text(_chars, max_size=6), long_text, with_nul)
ints = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(
        [10**15, 10**15 + 1, -(10**15), -(10**15) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]
    ),
    st.sampled_from([10**11, 10**11 - 1, 2**64, 10**30, -(10**30)]),
    st.integers(),
)
floats = st.one_of(
    st.sampled_from(
        [
            0.0,
            -0.0,
            0.5,
            1.0,
            7.0,
            -1.0,
            1e15,
            -1e15,
            math.nextafter(1e15, math.inf),
            math.nextafter(-1e15, -math.inf),
            1e11,
            math.nextafter(1e11, 0.0),
            1.0000000000000002,
            9.2233720368547758e18,
            1e300,
            -1e300,
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, text)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
names = st.one_of(st.text(_chars, min_size=1, max_size=8), long_text, with_nul)


def field_value(good: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """A plausible value 19 times in 20, else one near a bound or of any type: about half of
    the generated records are valid, so both sides of every bound are exercised."""
    return st.integers(0, 19).flatmap(lambda roll: hostile if roll == 0 else good)


def entries(good: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    keys = st.one_of(st.text(_chars, min_size=1, max_size=8), st.just("k" * 256), with_nul)
    return field_value(
        st.dictionaries(keys, field_value(good, hostile), max_size=4),
        st.one_of(st.dictionaries(names, st.one_of(good, hostile), max_size=4), anything),
    )


short = st.one_of(st.text(_chars, min_size=1, max_size=6), st.just("é" * 256), with_nul)
small_numbers = st.one_of(
    st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)
good_values = st.one_of(
    st.none(), st.booleans(), small_numbers, short, st.sampled_from(["😀" * 1024, 10**15, -1e15])
)
edges = st.sampled_from(  # one step past (or exactly at) each bound of the schemas
    [
        "",
        "a" * 256,
        "é" * 257,
        "😀" * 1024,
        "a" * 1025,
        10**15,
        10**15 + 1,
        -(10**15) - 1,
        math.nextafter(1e15, math.inf),
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        1e11,
        7.0,
        -1,
        1.5,
        True,
        None,
        [],
        {},
    ]
)
hostile = st.one_of(edges, edges, scalars, anything)
PREDICTION_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "prediction_id": field_value(st.one_of(short, st.integers(0, 10**6)), hostile),
    "model": field_value(short, hostile),
    "model_version": field_value(st.one_of(short, st.integers(0, 99)), hostile),
    "timestamp": field_value(st.floats(0, 2e9), hostile),
    "features": entries(good_values, hostile),
    "prediction": field_value(good_values, hostile),
    "score": field_value(st.floats(0, 1), hostile),
    "probabilities": entries(st.floats(0, 1), hostile),
    "attributions": entries(st.floats(-1e3, 1e3), hostile),
    "latency_ms": field_value(st.floats(0, 1e4), hostile),
    "error": field_value(st.one_of(short, st.none()), hostile),
}
REQUIRED = {"prediction_id", "model", "model_version", "timestamp", "features"}
LABEL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "prediction_id": field_value(st.one_of(short, st.integers(0, 10**6)), hostile),
    "label": field_value(
        st.one_of(st.booleans(), small_numbers, short), st.one_of(hostile, st.none())
    ),
    "timestamp": field_value(st.floats(0, 2e9), hostile),
}


@st.composite
def records(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], required: set[str]) -> Any:
    record = {}
    for name, strategy in fields.items():
        # required fields are missing 1 time in 40, optional ones present half of the time
        if draw(st.integers(0, 39)) < (39 if name in required else 20):
            record[name] = draw(strategy)
    if draw(st.booleans()):
        extra = draw(
            st.text(_chars, max_size=5).filter(lambda k: k not in fields and k != "records")
        )
        record[extra] = draw(anything)
    return record


def wire(value: Any) -> bytes:
    """JSON bytes as a producer sends them (Python's encoder: exact ints, shortest floats)."""
    return json.dumps(value, allow_nan=False).encode()


def canonical(record: dict[str, Any]) -> str:
    """Comparable form that keeps int vs float apart (1 != 1.0 here)."""
    return json.dumps(record, sort_keys=True, allow_nan=False)


def judge(record: Any, kind: str) -> None:
    schema = PREDICTION_SCHEMA if kind == "prediction" else LABEL_SCHEMA
    check = check_prediction if kind == "prediction" else check_label
    parse = parse_predictions if kind == "prediction" else parse_labels
    payload = wire(record)
    seen = json.loads(payload)  # what a consumer decodes
    expected = schema.is_valid(seen)

    try:
        explained: dict[str, Any] | None = check(seen)
    except RecordError as exc:
        explained = None
        assert str(exc), "a rejection always has a reason"
    assert (explained is not None) == expected, (seen, list(schema.iter_errors(seen))[:1])

    fast = None
    if not may_hold_nul(payload):  # the decoders' gate: such a message is hand-checked
        try:
            fast = FAST[kind].decode(payload)
        except msgspec.ValidationError:
            fast = None
    if fast is not None:  # the fast path may be stricter, never more lenient
        assert expected, seen
        assert explained is not None and canonical(fast) == canonical(explained)

    valid, rejected = parse(payload)
    assert len(valid) == int(expected) and len(rejected) == int(not expected)
    if expected:
        assert explained is not None and canonical(valid[0]) == canonical(explained)
    else:
        assert rejected[0].kind == "schema_violation" and rejected[0].index is None


@EXAMPLES
@given(records(PREDICTION_FIELDS, REQUIRED))
def test_prediction_checkers_agree_with_the_schema(record: Any) -> None:
    judge(record, "prediction")


@EXAMPLES
@given(records(LABEL_FIELDS, {"prediction_id", "label", "timestamp"}))
def test_label_checkers_agree_with_the_schema(record: Any) -> None:
    judge(record, "label")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(records(PREDICTION_FIELDS, REQUIRED), max_size=6),
    st.booleans(),
)
def test_a_batch_keeps_exactly_the_schema_valid_records(batch: list[Any], enveloped: bool) -> None:
    payload = wire({"records": batch} if enveloped else batch)
    seen = json.loads(payload)
    seen = seen["records"] if enveloped else seen
    valid, rejected = parse_predictions(payload)
    good = [r for r in seen if PREDICTION_SCHEMA.is_valid(r)]
    assert [canonical(r) for r in valid] == [canonical(check_prediction(r)) for r in good]
    assert [r.index for r in rejected] == [
        i for i, r in enumerate(seen) if not PREDICTION_SCHEMA.is_valid(r)
    ]
    assert all(r.reason.startswith(f"record {r.index}: ") for r in rejected)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("features", {f"f{i}": 1.0 for i in range(10_001)}),
        ("probabilities", {f"c{i}": 0.0 for i in range(10_001)}),
        ("attributions", {f"f{i}": 0.0 for i in range(10_001)}),
    ],
)
def test_more_than_ten_thousand_entries_are_rejected_by_all(field: str, value: Any) -> None:
    base = {"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 1.0}
    base.setdefault("features", {})
    record = {**base, field: value}
    assert not PREDICTION_SCHEMA.is_valid(record)
    with pytest.raises(msgspec.ValidationError):
        FAST["prediction"].decode(wire(record))
    valid, rejected = parse_predictions(wire(record))
    assert valid == [] and "more than 10000" in rejected[0].reason
    smaller = {**record, field: dict(list(value.items())[:10_000])}
    assert (
        PREDICTION_SCHEMA.is_valid(smaller) and len(parse_predictions(wire(smaller)).records) == 1
    )


EDGE_VALUES: list[Any] = [
    "",
    "x",
    "a" * 256,
    "é" * 257,
    "😀" * 1024,
    "a" * 1025,
    0,
    -1,
    1,
    10**15,
    10**15 + 1,
    -(10**15),
    -(10**15) - 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    10**11,
    0.0,
    -0.0,
    0.5,
    1.0,
    1.5,
    7.0,
    1e15,
    math.nextafter(1e15, math.inf),
    -1e15,
    math.nextafter(-1e15, -math.inf),
    math.nextafter(1e11, 0.0),
    1e11,
    9.3e18,
    True,
    False,
    None,
    [],
    [1],
    {},
    {"a": 1},
]
GOOD_PREDICTION = {
    "prediction_id": "p-1",
    "model": "fraud",
    "model_version": "3",
    "timestamp": 1_767_225_600.5,
    "features": {"amount": 12.0, "country": "FR"},
    "prediction": 1,
    "score": 0.5,
    "probabilities": {"0": 0.5, "1": 0.5},
    "attributions": {"amount": 0.1},
    "latency_ms": 3.0,
    "error": None,
}
GOOD_LABEL = {"prediction_id": "p-1", "label": 1, "timestamp": 1_767_225_600.5}


def test_every_field_at_every_edge_agrees_with_the_schema() -> None:
    """Deterministic sweep: each field (and each kind of map entry, value and name) set to
    each edge value, one at a time, judged like the generated records."""
    for name in GOOD_PREDICTION:
        for value in EDGE_VALUES:
            judge({**GOOD_PREDICTION, name: value}, "prediction")
    for name in ("features", "probabilities", "attributions"):
        for value in EDGE_VALUES:
            judge({**GOOD_PREDICTION, name: {"k": value}}, "prediction")
        for key in ("k" * 256, "é" * 257):
            judge({**GOOD_PREDICTION, name: {key: 0.5}}, "prediction")
    for name in GOOD_LABEL:
        for value in EDGE_VALUES:
            judge({**GOOD_LABEL, name: value}, "label")
    for name in REQUIRED:
        judge({k: v for k, v in GOOD_PREDICTION.items() if k != name}, "prediction")
    for name in GOOD_LABEL:
        judge({k: v for k, v in GOOD_LABEL.items() if k != name}, "label")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prediction_id": "p\x00"}, "prediction_id"),
        ({"model": "m\x00"}, "model"),
        ({"model_version": "\x00"}, "model_version"),
        ({"features": {"x\x00": 1.0}}, "features"),
        ({"features": {"x": "FR\x00"}}, "features.x"),
        ({"prediction": "yes\x00"}, "prediction"),
        ({"error": "timeout\x00"}, "error"),
        ({"probabilities": {"\x00": 0.5}}, "probabilities"),
    ],
)
def test_nul_in_any_string_is_rejected_by_schema_and_decoders_with_a_reason(
    change: dict[str, Any], field: str
) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL (UntranslatableCharacter): a record with
    one would stall every sink that stores it, so the contract rejects it, naming the field."""
    record = {
        "prediction_id": "p", "model": "m", "model_version": "1", "timestamp": 1.0,
        "features": {"x": 1.0}, **change,
    }  # fmt: skip
    assert not PREDICTION_SCHEMA.is_valid(record)
    for payload in (wire(record), wire([record]), wire({"records": [record, record]})):
        valid, rejected = parse_predictions(payload)
        assert valid == [] and rejected, payload
        assert all(r.kind == "schema_violation" for r in rejected)
        assert f"'{field}'" in rejected[0].reason and "NUL" in rejected[0].reason
    label = {"prediction_id": "p", "label": "fraud\x00", "timestamp": 1.0}
    assert not LABEL_SCHEMA.is_valid(label)
    assert "NUL" in parse_labels(wire(label)).rejected[0].reason
