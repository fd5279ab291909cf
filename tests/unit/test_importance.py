"""Feature-importance drift: attribution sums, MI proxy, rank comparison, the worker's verdict
on importance shares (importance_drift), its thresholds and the reference importances."""

from __future__ import annotations

import doctest
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.detectors import importance
from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.importance import (
    AttributionSums,
    ImportanceConfigError,
    ImportanceThresholds,
    compare_importance,
    importance_drift,
    importance_shares,
    importance_thresholds_from_dict,
    mutual_information,
    mutual_information_importance,
    proxy_importance,
    reference_importance,
    window_importance,
)
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import (
    ModelThresholds,
    ThresholdsError,
    thresholds_from_dict,
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


# -- importance drift in the worker (importance_drift, shares, thresholds) -----------------------

importances = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.one_of(st.none(), st.floats(0, 1e6), st.just(float("nan")), st.just(0.0)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(reference=importances, current=importances)
def test_importance_drift_never_raises_and_is_consistent(
    reference: dict[str, float | None], current: dict[str, float | None]
) -> None:
    result = importance_drift(reference, current, n=1_000)
    shares = [f.share for f in result.features]
    assert all(0.0 <= s <= 1.0 + 1e-12 for s in shares)
    assert sum(shares) <= 1.0 + 1e-9
    assert result.drifted == bool(result.changed_features)
    assert all(abs(f.share_change) >= 0.05 - 1e-9 for f in result.features if f.changed)
    assert sorted(f.rank for f in result.features) == list(range(1, len(result.features) + 1))
    assert len(result.features) <= ImportanceThresholds().max_features
    json.dumps(result.to_dict(), allow_nan=False)  # NaN never leaks into the event / row


def test_importance_drift_is_symmetric_in_scale_and_ignores_near_ties() -> None:
    ref = {"a": 0.30, "b": 0.29, "c": 0.2, "d": 0.21}
    # a and b (and c and d) swap ranks: a tie, not a change of what the model relies on
    near_tie = {"a": 0.29, "b": 0.30, "c": 0.21, "d": 0.2}
    result = importance_drift(ref, {k: 10 * v for k, v in near_tie.items()}, n=600)
    assert not result.drifted and result.current_top_k[0] == "b"
    exact_ties = importance_drift({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, n=600)
    assert not exact_ties.drifted and exact_ties.spearman is None


def test_importance_drift_missing_and_zero_features() -> None:
    ref = {"a": 0.5, "b": 0.3, "c": 0.2, "gone": 0.4, "zero": 0.0}
    cur = {"a": 0.5, "b": 0.3, "c": 0.2, "zero": 0.0, "new": 9.0}
    result = importance_drift(ref, cur, n=600)
    # `gone` (absent in the window) and `new` (unknown to the reference) are left out;
    # shares are over the features both sides know, so nothing moved
    assert not result.drifted
    assert result.missing_features == ("gone",) and result.n_missing == 1
    assert result.n_features == 4 and {f.feature for f in result.features} == set(cur) - {"new"}
    zero = importance_drift({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, n=600)
    assert zero.status == "no_importance" and not zero.drifted
    empty = importance_drift({}, {}, n=600)
    assert empty.status == "no_importance" and empty.features == () and empty.spearman is None


def test_importance_drift_thousands_of_features_is_bounded() -> None:
    rng = np.random.default_rng(3)
    names = [f"f{i:05d}" for i in range(5_000)]
    ref = dict(zip(names, rng.pareto(1.5, 5_000).tolist(), strict=True))
    cur = dict(ref)
    top = sorted(ref, key=ref.__getitem__)[-1]
    cur[top] = 0.0  # the model stops relying on its top feature
    result = importance_drift(ref, cur, n=5_000, thresholds=ImportanceThresholds(max_features=25))
    assert result.n_features == 5_000
    assert len(result.features) == 25 and len(result.to_dict()["features"]) == 25
    if ref[top] / sum(ref.values()) >= 0.05:
        assert result.drifted and result.changed_features[0] == top
        assert result.features[-1].feature == top or any(f.feature == top for f in result.features)


def test_importance_drift_severity_and_sample_guard() -> None:
    ref = {"a": 0.5, "b": 0.3, "c": 0.2}
    small = importance_drift(ref, {"a": 0.44, "b": 0.36, "c": 0.2}, n=600)
    assert small.drifted and small.severity == "warning"
    big = importance_drift(ref, {"a": 0.2, "b": 0.3, "c": 0.5}, n=600)
    assert big.drifted and big.severity == "critical" and big.changed_features == ["a", "c"]
    few = importance_drift(ref, {"a": 0.2, "b": 0.3, "c": 0.5}, n=499)
    assert few.status == "insufficient_samples" and not few.drifted


def test_importance_shares() -> None:
    assert importance_shares({"a": -1.0, "b": 1.0, "c": float("inf")}) == {"a": 0.0, "b": 1.0}
    assert importance_shares({}) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"min_share_change": 0}, r"x\.min_share_change: expected a number in \(0, 1\]"),
        ({"min_share_change": "big"}, "x.min_share_change: expected a number"),
        ({"top_k": 0}, "x.top_k: expected an integer >= 1"),
        ({"max_features": True}, "x.max_features: expected an integer >= 1"),
        ({"enabled": "yes"}, "x.enabled: expected true or false"),
        ({"min_share": 0.1}, "x.min_share: unknown key"),
        ([1], "x: expected a mapping"),
    ],
)
def test_importance_thresholds_refuse_bad_config_naming_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ImportanceConfigError, match=message):
        importance_thresholds_from_dict("x", raw)


