"""The worker's Struct fast path (`formats/structs.py`) gives what `DriftlineJson` gives.

For every message: the same records (as dicts), the same rejections, and the same columns
out of `RecordBatch.from_records`; messages it cannot take (a new feature, a bad record, NUL,
not an envelope) go the usual way and come back as dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.config import Config
from driftline.detectors.batch import RecordBatch
from driftline.streams.formats import parse_predictions, prediction_decoder
from driftline.streams.formats.structs import MAX_FIELDS, StructPredictions

SCHEMA = {"x": "numeric", "y": "numeric", "c": "categorical", "b": "boolean"}
KNOWN = ["b", "c", "x", "y", "z"]  # z: a feature of another model, outside SCHEMA
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.floats(-1e15, 1e15, allow_nan=False),
    st.integers(-5, 5),
    st.none(),
    st.booleans(),
    st.sampled_from(["1.5", "abc", "", "null", "True", "FR", "é"]),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    r: dict[str, Any] = {
        "prediction_id": draw(st.one_of(st.text(min_size=1, max_size=5), st.integers(0, 9))),
        "model": draw(st.sampled_from(["m", "n"])),
        "model_version": draw(st.sampled_from(["1", 2, ""])),
        "timestamp": draw(st.one_of(st.floats(0, 1e10), st.integers(0, 10))),
        "features": draw(st.dictionaries(st.sampled_from(KNOWN), values)),
    }
    for name, strategy in [
        ("prediction", st.one_of(st.sampled_from(["ok", 1, True]), st.none())),
        ("score", st.floats(0, 1)),
        ("probabilities", st.dictionaries(st.sampled_from(["ok", "no"]), st.floats(0, 1))),
        ("attributions", st.dictionaries(st.sampled_from(["x", "c"]), st.floats(-1, 1))),
        ("latency_ms", st.floats(0, 1e6)),
        ("error", st.one_of(st.none(), st.sampled_from(["", "oom: 3"]))),
        ("unknown_key", st.integers(-(2**63), 2**63 - 1)),
    ]:
        if draw(st.booleans()):
            r[name] = draw(strategy)
    return r


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    batch = draw(st.lists(records(), min_size=1, max_size=8))
    if draw(st.integers(0, 9)) == 0:  # now and then a bad record or a new feature
        i = draw(st.integers(0, len(batch) - 1))
        batch[i] = draw(
            st.sampled_from(
                [
                    {**batch[i], "timestamp": "yesterday"},
                    {**batch[i], "features": {**batch[i]["features"], "new": 1}},
                    {**batch[i], "model": "a\x00"},
                ]
            )
        )
    shape = draw(st.sampled_from(["one", "array", "envelope", "envelope+key"]))
    if shape == "one":
        return orjson.dumps(batch[0])
    if shape == "array":
        return orjson.dumps(batch)
    extra = {"source": "x"} if shape == "envelope+key" else {}
    return orjson.dumps({"records": batch, **extra})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return a.dtype == b.dtype and a.tolist() == b.tolist()


def _learnt() -> StructPredictions:
    decoder = StructPredictions()
    decoder.decode(orjson.dumps({"records": [{"features": dict.fromkeys(KNOWN, 1)}]}))
    decoder.decode(
        orjson.dumps(
            {
                "prediction_id": "p",
                "model": "m",
                "model_version": "1",
                "timestamp": 1,
                "features": dict.fromkeys(KNOWN, 1),
            }
        )
    )
    assert decoder.names == KNOWN
    return decoder


DECODER = _learnt()


@EXAMPLES
@given(messages())
def test_records_rejections_and_columns_are_those_of_the_dict_decoder(payload: bytes) -> None:
    fast, expected = DECODER.decode(payload), parse_predictions(payload)
    as_dicts = [r if isinstance(r, dict) else r.to_dict() for r in fast.records]
    assert as_dicts == expected.records
    assert fast.rejected == expected.rejected
    if fast.records and not isinstance(fast.records[0], dict):
        got = RecordBatch.from_records(fast.records, SCHEMA)
        want = RecordBatch.from_records(expected.records, SCHEMA)
        for name in RecordBatch.__slots__:
            assert _same(getattr(got, name), getattr(want, name)), name
        # a group mixing both kinds of records (a message read the usual way) too
        mixed = RecordBatch.from_records([*expected.records[:1], *fast.records], SCHEMA)
        both = RecordBatch.from_records([*expected.records[:1], *expected.records], SCHEMA)
        assert _same(mixed.numeric, both.numeric) and _same(mixed.extra, both.extra)


def test_records_read_like_dicts() -> None:
    payload = orjson.dumps(
        [
            {
                "prediction_id": 7,
                "model": "m",
                "model_version": "1",
                "timestamp": 3,
                "features": {"x": None, "c": "FR"},
                "score": 0.5,
            }
        ]
    )
    (record,) = DECODER.decode(payload).records
    assert not isinstance(record, dict)
    assert record["prediction_id"] == 7 and record["timestamp"] == 3.0
    assert record["features"] == {"c": "FR", "x": None} and record.get("error") is None
    assert "score" in record and "latency_ms" not in record
    assert record.to_dict() == parse_predictions(payload).records[0]


def test_only_the_worker_of_driftline_json_uses_it_and_too_many_names_turn_it_off() -> None:
    assert isinstance(prediction_decoder(Config(), for_windows=True), StructPredictions)
    assert not isinstance(prediction_decoder(Config()), StructPredictions)
    decoder = StructPredictions()
    record = {"prediction_id": "p", "model": "m", "model_version": "1", "timestamp": 1}
    wide = {**record, "features": {f"f{i}": 1.0 for i in range(MAX_FIELDS + 1)}}
    assert decoder.decode(orjson.dumps(wide)).records == [wide | {"timestamp": 1.0}]
    assert not decoder.enabled
    assert isinstance(decoder.decode(orjson.dumps(wide)).records[0], dict)
