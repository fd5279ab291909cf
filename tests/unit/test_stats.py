"""Unit tests of driftline.detectors.stats against scipy and hand-computed values."""

from __future__ import annotations

import doctest
import importlib
import json
import math

import numpy as np
import pytest
from scipy import stats as st
from scipy.spatial.distance import jensenshannon

from driftline.detectors import stats
from driftline.detectors.stats import (
    PCAReconstruction,
    TestResult,
    chi_square,
    hellinger,
    jensen_shannon,
    ks_binned,
    ks_exact,
    mmd,
    psi,
    wasserstein,
)


def _no_nan(r: TestResult) -> None:
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert math.isfinite(r.statistic)
    assert r.p_value is None or 0.0 <= r.p_value <= 1.0
    assert isinstance(r.drifted, bool)


@pytest.mark.parametrize(
    "module", ["base", "univariate", "counts", "multivariate", "registry"]
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"driftline.detectors.stats.{module}"))
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------- KS


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "m"), [(10, 12), (200, 150), (3000, 2000), (1, 5)])
def test_ks_exact_matches_scipy(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.2, 1.1, size=m)
    ref = st.ks_2samp(a, b)
    r = ks_exact(a, b)
    assert abs(r.statistic - ref.statistic) <= 1e-12
    assert r.p_value is not None and abs(r.p_value - ref.pvalue) <= 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_ks_exact_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=400).astype(float)
    b = rng.integers(0, 6, size=300).astype(float)
    ref = st.ks_2samp(a, b)
    r = ks_exact(a, b)
    assert abs(r.statistic - ref.statistic) <= 1e-12
    assert r.p_value is not None and abs(r.p_value - ref.pvalue) <= 1e-12


def test_ks_exact_filters_non_finite_and_empty() -> None:
    a = np.array([1.0, 2.0, np.nan, 3.0, np.inf])
    b = np.array([1.5, -np.inf, 2.5])
    ref = st.ks_2samp([1.0, 2.0, 3.0], [1.5, 2.5])
    assert ks_exact(a, b).statistic == pytest.approx(ref.statistic, abs=1e-12)
    for x, y in [(np.array([]), b), (a, np.array([np.nan]))]:
        r = ks_exact(x, y)
        assert (r.statistic, r.p_value, r.drifted) == (0.0, 1.0, False)
    _no_nan(ks_exact(np.ones(50), np.ones(50)))


@pytest.mark.parametrize("seed", range(3))
def test_ks_binned_equals_asymptotic_ks_with_one_value_per_bin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 20, size=3000)
    b = rng.integers(1, 21, size=2000)
    edges = np.arange(-0.5, 21.5)
    ca, _ = np.histogram(a, edges)
    cb, _ = np.histogram(b, edges)
    exact = st.ks_2samp(a, b, method="asymp")
    r = ks_binned(ca, cb)
    assert r.statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert r.p_value == pytest.approx(exact.pvalue, rel=1e-9, abs=1e-15)


def test_ks_binned_is_conservative() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=2000), rng.normal(0.1, size=2000)
    edges = np.concatenate([[-np.inf], np.quantile(a, np.linspace(0, 1, 21)), [np.inf]])
    ca, _ = np.histogram(a, edges)
    cb, _ = np.histogram(b, edges)
    r, exact = ks_binned(ca, cb), ks_exact(a, b)
    assert r.statistic <= exact.statistic + 1e-12
    assert r.p_value is not None and exact.p_value is not None
    assert r.p_value >= exact.p_value


