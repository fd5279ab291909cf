"""The window evaluation's shortcuts give exactly what the longer way gives (issue 10, evalcost).

Each shortcut is compared with the computation it replaces, to the bit, on data shaped like
users' data: ties, heavy tails, missing values, classes spelled several ways. The whole
evaluation is pinned by ``benchmarks/pipeline_fingerprint.py`` and compared with a baseline
checkout by ``benchmarks/bench_window_evaluation.py``.
"""

from __future__ import annotations

import gc
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats as st

from driftline.detectors import window_tests
from driftline.detectors.importance import (
    _class_texts,
    _codes,
    mutual_information,
    mutual_information_importance,
)
from driftline.detectors.normalise import class_value
from driftline.detectors.stats.multivariate import _permutation_labels, mmd
from driftline.detectors.stats.univariate import (
    _kolmogn_sf,
    ks_exact,
    kstwo_sf,
    sorted_finite,
)


def _argsort_labels(draws: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """The labelling as the MMD test built it before: argsort of every row."""
    labels = np.zeros((draws.shape[0] + 1, draws.shape[1]))
    labels[0, :n] = 1.0
    np.put_along_axis(labels[1:], np.argsort(draws, axis=1)[:, :n], 1.0, axis=1)
    return labels


class _Draws:
    """A generator whose ``random`` hands out fixed draws (to force ties)."""

    def __init__(self, draws: NDArray[np.float64]) -> None:
        self.draws = draws

    def random(self, shape: tuple[int, int]) -> NDArray[np.float64]:
        assert shape == self.draws.shape
        return self.draws


@pytest.mark.parametrize("seed", range(5))
def test_permutation_labels_are_the_argsorts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n, big_n in ((2, 5), (13, 40), (200, 400), (399, 400)):
        draws = np.random.default_rng(seed).random((50, big_n))
        got = _permutation_labels(np.random.default_rng(seed), 50, n, big_n)
        np.testing.assert_array_equal(got, _argsort_labels(draws, n))
        # ties at the n-th draw (rounded draws): the rows are redone by argsort
        tied = np.round(rng.random((50, big_n)), 1)
        got = _permutation_labels(_Draws(tied), 50, n, big_n)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got, _argsort_labels(tied, n))


def test_mmd_result_unchanged_by_the_shortcuts() -> None:
    """The MMD statistic and p-value of fixed inputs, as the code before (main at 5bf22d2)
    printed them."""
    rng = np.random.default_rng(0)
    ref = rng.standard_t(3, size=(1_000, 5))
    win = rng.standard_t(3, size=(600, 5)) + 0.1
    got = mmd(ref, win, 0.05, n_permutations=400, max_samples=200, seed=7)
    assert (got.statistic, got.p_value) == (0.000966899647885322, 0.24688279301745636)


def test_ks_on_a_presorted_reference_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for ties in (False, True):
        ref = rng.standard_t(2, size=2_000)
        win = rng.standard_t(2, size=600) + 0.05
        if ties:
            ref, win = np.round(ref, 1), np.round(win, 1)
        ref[::7] = np.nan
        ref[5] = np.inf
        win[::5] = np.nan
        plain = ks_exact(ref, win, method="asymp")
        presorted = ks_exact(sorted_finite(ref), win, method="asymp", reference_sorted=True)
        assert presorted == plain
        want = st.ks_2samp(ref[np.isfinite(ref)], win[np.isfinite(win)], method="asymp")
        assert (presorted.statistic, presorted.p_value) == (want.statistic, want.pvalue)


def test_kstwo_values_remembered_per_type_of_n() -> None:
    for n in (462, 462.0, 1_500):
        for d in (0.03, 0.051, 0.2):
            assert kstwo_sf(d, n) == float(st.kstwo.sf(d, n))
            assert kstwo_sf(d, n) == kstwo_sf(d, n)  # from the cache the second time
    assert _kolmogn_sf.cache_parameters()["typed"]


def _mi_before(feature: Any, target: Any) -> float:
    """`mutual_information` as it coded numeric values before (np.unique for the count)."""
    f, t = np.asarray(feature).ravel(), np.asarray(target).ravel()
    keep = ~np.isnan(f) if f.dtype.kind == "f" else np.ones(f.size, dtype=bool)
    return mutual_information(f[keep], t[keep], target_categorical=True, miller_madow=True)


