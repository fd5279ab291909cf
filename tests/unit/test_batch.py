"""`RecordBatch.from_records` builds the same columns as the record-by-record definition.

The columns are gathered in C-level passes when the records share one key layout (the usual
case off the wire) and record by record otherwise; hypothesis generates both kinds of batches
with data shaped like users' data (absent keys, nulls, numbers as strings, booleans as
true/True/1, extra features, optional fields on some records only) and compares every column
with `reference`, which is the plain definition (the implementation before the fast paths).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.detectors.batch import (
    MAX_EXTRA_FEATURES,
    MAX_PROBABILITY_CLASSES,
    RecordBatch,
    parse_timestamp,
)
from driftline.detectors.normalise import boolean_column, category_column, numeric_value

SCHEMA = {"x": "numeric", "y": "numeric", "c": "categorical", "b": "boolean"}
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _float_column(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    return np.array([numeric_value(v) for v in values], dtype=np.float64)


def _score(record: Mapping[str, Any]) -> float:
    score = record.get("score")
    if score is not None:
        return numeric_value(score)
    probabilities = record.get("probabilities")
    if not probabilities:
        return math.nan
    predicted = record.get("prediction")
    if predicted is not None:
        for key in (predicted, str(predicted)):
            if key in probabilities:
                return numeric_value(probabilities[key])
    return max(numeric_value(p) for p in probabilities.values())


def reference(records: Sequence[Mapping[str, Any]], schema: Mapping[str, str]) -> RecordBatch:
    """Record by record, one field at a time: what `from_records` must equal."""
    n = len(records)
    feats = [r.get("features") or {} for r in records]
    union: set[Any] = set().union(*feats)
    absent = {}
    for name in schema:
        mask = np.array([name not in f for f in feats], dtype=bool)
        if mask.any() or (n == 0):
            absent[name] = mask
    extra_names = sorted((k for k in union if k not in schema), key=str)[:MAX_EXTRA_FEATURES]
    extra = {str(k): np.array([k in f for f in feats], dtype=bool) for k in extra_names}
    prediction = np.empty(n, dtype=object)
    prediction[:] = [r.get("prediction") for r in records]
    error = np.empty(n, dtype=object)
    error[:] = [r.get("error") or None for r in records]
    score = None
    if any("score" in r or "probabilities" in r for r in records):
        score = np.array([_score(r) for r in records], dtype=np.float64)
    attr_rows = [r.get("attributions") for r in records]
    attributions = None
    if any(attr_rows):
        names = sorted({k for a in attr_rows if a for k in a})
        attributions = {
            k: _float_column([a.get(k) if a else None for a in attr_rows]) for k in names
        }
    prob_rows = [r.get("probabilities") for r in records]
    probabilities = None
    classes: list[str] = []
    for p in prob_rows:
        for k in p or {}:
            if str(k) not in classes and len(classes) < MAX_PROBABILITY_CLASSES:
                classes.append(str(k))
    if classes:
        probabilities = {
            name: _float_column(
                [
                    next((v for k, v in p.items() if str(k) == name), None) if p else None
                    for p in prob_rows
                ]
            )
            for name in classes
        }
    return RecordBatch(
        numeric={
            k: _float_column([f.get(k) for f in feats]) for k, t in schema.items() if t == "numeric"
        },
        categorical={
            k: (boolean_column if t == "boolean" else category_column)([f.get(k) for f in feats])
            for k, t in schema.items()
            if t != "numeric"
        },
        event_time=np.array(
            [parse_timestamp(r.get("timestamp")) for r in records], dtype=np.float64
        ),
        prediction=prediction,
        score=score,
        latency_seconds=_float_column([r.get("latency_ms") for r in records]) / 1000.0,
        error=error,
        attributions=attributions,
        probabilities=probabilities,
        absent=absent,
        extra=extra,
    )


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and list(a) == list(b)
            and all(same(a[k], b[k]) for k in a)
        )
    if a is None or b is None:
        return a is None and b is None
    if a.dtype.kind == "f":
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return (
        a.dtype == b.dtype
        and a.tolist() == b.tolist()
        and [type(v) for v in a.tolist()] == [type(v) for v in b.tolist()]
    )


def assert_same(records: list[dict[str, Any]]) -> None:
    got, want = RecordBatch.from_records(records, SCHEMA), reference(records, SCHEMA)
    for name in (
        "numeric",
        "categorical",
        "event_time",
        "prediction",
        "score",
        "latency_seconds",
        "error",
        "attributions",
        "probabilities",
        "extra",
    ):
        assert same(getattr(got, name), getattr(want, name)), name
    # absent: the reference lists every monitored key some record lacks (all, in an empty batch)
    assert same(got.absent or {}, want.absent), "absent"


numbers = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False), st.integers(-5, 5), st.sampled_from([0.0, 1.0, 1e15])
)
values = st.one_of(
    numbers,
    st.none(),
    st.sampled_from(["1.5", "abc", "", "null", "NaN", "true", "True", "1", "FR", " de "]),
    st.booleans(),
)
feature_keys = st.sampled_from(["x", "y", "c", "b", "new_1", "new_2"])


@st.composite
def record(draw: st.DrawFn, layout: dict[str, Any]) -> dict[str, Any]:
    """A record; with a fixed `layout` every record of the batch has the same keys."""
    keys = layout["features"] if layout else draw(st.lists(feature_keys, unique=True))
    r: dict[str, Any] = {
        "prediction_id": "p",
        "model": "m",
        "model_version": "1",
        "timestamp": draw(st.one_of(st.floats(0, 1e10), st.integers(0, 10), st.none())),
        "features": {k: draw(values) for k in keys},
    }
    optional = (
        layout["optional"]
        if layout
        else draw(
            st.sets(
                st.sampled_from(
                    ["prediction", "score", "probabilities", "latency_ms", "error", "attributions"]
                )
            )
        )
    )
    if "prediction" in optional:
        r["prediction"] = draw(st.one_of(st.sampled_from(["ok", "fraud", 0, 1, True]), st.none()))
    if "score" in optional:
        r["score"] = draw(st.one_of(st.floats(0, 1), st.sampled_from([0, 1, None, "0.5"])))
    if "probabilities" in optional:
        r["probabilities"] = draw(
            st.dictionaries(st.sampled_from(["ok", "fraud", "0", "1"]), st.floats(0, 1), max_size=3)
        )
    if "latency_ms" in optional:
        r["latency_ms"] = draw(st.one_of(numbers, st.none()))
    if "error" in optional:
        r["error"] = draw(st.one_of(st.none(), st.sampled_from(["", "timeout: 3 s", "oom"])))
    if "attributions" in optional:
        r["attributions"] = draw(
            st.dictionaries(st.sampled_from(["x", "y"]), st.floats(-1, 1), max_size=2)
        )
    return r


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    layout: dict[str, Any] = {}
    if draw(st.booleans()):  # one layout for every record: the fast path
        layout = {
            "features": draw(st.lists(feature_keys, unique=True)),
            "optional": draw(
                st.sets(
                    st.sampled_from(
                        [
                            "prediction",
                            "score",
                            "probabilities",
                            "latency_ms",
                            "error",
                            "attributions",
                        ]
                    )
                )
            ),
        }
    return draw(st.lists(record(layout), max_size=12))


@EXAMPLES
@given(batches())
def test_columns_equal_the_record_by_record_definition(records: list[dict[str, Any]]) -> None:
    assert_same(records)


def test_the_usual_batch_of_one_layout_and_a_ragged_one() -> None:
    from driftline.simulate import simulate

    records, _ = simulate(500, seed=5)
    assert_same(records)
    ragged = [
        dict(r, features={k: v for k, v in r["features"].items() if hash(k) % 3 or i % 2})
        for i, r in enumerate(records)
    ]
    assert_same(ragged)
    assert_same(
        [
            {**r, "features": {**r["features"], "x": 1.0, "c": "a", "b": "True", "y": None}}
            for r in records[:50]
        ]
    )