def test_ks_binned_hand_example_and_edges() -> None:
    # CDFs at edges: ref .1,.4,.8,1 ; win .25,.6,.9,1 -> D = .2
    r = ks_binned([100, 300, 400, 200], [250, 350, 300, 100])
    assert r.statistic == pytest.approx(0.2)
    assert r.p_value == pytest.approx(st.kstwo.sf(0.2, 500))
    assert ks_binned([0, 0], [1, 2]).to_dict()["p_value"] == 1.0
    _no_nan(ks_binned([np.nan, 5, -1], [1, np.inf, 2]))
    with pytest.raises(ValueError, match="same bins"):
        ks_binned([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------------ PSI


def test_psi_hand_example() -> None:
    r = psi([25, 25, 25, 25], [10, 20, 30, 40], epsilon=0.0)
    p, q = np.full(4, 0.25), np.array([0.1, 0.2, 0.3, 0.4])
    assert r.statistic == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert r.statistic == pytest.approx(0.22821, abs=1e-5)
    assert r.drifted and r.p_value is None and r.threshold == 0.2
    assert not psi([25, 25, 25, 25], [24, 26, 25, 25]).drifted


def test_psi_empty_bins_are_smoothed() -> None:
    # An underflow/overflow bin empty in the reference must not give inf.
    r = psi([0, 50, 50, 0], [0, 50, 40, 10])
    eps = stats.PSI_EPSILON
    p = (np.array([0, 0.5, 0.5, 0]) + eps) / (1 + 4 * eps)
    q = (np.array([0, 0.5, 0.4, 0.1]) + eps) / (1 + 4 * eps)
    assert r.statistic == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert r.drifted  # 10 % of the window where the reference had nothing
    assert psi([0, 0], [0, 0]).statistic == 0.0
    assert psi([], []).to_dict()["statistic"] == 0.0
    assert psi({"a": 3, "b": 1}, {"b": 1, "a": 3}).statistic == pytest.approx(0.0)


# ------------------------------------------------------------------------ chi-square


def test_chi_square_matches_scipy_without_pooling() -> None:
    ref = {"a": 5000.0, "b": 3000.0, "c": 2000.0}
    win = {"a": 480.0, "b": 330.0, "c": 190.0}
    r = chi_square(ref, win, pseudo_count=0.0)
    exp = np.array([0.5, 0.3, 0.2]) * 1000
    sc = st.chisquare([480, 330, 190], exp)
    assert r.statistic == pytest.approx(sc.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(sc.pvalue, rel=1e-12)
    # the default pseudo-count barely moves a large reference
    assert chi_square(ref, win).p_value == pytest.approx(sc.pvalue, rel=1e-3)


def test_chi_square_pools_small_expected_counts() -> None:
    ref = {"a": 900, "b": 80, "c": 10, "d": 10}
    win = {"a": 90, "b": 8, "c": 1, "d": 1}
    # expected (pseudo 0): a 90, b 8, c 1, d 1 -> c and d pooled (2 < 5, kept: >= 1)
    r = chi_square(ref, win, pseudo_count=0.0)
    sc = st.chisquare([90, 8, 2], [90, 8, 2])
    assert r.statistic == pytest.approx(sc.statistic) and r.p_value == pytest.approx(1.0)
    win2 = {"a": 80, "b": 10, "c": 5, "d": 5}
    r2 = chi_square(ref, win2, pseudo_count=0.0)
    sc2 = st.chisquare([80, 10, 10], [90, 8, 2])
    assert r2.statistic == pytest.approx(sc2.statistic) and r2.drifted


def test_chi_square_unseen_category() -> None:
    ref = {"a": 500, "b": 500}
    r = chi_square(ref, {"a": 45, "b": 45, "new": 10})
    _no_nan(r)
    assert r.drifted
    assert not chi_square(ref, {"a": 52, "b": 48}).drifted
    # unseen category with a single row among many: no division by zero, no alarm
    _no_nan(chi_square(ref, {"a": 500, "b": 500, "new": 1}))


def test_chi_square_edge_cases() -> None:
    assert chi_square({}, {"a": 3}).to_dict() == {
        "test": "chi_square",
        "statistic": 0.0,
        "p_value": 1.0,
        "threshold": 0.05,
        "drifted": False,
    }
    assert chi_square({"a": 10}, {"a": 10}).p_value == 1.0  # one bucket: no test
    _no_nan(chi_square({"a": 1, "b": float("nan")}, {"a": 1, "b": -3, "c": float("inf")}))


# ------------------------------------------------------------------- JS, Hellinger


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 50, size=12).astype(float)
    b = rng.integers(0, 50, size=12).astype(float)
    a[3] = 0.0  # zero bins are fine
    r = jensen_shannon(a, b)
    assert r.statistic == pytest.approx(float(jensenshannon(a, b, base=2)), abs=1e-12)


def test_jensen_shannon_mappings_and_edges() -> None:
    r = jensen_shannon({"a": 50, "b": 50}, {"b": 10, "a": 90})
    assert r.statistic == pytest.approx(float(jensenshannon([50, 50], [90, 10], base=2)))
    assert jensen_shannon({"a": 1}, {"b": 1}).statistic == pytest.approx(1.0)
    assert jensen_shannon([0, 0], [1, 2]).statistic == 0.0
    with pytest.raises(TypeError):
        jensen_shannon({"a": 1}, [1])


def test_hellinger_by_hand() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    by_hand = np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / math.sqrt(2)
    assert hellinger([50, 50], [90, 10]).statistic == pytest.approx(by_hand, rel=1e-12)
    assert hellinger([1, 0], [0, 1]).statistic == pytest.approx(1.0)
    assert hellinger([3, 3], [1, 1]).statistic == pytest.approx(0.0, abs=1e-7)
    assert not hellinger([], []).drifted


# ----------------------------------------------------------------------- Wasserstein


def test_wasserstein_matches_scipy_and_constant_reference() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(0.3, size=2000)
    r = wasserstein(a, b, reference_std=float(a.std()))
    assert r.statistic == pytest.approx(st.wasserstein_distance(a, b) / a.std(), rel=1e-12)
    assert r.drifted
    const = np.full(100, 7.0)
    assert wasserstein(const, const, 0.0).statistic == 0.0
    moved = wasserstein(const, const + 0.01, 0.0)
    assert moved.statistic == pytest.approx(0.01 / 1e-3) and moved.drifted
    _no_nan(wasserstein(const, np.array([np.nan, 7.0]), float("nan")))
    assert not wasserstein(np.array([]), b, 1.0).drifted


# ------------------------------------------------------------------------------- MMD


def _corr_pair(n: int, rho: float, rng: np.random.Generator, d: int = 2) -> np.ndarray:
    x = rng.standard_normal((n, d))
    x[:, 1] = rho * x[:, 0] + math.sqrt(1 - rho**2) * x[:, 1]
    return x


def test_mmd_detects_correlation_change_two_features() -> None:
    # 5,000-row windows subsampled to 300 a side; correlation 0 -> 0.6.
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        hits += mmd(_corr_pair(5000, 0.0, rng), _corr_pair(5000, 0.6, rng), seed=seed).drifted
    assert hits >= 19  # >= 95 %


def test_mmd_false_alarm_rate_at_most_alpha() -> None:
    alarms = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        ref = rng.standard_normal((100, 4))
        win = rng.standard_normal((100, 4))
        alarms += mmd(ref, win, n_permutations=100, seed=seed).drifted
    # Binomial(200, 0.05): mean 10, sd 3.1 -> allow up to mean + 2.5 sd
    assert alarms <= 18


def test_mmd_deterministic_and_edges() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 3)), rng.normal(0.2, size=(500, 3))
    assert mmd(a, b, seed=3) == mmd(a, b, seed=3)
    assert mmd(a[:1], b).to_dict()["p_value"] == 1.0
    const = np.ones((50, 2))
    _no_nan(mmd(const, const))
    a_nan = a.copy()
    a_nan[::7, 1] = np.nan
    _no_nan(mmd(a_nan, b))
    _no_nan(mmd(a[:, 0], b[:, 0]))  # 1-D input is one feature
    with pytest.raises(ValueError, match="feature counts"):
        mmd(a, b[:, :2])