def test_importance_thresholds_in_the_thresholds_file() -> None:
    t = thresholds_from_dict(
        {
            "drift_thresholds": {
                "defaults": {"importance": {"min_share_change": 0.1}},
                "models": {"fraud": {"importance": {"top_k": 5}}},
            }
        }
    )
    assert t.for_model("fraud").importance == ImportanceThresholds(min_share_change=0.1, top_k=5)
    assert t.for_model("other").importance.top_k == 3
    with pytest.raises(ThresholdsError, match=r"drift_thresholds\.models\.fraud\.importance\.k"):
        thresholds_from_dict({"drift_thresholds": {"models": {"fraud": {"importance": {"k": 1}}}}})


def _profile_and_window(
    weights: list[float], window_weights: list[float], *, attributions: bool = True
) -> tuple[ReferenceProfile, WindowSketch]:
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(len(weights))]
    x = {k: rng.normal(size=10_000) for k in names}
    logit = sum(w * x[k] for w, k in zip(weights, names, strict=True))
    profile = ReferenceProfile.from_columns(
        x,
        model="m",
        model_version="1",
        prediction=np.asarray(logit > 0, dtype=int),
        labels=(rng.random(10_000) < 1 / (1 + np.exp(-logit))).astype(int),
        attributions={k: w * x[k] for w, k in zip(weights, names, strict=True)}
        if attributions
        else None,
    )
    xw = {k: rng.normal(size=2_000) for k in names}
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    sketch.update(
        RecordBatch(
            numeric=xw,
            categorical={},
            event_time=np.zeros(2_000),
            prediction=np.zeros(2_000, dtype=object),
            attributions={k: w * xw[k] for w, k in zip(window_weights, names, strict=True)}
            if attributions
            else None,
        )
    )
    return profile, sketch


def test_reference_profile_keeps_importances_per_source() -> None:
    profile, _ = _profile_and_window([2.0, 1.0, 0.0], [2.0, 1.0, 0.0])
    assert set(profile.importance) == {"attributions", "label_mi", "prediction_mi"}
    for source in profile.importance.values():
        assert source["x0"] > source["x1"] > source["x2"]
    assert profile.importance["attributions"]["x2"] == 0.0
    again = ReferenceProfile.from_json(profile.to_json())
    assert again.importance == profile.importance
    assert again.fingerprint == profile.fingerprint
    old = profile.to_dict()
    del old["importance"]  # a profile written before importances existed
    assert ReferenceProfile.from_dict(old).importance == {}


def test_window_importance_through_evaluate_window() -> None:
    profile, same = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5])
    stable = evaluate_window(profile, same, ModelThresholds()).importance
    assert stable is not None and stable.source == "attributions" and not stable.drifted
    assert stable.n == 2_000
    _, swapped = _profile_and_window([2.0, 1.0, 0.5], [1.0, 2.0, 0.5])
    evaluation = evaluate_window(profile, swapped, ModelThresholds())
    assert evaluation.importance is not None
    assert set(evaluation.importance.changed_features) == {"x0", "x1"}
    assert evaluation.to_dict()["importance"]["drifted"] is True
    off = ModelThresholds(importance=ImportanceThresholds(enabled=False))
    assert evaluate_window(profile, swapped, off).importance is None