def _codes_before(x: NDArray[np.float64], n_bins: int = 10) -> NDArray[np.int64]:
    if np.unique(x).size <= n_bins:
        return np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()
    inner = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return np.searchsorted(inner, x, side="right").astype(np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_numeric_codes_as_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for x in (
        rng.standard_t(2, size=2_000),  # heavy tails
        np.round(rng.normal(size=2_000), 1),  # ties
        rng.integers(0, 7, size=500).astype(np.float64),  # few distinct values
        np.array([-0.0, 0.0, 1.0, np.inf, -np.inf, 2.0] * 5),
        np.array([]),
    ):
        np.testing.assert_array_equal(_codes(x, False, 10), _codes_before(x))


def test_importance_with_target_codes_once_equals_feature_by_feature() -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    features = {f"f{j}": rng.standard_t(3, size=n) for j in range(6)}
    features["f1"][rng.random(n) < 0.2] = np.nan  # 20 % missing: the target is re-coded
    features["f2"][:] = np.nan
    features["f3"] = np.round(features["f3"], 0)
    target = np.where(features["f0"] > 0, "1", np.where(rng.random(n) < 0.01, "fraud", "0"))
    target = np.asarray(target, dtype=str)
    got = mutual_information_importance(
        features, target, prediction_categorical=True, sample_size=None, miller_madow=True
    )
    for name, values in features.items():
        assert got[name] == _mi_before(values, target), name
    regression = rng.normal(size=n)  # a numeric target: its bins come from the kept values
    got = mutual_information_importance(
        features, regression, prediction_categorical=False, sample_size=None, miller_madow=True
    )
    for name, values in features.items():
        keep = ~np.isnan(values)
        want = mutual_information(values[keep], regression[keep], miller_madow=True)
        assert got[name] == want, name


def test_class_texts_as_class_value_gives_them() -> None:
    values: list[Any] = ["1", "0", " 1 ", 1, 1.0, True, np.int64(0), 2.5, "fraud", "TRUE", [1]]
    assert _class_texts(values, class_value) == [str(class_value(v)) for v in values]


def test_profile_columns_prepared_once_and_forgotten_with_the_sample() -> None:
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(100, 2))
    sample[3, 0] = np.nan
    sample[5, 1], sample[6, 1], sample[7, 1] = 0.0, -0.0, 0.0  # ties of +-0.0
    first = window_tests._prepared(sample, ["a", "b"])
    assert window_tests._prepared(sample, ["a", "b"]) is first
    assert first["a"].dtype == np.uint16  # positions, not values
    for j, name in enumerate(["a", "b"]):
        sorted_values = window_tests._reference_sorted(sample, ["a", "b"], name)
        expected = np.sort(sample[np.isfinite(sample[:, j]), j])
        assert sorted_values.view(np.uint64).tolist() == expected.view(np.uint64).tolist()
    assert not first["a"].flags.writeable
    assert window_tests._prepared(sample, ["b", "a"])["b"] is not first["b"]  # other columns
    key = (id(sample), "sorted columns")
    del sample, first
    gc.collect()
    assert key not in window_tests._PREPARED


def test_reference_correlations_prepared_once_and_as_computed_in_each_window() -> None:
    from driftline.detectors.profile import ReferenceProfile, standardised_sample

    rng = np.random.default_rng(4)
    x = rng.standard_t(3, size=3_000)
    columns = {"x": x, "y": 0.5 * x + rng.normal(size=3_000), "c": np.ones(3_000)}
    profile = ReferenceProfile.from_columns(columns, model="m", model_version="1")
    ref = standardised_sample(profile, profile.sample)
    corr = window_tests._reference_correlations(profile, ref)
    assert window_tests._reference_correlations(profile, ref) is corr
    assert corr is not None
    np.testing.assert_array_equal(corr, window_tests._correlations(ref))
    win = rng.normal(size=(500, ref.shape[1]))
    assert window_tests._max_correlation_change(
        ref, win, corr
    ) == window_tests._max_correlation_change(ref, win)
    profile.numeric["x"] = replace(profile.numeric["x"], variance=4.0)  # other scales: afresh
    other = standardised_sample(profile, profile.sample)
    assert window_tests._reference_correlations(profile, other) is not corr


def test_pair_products_in_triu_order() -> None:
    from driftline.detectors.stats.multivariate import _pair_products

    rng = np.random.default_rng(2)
    for d in (1, 2, 7, 20):
        u = rng.standard_t(3, size=(2_000, d))
        centred = u - u.mean(axis=0)
        j, k = np.triu_indices(d)
        got, want = _pair_products(u), centred[:, j] * centred[:, k]
        np.testing.assert_array_equal(got, want)
        # the reductions the covariance test takes of them sum in the same order
        np.testing.assert_array_equal(got.mean(axis=0), want.mean(axis=0))
        np.testing.assert_array_equal(got.var(axis=0, ddof=1), want.var(axis=0, ddof=1))


@pytest.mark.parametrize("seed", range(4))
def test_numeric_codes_of_columns_at_once_as_one_by_one(seed: int) -> None:
    from driftline.detectors.importance import _numeric_codes_of_columns, proxy_importance

    rng = np.random.default_rng(seed)
    n = 2_000
    matrix = np.column_stack(
        [
            rng.standard_t(2, size=n),  # heavy tails
            np.round(rng.normal(size=n), 1),  # ties
            rng.integers(0, 5, size=n).astype(np.float64),  # few distinct values
            np.where(rng.random(n) < 0.5, -0.0, 0.0) + np.round(rng.normal(size=n), 0),
            np.where(rng.random(n) < 0.01, np.inf, rng.normal(size=n)),
            np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),  # 20 % missing: skipped
            np.full(n, 3.0),
        ]
    )
    names = [f"c{j}" for j in range(matrix.shape[1])]
    got = _numeric_codes_of_columns(matrix, names, 10)
    assert sorted(got) == sorted(set(names) - {"c5"})
    for j, name in enumerate(names):
        if name in got:
            np.testing.assert_array_equal(got[name], _codes(matrix[:, j].copy(), False, 10))
    target = np.where(matrix[:, 0] > 0, "1", "0").astype(str)
    whole = proxy_importance(matrix, names, target)
    for j, name in enumerate(names):
        column = matrix[:, j]
        keep = ~np.isnan(column)
        want = mutual_information(column[keep], target[keep], miller_madow=True)
        assert whole[name] == want, name