def test_mmd_unbiased_statistic_by_hand() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 2)), rng.normal(0.5, size=(25, 2))
    r = mmd(x, y, n_permutations=10)
    mean, std = x.mean(0), x.std(0)
    zx, zy = (x - mean) / std, (y - mean) / std
    z = np.vstack([zx, zy])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    med = np.median(d2[np.triu_indices(45, 1)])
    k = np.exp(-d2 / (2 * med))
    kxx, kyy, kxy = k[:20, :20], k[20:, 20:], k[:20, 20:]
    expected = (kxx.sum() - 20) / (20 * 19) + (kyy.sum() - 25) / (25 * 24) - 2 * kxy.mean()
    assert r.statistic == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------- PCA


def _blocks(n: int, rho: float, rng: np.random.Generator, correlated: bool) -> np.ndarray:
    """Ten features; ``correlated``: 0-4 share one factor, 5-9 another (within-block 0.8).

    Features 0 and 5 are uncorrelated; ``rho`` sets their correlation in the output.
    """
    x = rng.standard_normal((n, 10))
    if correlated:
        f = rng.standard_normal((n, 2))
        x[:, 0:5] = (f[:, [0]] + 0.5 * x[:, 0:5]) / math.sqrt(1.25)
        x[:, 5:10] = (f[:, [1]] + 0.5 * x[:, 5:10]) / math.sqrt(1.25)
    x[:, 5] = rho * x[:, 0] + math.sqrt(1 - rho**2) * x[:, 5]
    return x


