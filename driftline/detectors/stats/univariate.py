"""Tests of one numeric variable: on raw samples (KS, Wasserstein) or on counts over the same
ordered bins (binned KS, binned Wasserstein), and the two-proportion z-test of a rate."""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special as _special
from scipy import stats as _st

try:  # scipy's own two-sided KS distribution (what `kstwo.sf` calls); see `kstwo_sf`
    from scipy.stats._ksstats import kolmogn as _kolmogn
except ImportError:  # pragma: no cover - a scipy that moved it: the public path
    _kolmogn = None

from driftline.detectors.stats.base import (
    TestResult,
    check_level,
    check_threshold,
    count_pair,
    effect_result,
    finite_1d,
    p_result,
)

__all__ = [
    "WASSERSTEIN_MIN_SCALE",
    "ks_binned",
    "ks_exact",
    "sorted_finite",
    "two_proportion",
    "wasserstein",
    "wasserstein_binned",
]

KSTWO_CACHE_SIZE = 8_192
"""``(n, D)`` pairs whose KS p-value is remembered (``kstwo_sf``); ~1 MB at most."""

WASSERSTEIN_MIN_SCALE = 1e-3
"""Floor of the normalising std for Wasserstein (Evidently's ``max(std, 0.001)``)."""


def ks_exact(
    reference: NDArray[np.float64],
    window: NDArray[np.float64],
    alpha: float = 0.05,
    method: Literal["auto", "exact", "asymp"] = "auto",
    *,
    reference_sorted: bool = False,
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test on raw values (delegates to scipy).

    Rule: ``D = max_x |F_ref(x) - F_win(x)|``; drift when ``p_value < alpha``.
    The p-value is scipy's ``ks_2samp(method="auto")``: exact for small samples,
    asymptotic (Kolmogorov) for large ones. Assumes continuous data; with ties the
    test is conservative. ``alpha=0.05`` is the usual level (Evidently's default too).
    ``method`` is passed to scipy: ``"asymp"`` is ~10x faster on samples of thousands
    (the window evaluation uses it for its reported KS; the verdict uses ``ks_binned``).
    ``reference_sorted``: ``reference`` is already finite and sorted (a profile's column,
    prepared once: :func:`sorted_finite`), so it is neither filtered nor sorted again.

    >>> rng = np.random.default_rng(0)
    >>> r = ks_exact(rng.normal(size=500), rng.normal(0.5, size=500))
    >>> r.drifted, round(r.statistic, 3)
    (True, 0.214)
    """
    alpha = check_level("alpha", alpha)
    ref = np.asarray(reference, dtype=np.float64) if reference_sorted else finite_1d(reference)
    win = finite_1d(window)
    if ref.size == 0 or win.size == 0:
        return TestResult("ks", 0.0, 1.0, alpha, False)
    if method == "asymp":
        d, p = _ks_2samp_asymp(ref, win, data1_sorted=reference_sorted)
        return p_result("ks", d, p, alpha)
    res = _st.ks_2samp(ref, win, method=method)
    return p_result("ks", float(res.statistic), float(res.pvalue), alpha)


def sorted_finite(values: ArrayLike) -> NDArray[np.float64]:
    """The finite values of ``values``, sorted (what ``ks_exact(reference_sorted=True)`` takes).

    >>> sorted_finite([3.0, np.nan, -np.inf, 1.0]).tolist()
    [1.0, 3.0]
    """
    return np.sort(finite_1d(values))


def _ks_2samp_asymp(
    data1: NDArray[np.float64], data2: NDArray[np.float64], *, data1_sorted: bool = False
) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(data1, data2, method="asymp")`` (two-sided) on non-empty finite
    1-D samples: the same operations in the same order, so the same statistic and p-value to
    the bit, without scipy's argument handling (~0.5 ms a call: a window of 100 models x 20
    features ran it 2,000 times; `tests/unit/test_stats_ks_fast.py` compares the two).

    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.normal(size=300), rng.normal(0.2, size=200)
    >>> res = _st.ks_2samp(a, b, method="asymp")
    >>> _ks_2samp_asymp(a, b) == (float(res.statistic), float(res.pvalue))
    True
    """
    # sorting a sorted array gives the same values, so a presorted data1 is taken as it is
    data1, data2 = (data1 if data1_sorted else np.sort(data1)), np.sort(data2)
    n1, n2 = data1.shape[0], data2.shape[0]
    data_all = np.concatenate([data1, data2])
    cdf1 = data1.searchsorted(data_all, side="right") / n1
    cdf2 = data2.searchsorted(data_all, side="right") / n2
    cddiffs = cdf1 - cdf2
    # scalar clips and rounding as Python floats: np.clip/np.round's wrappers on a scalar cost
    # more than the arithmetic; min(max(x, 0), 1) is np.clip's value, NaN and -0.0 included,
    # and round() rounds half to even as np.round does
    min_s = _clip01(-float(cddiffs[cddiffs.argmin()]))
    max_s = float(cddiffs[cddiffs.argmax()])
    d = min_s if min_s > max_s else max_s
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = kstwo_sf(d, float(round(en)))
    return d, _clip01(p)


def _clip01(x: float) -> float:
    """``float(np.clip(x, 0, 1))`` for a scalar (NaN stays NaN, -0.0 stays -0.0).

    >>> [_clip01(x) for x in (-1.0, -0.0, 0.25, 2.0)]
    [0.0, -0.0, 0.25, 1.0]
    """
    return min(max(x, 0.0), 1.0)


def kstwo_sf(d: float, n: float) -> float:
    """``scipy.stats.kstwo.sf(d, n)`` for a scalar ``d`` and an integral ``n >= 1``: the same
    value (scipy's own `kolmogn` inside the support, 1 below it, 0 above), without
    ``rv_continuous``'s argument checks, which cost more than the value itself here.

    >>> [kstwo_sf(d, 50) == float(_st.kstwo.sf(d, 50)) for d in (0.0, 0.005, 0.2, 1.0)]
    [True, True, True, True]
    """
    if _kolmogn is None or not (n >= 1 and n == int(n)) or math.isnan(d):
        return float(_st.kstwo.sf(d, n))
    if d <= 0.5 / n:
        return 1.0
    if d >= 1.0:
        return 0.0
    return _kolmogn_sf(n, d)


@functools.lru_cache(maxsize=KSTWO_CACHE_SIZE, typed=True)
def _kolmogn_sf(n: float, d: float) -> float:
    """scipy's ``kolmogn(n, d, cdf=False)``, remembered. It is a pure function of ``(n, d)``
    and costs ~90 µs (a series in Python), and the same pairs come back window after window:
    ``n`` is fixed by the two sample sizes and ``D`` is a multiple of ``1/lcm(n1, n2)`` near
    the typical deviation, so windows of equal size (every model's, in a steady stream)
    share most of their values. ``typed``: an int ``n`` and a float ``n`` are kept apart, so
    a value is always the one scipy computes for the call as made."""
    return float(_kolmogn(n, d, cdf=False))


def ks_binned(
    reference_counts: ArrayLike, window_counts: ArrayLike, alpha: float = 0.05
) -> TestResult:
    """Kolmogorov-Smirnov test on counts over the same ordered bins.

    Rule: ``D = max_j |C_ref[j]/n - C_win[j]/m|`` over bin edges (``C`` cumulative
    counts, under/overflow bins included); ``p = kstwo.sf(D, round(n*m/(n+m)))``,
    the same asymptotic distribution scipy's ``ks_2samp(method="asymp")`` uses.
    Drift when ``p_value < alpha``.

    Binning only evaluates the CDFs at bin edges, so ``D`` is never larger than the
    exact statistic: the test is conservative (fewer false alarms, less power); with
    one distinct value per bin it equals the asymptotic exact test.

    >>> r = ks_binned([100, 300, 400, 200], [250, 350, 300, 100])
    >>> round(r.statistic, 2), r.drifted
    (0.2, True)
    """
    alpha = check_level("alpha", alpha)
    r, w, n, m = count_pair(reference_counts, window_counts)
    if n <= 0.0 or m <= 0.0:
        return TestResult("ks_binned", 0.0, 1.0, alpha, False)
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(w) / m)))
    d = min(max(d, 0.0), 1.0)
    en = max(round(n * m / (n + m)), 1)
    # kstwo.sf is exact but costs up to 40 ms when en is in the thousands and p is tiny. Where
    # the limiting distribution already says p < 1e-6 (far below any corrected alpha), its
    # value is used instead: the verdict cannot change and it is ~100x faster.
    limit = float(_special.kolmogorov(d * math.sqrt(en)))  # = kstwobign.sf, without its checks
    p = limit if limit < 1e-6 else kstwo_sf(d, en)
    return p_result("ks_binned", d, p, alpha)