def _proxy_window(
    profile: ReferenceProfile, weights: list[float], seed: int
) -> tuple[WindowSketch, WindowSketch]:
    """A window without attributions whose predictions follow ``weights``, sketched in two
    partial sketches (merged by the caller); the classes spelled as users do (True, 1, "1"),
    20% of the predictions missing."""
    rng = np.random.default_rng(seed)
    parts = []
    for part in range(2):
        n = 2_500
        x = {f"x{i}": rng.normal(size=n) for i in range(len(weights))}
        positive = (sum(w * x[f"x{i}"] for i, w in enumerate(weights)) > 0).astype(int)
        spellings = np.array([[False, 0, "0"], [True, 1, "1"]], dtype=object)
        prediction = spellings[positive, rng.integers(0, 3, n)]
        prediction[rng.random(n) < 0.2] = None
        sketch = WindowSketch.empty(profile, 0.0, 60.0, seed=seed * 10 + part)
        sketch.update(
            RecordBatch(numeric=x, categorical={}, event_time=np.zeros(n), prediction=prediction)
        )
        parts.append(sketch)
    return parts[0], parts[1]


def test_window_without_attributions_is_judged_by_the_reservoir_predictions() -> None:
    profile, _ = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5], attributions=False)
    assert "prediction_mi" in profile.importance
    a, b = _proxy_window(profile, [2.0, 1.0, 0.5], seed=1)
    stationary = a.merge(b)
    assert len(stationary.reservoir_predictions) == len(stationary.reservoir_rows) == 2_000
    assert set(stationary.reservoir_predictions.tolist()) == {"0", "1", None}  # one class each
    # the sketch keeps each row with its own prediction, through update and merge
    x = stationary.reservoir_rows
    known = stationary.reservoir_predictions != None  # noqa: E711 (elementwise)
    positive = (x[known] @ np.array([2.0, 1.0, 0.5]) > 0).astype(int).astype(str)
    assert positive.tolist() == stationary.reservoir_predictions[known].tolist()

    stable = evaluate_window(profile, stationary, ModelThresholds()).importance
    assert stable is not None
    assert (stable.source, stable.status, stable.drifted) == ("prediction_mi", "evaluated", False)
    assert 1_400 < stable.n < 1_800  # the rows whose prediction is known
    # same checkpointed and restored (JSON), and merged in the other order
    again = WindowSketch.from_dict(json.loads(json.dumps(stationary.to_dict())))
    assert window_importance(profile, again, ImportanceThresholds()) == stable
    assert window_importance(profile, b.merge(a), ImportanceThresholds()) == stable

    # x0 and x1 swap their relation to the prediction; the inputs are unchanged
    a, b = _proxy_window(profile, [1.0, 2.0, 0.5], seed=2)
    swapped = evaluate_window(profile, a.merge(b), ModelThresholds()).importance
    assert swapped is not None and swapped.source == "prediction_mi" and swapped.drifted
    assert set(swapped.changed_features[:2]) == {"x0", "x1"}

    # attributions still come first when the window has them
    _, with_attributions = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5])
    profile_attr, _ = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5])
    verdict = window_importance(profile_attr, with_attributions, ImportanceThresholds())
    assert verdict is not None and verdict.source == "attributions"


def test_window_from_an_old_checkpoint_is_not_judged_by_the_proxy() -> None:
    profile, _ = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5], attributions=False)
    a, b = _proxy_window(profile, [2.0, 1.0, 0.5], seed=3)
    old = a.merge(b).to_dict()
    del old["reservoir_predictions"]  # written before the sketch kept predictions
    restored = WindowSketch.from_dict(json.loads(json.dumps(old)))
    assert restored.reservoir_predictions.tolist() == [None] * 2_000
    assert window_importance(profile, restored, ImportanceThresholds()) is None


def test_proxy_and_reference_importance_edges() -> None:
    with pytest.raises(ValueError, match="shape"):
        proxy_importance(np.zeros((3, 2)), ["a"], [0, 1, 0])
    rows = np.array([[np.nan, 1.0], [np.nan, 2.0], [np.nan, 3.0]])
    assert proxy_importance(rows, ["empty", "x"], [0, 1, 1])["empty"] == 0.0
    out = reference_importance(
        {"a": np.array([1.0, np.inf, 2.0, np.nan]), "c": np.array(["u", None, "v", "u"], object)},
        categorical={"c"},
        labels=np.array([None, None, None, None], object),  # no label at all: no label_mi
        prediction=np.array([0, 1, 1, 0], object),
        attributions={"a": np.array([np.nan, np.nan, np.nan, np.nan])},  # all missing
    )
    assert set(out) == {"prediction_mi"} and set(out["prediction_mi"]) == {"a", "c"}