def test_pca_reconstruction_detects_correlation_change_correlated_reference() -> None:
    hits = alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        model = PCAReconstruction.fit(_blocks(5000, 0.0, rng, True))
        assert 3 <= model.n_components <= 6  # 2 factors reach 84 %, noise axes the rest
        hits += model.test(_blocks(5000, 0.6, rng, True)).drifted
        alarms += model.test(_blocks(5000, 0.0, rng, True)).drifted
    assert hits >= 38  # >= 95 %
    assert alarms <= 6


@pytest.mark.parametrize("correlated", [False, True])
def test_pca_covariance_detects_correlation_change(correlated: bool) -> None:
    hits = alarms = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        model = PCAReconstruction.fit(_blocks(5000, 0.0, rng, correlated))
        hits += model.test(_blocks(5000, 0.6, rng, correlated), method="covariance").drifted
        alarms += model.test(_blocks(5000, 0.0, rng, correlated), method="covariance").drifted
    assert hits == 20
    assert alarms <= 3


def test_pca_independent_reference_keeps_a_residual() -> None:
    rng = np.random.default_rng(0)
    model = PCAReconstruction.fit(rng.standard_normal((5000, 10)))
    assert 1 <= model.n_components <= 9
    # cross-fitted null: a same-distribution window is not flagged
    assert not model.test(rng.standard_normal((5000, 10))).drifted


def test_pca_round_trip_and_edges() -> None:
    rng = np.random.default_rng(0)
    ref = _blocks(2000, 0.0, rng, True)
    ref[:, 3] = 4.0  # constant feature
    ref[::50, 2] = np.nan
    model = PCAReconstruction.fit(ref)
    blob = json.loads(json.dumps(model.to_dict(), allow_nan=False))
    again = PCAReconstruction.from_dict(blob)
    win = _blocks(1000, 0.6, rng, True)
    win[:, 3] = 4.0
    for method in ("reconstruction", "covariance"):
        a = model.test(win, method=method)
        b = again.test(win, method=method)
        assert a == b
        _no_nan(a)
    assert PCAReconstruction.fit(ref, n_components=2).n_components == 2
    tiny = PCAReconstruction.fit(ref[:3])
    assert tiny.test(win).to_dict()["p_value"] == 1.0
    assert not model.test(win[:1]).drifted
    _no_nan(PCAReconstruction.fit(np.ones((100, 3))).test(np.ones((100, 3))))
    _no_nan(PCAReconstruction.fit(rng.normal(size=(100, 1))).test(rng.normal(size=(50, 1))))
    with pytest.raises(ValueError, match="method"):
        model.test(win, method="nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- general


def test_result_to_dict_replaces_non_finite() -> None:
    r = TestResult("x", float("nan"), float("inf"), 0.05, False)
    assert r.to_dict() == {
        "test": "x",
        "statistic": None,
        "p_value": None,
        "threshold": 0.05,
        "drifted": False,
    }


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ks_exact(np.ones(3), np.ones(3), alpha=1.5)
    with pytest.raises(ValueError, match="threshold"):
        psi([1], [1], threshold=0.0)
    with pytest.raises(ValueError, match="n_permutations"):
        mmd(np.ones((3, 1)), np.ones((3, 1)), n_permutations=0)
