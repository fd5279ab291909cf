"""Feature-importance drift: attribution sums, MI proxy, rank comparison."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from driftline.detectors import importance
from driftline.detectors.importance import (
    AttributionSums,
    compare_importance,
    mutual_information,
    mutual_information_importance,
)


def test_attribution_sums_merge_nan_json() -> None:
    a = AttributionSums(["x", "y"])
    a.update([[1.0, np.nan], [-3.0, 2.0]])
    b = AttributionSums(["x", "y"])
    b.update(np.empty((0, 2)))
    m = a.merge(b)
    assert m.mean_abs() == {"x": 2.0, "y": 2.0}
    back = AttributionSums.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.mean_abs() == m.mean_abs()
    assert AttributionSums(["x"]).mean_abs() == {"x": None}  # empty window
    with pytest.raises(ValueError, match="shape"):
        a.update([1.0, 2.0])
    with pytest.raises(ValueError, match="different features"):
        a.merge(AttributionSums(["y", "x"]))


def test_mutual_information_by_hand() -> None:
    # joint (0,0)=1/4, (0,1)=1/4, (1,1)=1/2:  I = H(Y) - H(Y|X)
    x = [0, 0, 1, 1]
    y = [0, 1, 1, 1]
    hy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    hy_given_x = 0.5 * np.log(2)
    assert mutual_information(x, y) == pytest.approx(hy - hy_given_x)
    assert mutual_information(["a", "a", "b", "b"], y, feature_categorical=True) == (
        pytest.approx(hy - hy_given_x)
    )
    assert mutual_information([], []) == 0.0
    assert mutual_information([1.0, np.nan], [0, 1]) == 0.0  # one record left: nothing shared


def test_mutual_information_numeric_quantile_bins() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    y = (x > np.median(x)).astype(int)
    # the median is a quantile edge, so X's bin determines Y: I = H(Y) = log 2
    assert mutual_information(x, y, n_bins=10) == pytest.approx(np.log(2), abs=0.01)
    assert mutual_information(rng.normal(size=5000), y) < 0.01


def test_mi_importance_sampling_and_categorical() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    color = rng.choice(np.array(["red", "green", "blue"]), n)
    noise = rng.normal(size=n)
    pred = (color == "red").astype(int)
    imp = mutual_information_importance(
        {"color": color, "noise": noise}, pred, categorical={"color"}, sample_size=3000
    )
    assert imp["color"] > 0.5 and imp["noise"] < 0.02
    with pytest.raises(ValueError, match="values"):
        mutual_information_importance({"a": np.zeros(3)}, np.zeros(4))


def test_compare_importance_stable_and_shifted() -> None:
    ref = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1, "e": 0.05}
    same = compare_importance(ref, {k: v * 2 for k, v in ref.items()})
    assert same.spearman == pytest.approx(1.0) and not same.shifted
    assert all(f.rank_change == 0 for f in same.features)
    # swap of the two least important: top-3 unchanged, rho = 0.9 -> not shifted
    swapped = compare_importance(ref, {**ref, "d": 0.05, "e": 0.1})
    assert swapped.spearman == pytest.approx(0.9) and not swapped.shifted
    # a new top feature: top-3 changes
    cur = {**ref, "e": 0.9}
    moved = compare_importance(ref, cur)
    assert moved.top_k_changed and moved.shifted
    e = next(f for f in moved.features if f.feature == "e")
    assert (e.reference_rank, e.current_rank, e.rank_change) == (5, 1, 4)
    # reversed ranking, top_k=5 (set unchanged): only the correlation fires
    rev = compare_importance(ref, {k: 1 - v for k, v in ref.items()}, top_k=5)
    assert rev.spearman == pytest.approx(-1.0) and not rev.top_k_changed and rev.shifted


def test_compare_importance_edge_cases() -> None:
    one = compare_importance({"a": 1.0}, {"a": 2.0})
    assert one.spearman is None and not one.shifted
    flat = compare_importance({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0})
    assert flat.spearman is None and not flat.shifted
    partial = compare_importance({"a": 1.0, "b": 0.5, "c": None}, {"a": 1.0, "b": 0.2})
    assert [f.feature for f in partial.features] == ["a", "b"]
    assert compare_importance({}, {}).features == ()


def test_doctests() -> None:
    assert doctest.testmod(importance).failed == 0
