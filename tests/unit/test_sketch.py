"""WindowSketch: exact merge, JSON round trip, bounded memory, latency quantiles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import OTHER, ReferenceProfile
from driftline.detectors.sketch import LatencySketch, SketchMismatchError, WindowSketch


def _batch(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> RecordBatch:
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    cats = np.array(["a", "b", "c", "new", None], dtype=object)[
        rng.choice(5, n, p=[0.5, 0.3, 0.1, 0.05, 0.05])
    ]
    pred = np.array(["yes", "no"], dtype=object)[rng.integers(0, 2, n)]
    errors = np.array([None, "Timeout: 3s", "ValueError: x"], dtype=object)[
        rng.choice(3, n, p=[0.9, 0.05, 0.05])
    ]
    return RecordBatch(
        numeric={"x": x, "y": rng.exponential(1.0, n)},
        categorical={"c": cats},
        event_time=rng.uniform(0.0, 60.0, n),
        prediction=pred,
        score=rng.random(n),
        latency_seconds=rng.lognormal(-3.0, 1.0, n),
        error=errors,
        attributions={"x": rng.normal(size=n)},
    )


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    ref = _batch(rng, 5000)
    ref.categorical["c"][ref.categorical["c"] == "new"] = "a"  # "new" unseen in the reference
    return ReferenceProfile.from_batch(ref, model="m", model_version="1", bins=10)


EXACT_FIELDS = ("n_records", "class_counts", "error_counts", "attribution_n")


def _exact_view(s: WindowSketch) -> dict[str, object]:
    d = s.to_dict()
    out = {k: d[k] for k in EXACT_FIELDS}
    out["numeric"] = {
        k: {f: v[f] for f in ("counts", "n", "min", "max", "missing", "invalid")}
        for k, v in d["numeric"].items()
    }
    out["categorical"] = d["categorical"]
    out["score_counts"] = d["score_counts"]
    out["score_counts_by_class"] = d["score_counts_by_class"]
    out["latency"] = d["latency"]
    out["event_time"] = (d["event_time_min"], d["event_time_max"])
    return out


def test_merge_equals_sketch_of_concatenation(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(1)
    b1, b2 = _batch(rng, 3000), _batch(rng, 1700, shift=0.5)
    a = WindowSketch.empty(profile, 0, 60, seed=1)
    a.update(b1)
    b = WindowSketch.empty(profile, 60, 120, seed=2)
    b.update(b2)
    merged = a.merge(b)
    whole = WindowSketch.empty(profile, 0, 120, seed=3)
    whole.update(b1)
    whole.update(b2)
    assert _exact_view(merged) == _exact_view(whole)
    for name in ("x", "y"):
        m, w = merged.numeric[name], whole.numeric[name]
        assert m.mean == pytest.approx(w.mean, rel=1e-12)
        assert m.variance == pytest.approx(w.variance, rel=1e-10)
    x = np.concatenate([b1.numeric["x"], b2.numeric["x"]])
    finite = x[np.isfinite(x)]
    assert merged.numeric["x"].mean == pytest.approx(finite.mean(), rel=1e-12)
    assert merged.numeric["x"].variance == pytest.approx(finite.var(), rel=1e-10)
    assert merged.attribution_abs_sum["x"] == pytest.approx(whole.attribution_abs_sum["x"])
    assert merged.score_sum == pytest.approx(whole.score_sum)
    assert (merged.window_start, merged.window_end) == (0.0, 120.0)
    # the merged reservoir is the k smallest keys of both
    assert merged.reservoir_rows.shape == (2000, 2)
    assert merged.reservoir_keys.max() <= max(a.reservoir_keys.max(), b.reservoir_keys.max())


def test_counts_hand_checked(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(2)
    batch = _batch(rng, 1000)
    s = WindowSketch.empty(profile, 0, 60)
    s.update(batch)
    x = batch.numeric["x"]
    nx = s.numeric["x"]
    assert nx.missing == int(np.isnan(x).sum()) and nx.invalid == int(np.isinf(x).sum())
    assert int(nx.counts.sum()) == nx.n == int(np.isfinite(x).sum())
    c = batch.categorical["c"]
    cs = s.categorical["c"]
    assert cs.missing == sum(v is None for v in c)
    assert cs.counts["a"] == sum(v == "a" for v in c)
    assert cs.counts[OTHER] == cs.unseen["new"] == sum(v == "new" for v in c)
    assert sum(s.class_counts.values()) == 1000
    assert sum(s.error_counts.values()) == sum(v is not None for v in batch.error)
    assert set(s.error_counts) == {"Timeout", "ValueError"}
    assert int(s.score_counts.sum()) == 1000
    assert sum(int(v.sum()) for v in s.score_counts_by_class.values()) == 1000


def test_json_round_trip(profile: ReferenceProfile) -> None:
    s = WindowSketch.empty(profile, 0, 60, seed=5)
    s.update(_batch(np.random.default_rng(3), 2500))
    text = json.dumps(s.to_dict(), allow_nan=False)  # plain JSON, no NaN
    again = WindowSketch.from_dict(json.loads(text))
    assert again.to_dict() == s.to_dict()
    empty = WindowSketch.empty(profile, 0, 60)
    assert WindowSketch.from_dict(json.loads(json.dumps(empty.to_dict()))).to_dict() == (
        empty.to_dict()
    )


def test_reservoir_deterministic_bounded_and_uniform(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(4)
    batches = [_batch(rng, 5000) for _ in range(4)]
    runs = []
    for _ in range(2):
        s = WindowSketch.empty(profile, 0, 60, seed=7, reservoir_size=500)
        for i, b in enumerate(batches):
            b.numeric["y"] = np.full(len(b), float(i))  # tag rows by batch
            s.update(b)
        runs.append(s)
    assert np.array_equal(runs[0].reservoir_rows, runs[1].reservoir_rows, equal_nan=True)
    tags = np.bincount(runs[0].reservoir_rows[:, 1].astype(int), minlength=4)
    assert runs[0].reservoir_rows.shape == (500, 2)
    assert tags.min() > 80  # each batch holds a quarter of the records: 125 expected


def test_caps_and_mismatch(profile: ReferenceProfile) -> None:
    s = WindowSketch.empty(profile, 0, 60)
    n = 500
    batch = _batch(np.random.default_rng(5), n)
    batch.prediction[:] = np.array([f"class{i}" for i in range(n)], dtype=object)
    batch.categorical["c"][:] = np.array([f"u{i}" for i in range(n)], dtype=object)
    s.update(batch)
    assert len(s.class_counts) <= 101 and sum(s.class_counts.values()) == n
    assert len(s.categorical["c"].unseen) <= 51
    other = ReferenceProfile.from_columns({"x": np.arange(100.0)}, model="m", model_version="1")
    with pytest.raises(SketchMismatchError):
        s.merge(WindowSketch.empty(other, 0, 60))


def test_latency_sketch_relative_error_and_merge() -> None:
    rng = np.random.default_rng(6)
    values = rng.lognormal(-3.0, 1.5, 20_000)
    a, b = LatencySketch(), LatencySketch()
    a.update(values[:7000])
    b.update(values[7000:])
    merged = a.merge(b)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q, method="lower"))
        got = merged.quantile(q)
        assert got is not None and abs(got - exact) / exact <= 0.0101
    assert LatencySketch().quantile(0.5) is None
    assert LatencySketch.from_dict(merged.to_dict()) == merged
    zero = LatencySketch()
    zero.update(np.array([0.0, 0.0, math.nan, 1.0]))
    assert zero.count == 3 and zero.quantile(0.5) == 0.0


def test_empty_and_missing_columns(profile: ReferenceProfile) -> None:
    s = WindowSketch.empty(profile, 0, 60)
    s.update(
        RecordBatch(
            numeric={},
            categorical={},
            event_time=np.zeros(3),
            prediction=np.full(3, None, dtype=object),
        )
    )
    assert s.numeric["x"].missing == 3 and s.categorical["c"].missing == 3
    assert s.reservoir_rows.shape == (3, 2) and np.isnan(s.reservoir_rows).all()
    assert s.class_counts == {}


def _keyed_batch(ids: np.ndarray) -> RecordBatch:
    """Records identified by ``ids`` (record_keys); column y and the prediction carry the id, so
    every reservoir row shows whose prediction it holds."""
    n = len(ids)
    prediction = np.empty(n, dtype=object)
    prediction[:] = [f"id{i}" for i in ids.tolist()]
    prediction[ids % 7 == 0] = None  # some records without a prediction
    return RecordBatch(
        numeric={"x": np.sin(ids.astype(float)), "y": ids.astype(float)},
        categorical={},
        event_time=np.zeros(n),
        prediction=prediction,
        record_keys=ids.astype(np.uint64),
    )


def test_reservoir_predictions_follow_their_rows_in_any_merge_order(
    profile: ReferenceProfile,
) -> None:
    ids = np.random.default_rng(7).permutation(9_000)
    parts = []
    for chunk in np.array_split(ids, 3):
        s = WindowSketch.empty(profile, 0, 60, reservoir_size=500)
        for piece in np.array_split(chunk, 4):  # several updates, the reservoir fills up
            s.update(_keyed_batch(piece))
        parts.append(s)
    whole = WindowSketch.empty(profile, 0, 60, reservoir_size=500)
    whole.update(_keyed_batch(ids))
    a, b, c = parts
    orders = [a.merge(b).merge(c), a.merge(b.merge(c)), c.merge(a).merge(b), b.merge(c).merge(a)]
    for merged in [*orders, whole]:
        assert np.array_equal(merged.reservoir_keys, whole.reservoir_keys)
        assert np.array_equal(merged.reservoir_rows, whole.reservoir_rows)
        assert merged.reservoir_predictions.tolist() == whole.reservoir_predictions.tolist()
    row_ids = whole.reservoir_rows[:, 1].astype(int)
    expected = [None if i % 7 == 0 else f"id{i}" for i in row_ids.tolist()]
    assert whole.reservoir_predictions.tolist() == expected
    assert whole.reservoir_predictions.shape == (500,)


def test_reservoir_predictions_checkpoint_with_and_without_the_field(
    profile: ReferenceProfile,
) -> None:
    s = WindowSketch.empty(profile, 0, 60, seed=5)
    batch = _batch(np.random.default_rng(8), 2500)
    # one class however it is spelled, missing as None
    batch.prediction[:] = np.array([True, 1, "1", "true", 0, False, None, ""], dtype=object)[
        np.arange(2500) % 8
    ]
    s.update(batch)
    assert set(s.reservoir_predictions.tolist()) == {"1", "0", None}
    again = WindowSketch.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
    assert again.reservoir_predictions.tolist() == s.reservoir_predictions.tolist()
    assert again.to_dict() == s.to_dict()
    for damaged in (None, ["1"] * 3, "not a list"):  # absent (old checkpoint) or wrong length
        d = s.to_dict()
        if damaged is None:
            del d["reservoir_predictions"]
        else:
            d["reservoir_predictions"] = damaged
        old = WindowSketch.from_dict(json.loads(json.dumps(d)))
        assert old.reservoir_predictions.tolist() == [None] * len(s.reservoir_rows)
        assert np.array_equal(old.reservoir_rows, s.reservoir_rows, equal_nan=True)
        # an old partial sketch still merges and updates: its rows keep None, never a neighbour's
        merged = old.merge(s)
        assert len(merged.reservoir_predictions) == len(merged.reservoir_rows)
        old.update(_batch(np.random.default_rng(9), 100))
        assert len(old.reservoir_predictions) == len(old.reservoir_rows)


def test_regression_reservoir_predictions_are_values() -> None:
    rng = np.random.default_rng(10)
    profile = ReferenceProfile.from_columns(
        {"x": rng.normal(size=3_000)},
        model="r",
        model_version="1",
        prediction=rng.normal(size=3_000),
    )
    assert profile.prediction_values is not None  # a regression model
    s = WindowSketch.empty(profile, 0, 60)
    s.update(
        RecordBatch(
            numeric={"x": rng.normal(size=4)},
            categorical={},
            event_time=np.zeros(4),
            prediction=np.array([1.5, "2.25", "n/a", None], dtype=object),
        )
    )
    assert sorted(s.reservoir_predictions.tolist(), key=str) == ["1.5", "2.25", None, None]