def wasserstein(
    reference: NDArray[np.float64],
    window: NDArray[np.float64],
    reference_std: float,
    threshold: float = 0.1,
    *,
    min_scale: float = WASSERSTEIN_MIN_SCALE,
) -> TestResult:
    """Normalised 1-Wasserstein (earth mover's) distance.

    Rule: ``W = W1(ref, win) / max(reference_std, 0.001)`` with
    ``scipy.stats.wasserstein_distance``; drift when ``W >= threshold``. The ``0.1``
    default and the 0.001 floor are Evidently's (a shift of 10 % of a reference
    standard deviation). A constant reference (std 0 or non-finite) uses the floor,
    so a window equal to the constant gives 0 and any move is large. Effect size in
    reference standard deviations, no p-value.

    >>> rng = np.random.default_rng(0)
    >>> r = wasserstein(rng.normal(size=1000), rng.normal(0.5, size=1000), 1.0)
    >>> r.drifted, 0.4 < r.statistic < 0.6
    (True, True)
    """
    threshold = check_threshold(threshold)
    ref, win = finite_1d(reference), finite_1d(window)
    if ref.size == 0 or win.size == 0:
        return TestResult("wasserstein", 0.0, None, threshold, False)
    std = float(reference_std)
    scale = max(std, min_scale) if math.isfinite(std) else min_scale
    value = float(_st.wasserstein_distance(ref, win)) / scale
    return effect_result("wasserstein", value, threshold)


