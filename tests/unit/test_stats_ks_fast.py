"""The KS shortcuts of `stats/univariate.py` give scipy's values to the bit (window results must
not change because the evaluation got faster)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from driftline.detectors.stats import univariate
from driftline.detectors.stats.counts import pearson_chisquare
from driftline.detectors.stats.univariate import _ks_2samp_asymp, ks_binned, ks_exact, kstwo_sf


def _samples(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "ties":  # heavy ties: rounded values
        return np.round(rng.normal(size=n), 1)
    if kind == "heavy":
        return rng.standard_cauchy(size=n)
    return rng.integers(0, 3, size=n).astype(float)  # three distinct values


@pytest.mark.parametrize("kind", ["normal", "ties", "heavy", "few"])
def test_ks_asymp_equals_scipy(kind: str) -> None:
    rng = np.random.default_rng(7)
    for n1, n2 in [(1, 1), (1, 5), (2, 3), (17, 400), (2000, 150), (2000, 2000), (5000, 37)]:
        for shift in (0.0, 0.1, 1.0):
            a, b = _samples(rng, kind, n1), _samples(rng, kind, n2) + shift
            res = stats.ks_2samp(a, b, method="asymp")
            want = (float(res.statistic), float(res.pvalue))
            np.testing.assert_equal(_ks_2samp_asymp(a, b), want)  # NaN == NaN (n1 = n2 = 1)
            via = ks_exact(a, b, method="asymp")
            assert (via.statistic, via.p_value) == (want[0], want[1] if want[1] == want[1] else 1.0)


def test_kstwo_sf_equals_scipy_on_a_grid() -> None:
    for n in (1, 2, 3, 10, 57, 140, 1000, 4000, 100_000):
        for d in [0.0, 0.5 / n, np.nextafter(0.5 / n, 1), 1e-4, 0.01, 0.05, 0.1, 0.3, 0.7, 1.0]:
            assert kstwo_sf(float(d), n) == float(stats.kstwo.sf(d, n)), (d, n)
    assert np.isnan(kstwo_sf(0.3, 0)) and np.isnan(stats.kstwo.sf(0.3, 0))


def test_kstwo_sf_falls_back_to_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(univariate, "_kolmogn", None)
    assert kstwo_sf(0.2, 50) == float(stats.kstwo.sf(0.2, 50))


def test_ks_binned_limit_equals_kstwobign() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        r, w = rng.integers(0, 500, size=12), rng.integers(0, 500, size=12)
        got = ks_binned(r, w)
        n, m = float(r.sum()), float(w.sum())
        en = max(round(n * m / (n + m)), 1)
        d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(w) / m)))
        limit = float(stats.kstwobign.sf(d * np.sqrt(en)))
        want = limit if limit < 1e-6 else float(stats.kstwo.sf(d, en))
        assert got.p_value == min(max(want, 0.0), 1.0)


def test_pearson_chisquare_equals_scipy() -> None:
    rng = np.random.default_rng(11)
    for k in (2, 3, 5, 20, 200):
        for _ in range(40):
            expected = rng.random(k) * rng.choice([1.0, 50.0, 1e4]) + 0.1
            observed = rng.multinomial(int(expected.sum()), expected / expected.sum()).astype(float)
            expected *= observed.sum() / expected.sum()
            res = stats.chisquare(observed, expected)
            want = (float(res.statistic), float(res.pvalue))
            np.testing.assert_equal(pearson_chisquare(observed, expected), want)


def test_pearson_chisquare_leaves_disagreeing_sums_to_scipy() -> None:
    with pytest.raises(ValueError, match="sum of the observed"):
        pearson_chisquare(np.array([10.0, 20.0]), np.array([10.0, 10.0]))