def wasserstein_binned(
    reference_counts: ArrayLike,
    window_counts: ArrayLike,
    edges: ArrayLike,
    reference_std: float = 1.0,
    threshold: float = 0.1,
    *,
    min_scale: float = WASSERSTEIN_MIN_SCALE,
) -> TestResult:
    """Normalised 1-Wasserstein distance between two histograms on the same bins.

    Rule: mass is spread uniformly inside each bin ``[edges[j], edges[j+1]]``, so both CDFs
    are piecewise linear and ``W1 = integral |F_ref - F_win|`` is exact for them (on each
    bin the difference is linear; where it changes sign the two triangles are summed).
    ``W = W1 / max(reference_std, 0.001)``; drift when ``W >= threshold``. ``edges`` has
    one more value than the counts and must be non-decreasing and finite. Every record
    of both sides counts, so on fine bins this is far less noisy than the distance
    between two samples of a few thousand rows. With ``reference_std=1`` the distance
    is in the data's units (e.g. score units for a score histogram).

    >>> edges = np.linspace(0.0, 1.0, 51)
    >>> ref = np.zeros(50); ref[10] = 100
    >>> win = np.zeros(50); win[15] = 100
    >>> round(wasserstein_binned(ref, win, edges).statistic, 6)  # moved by 5 bins of 0.02
    0.1
    """
    threshold = check_threshold(threshold)
    r, w, n, m = count_pair(reference_counts, window_counts)
    e = np.asarray(edges, dtype=np.float64).ravel()
    if e.size != r.size + 1 or not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0):
        raise ValueError(
            f"edges must be {r.size + 1} finite non-decreasing values, got {e.size} values"
        )
    if n <= 0.0 or m <= 0.0:
        return TestResult("wasserstein", 0.0, None, threshold, False)
    d = np.concatenate(([0.0], np.cumsum(r) / n - np.cumsum(w) / m))
    d0, d1, width = d[:-1], d[1:], np.diff(e)
    same = d0 * d1 >= 0
    a0, a1 = np.abs(d0), np.abs(d1)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(a0 + a1 > 0, (d0 * d0 + d1 * d1) / (2.0 * (a0 + a1)), 0.0)
    area = np.where(same, (a0 + a1) / 2.0, crossing) * width
    std = float(reference_std)
    scale = max(std, min_scale) if math.isfinite(std) else min_scale
    return effect_result("wasserstein", float(area.sum()) / scale, threshold)


def two_proportion(
    reference_hits: float,
    reference_n: float,
    window_hits: float,
    window_n: float,
    alpha: float = 0.05,
) -> TestResult:
    """Two-sided two-proportion z-test (pooled variance) of a rate, reference vs window.

    Rule: ``z = (p_win - p_ref) / sqrt(p (1 - p) (1/n + 1/m))`` with the pooled rate ``p``;
    ``p_value = 2 * (1 - Phi(|z|))``; the statistic is the signed difference
    ``p_win - p_ref`` (what an effect gate compares). Drift when ``p_value < alpha``.
    Normal approximation: fine when both sides have at least a few expected hits; a
    rate of 0 or 1 on both sides gives ``p = 1``.

    >>> r = two_proportion(2_000, 10_000, 400, 1_000)
    >>> round(r.statistic, 2), r.p_value < 1e-12
    (0.2, True)
    """
    alpha = check_level("alpha", alpha)
    n, m = float(reference_n), float(window_n)
    if not (n > 0 and m > 0 and math.isfinite(n) and math.isfinite(m)):
        return TestResult("two_proportion", 0.0, 1.0, alpha, False)
    a = min(max(float(reference_hits), 0.0), n) / n
    b = min(max(float(window_hits), 0.0), m) / m
    pooled = (a * n + b * m) / (n + m)
    var = pooled * (1.0 - pooled) * (1.0 / n + 1.0 / m)
    if var <= 0.0:
        return TestResult("two_proportion", b - a, 1.0, alpha, False)
    z = (b - a) / math.sqrt(var)
    p = float(2.0 * _st.norm.sf(abs(z)))
    return TestResult("two_proportion", b - a, min(max(p, 0.0), 1.0), alpha, p < alpha)
