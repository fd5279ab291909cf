"""Two-sample statistical tests for data drift: pure functions, numpy/scipy only, no I/O.

Every test compares a *reference* sample (or its binned/categorical counts) with a
*window* and returns a :class:`TestResult`. The verdict ``drifted`` is the raw,
per-test decision; correcting for many features is the job of
:func:`driftline.detectors.multiple_testing.adjust_p_values`.

Conventions shared by every function here:

* Non-finite values (NaN, +/-inf) are dropped before testing; counting them is the
  sketch's job. Negative or non-finite *counts* are treated as zero.
* An empty reference or window (nothing left after filtering) gives a non-drifted
  result with ``statistic=0.0`` and ``p_value=1.0`` for p-value tests (``None`` for
  effect-size tests). Results never contain NaN.
* p-value tests decide ``p_value < alpha``; effect-size tests decide
  ``statistic >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _st

__all__ = [
    "PCAReconstruction",
    "TestResult",
    "chi_square",
    "hellinger",
    "jensen_shannon",
    "ks_binned",
    "ks_exact",
    "mmd",
    "psi",
    "two_proportion",
    "wasserstein",
    "wasserstein_binned",
]

Counts = ArrayLike | Mapping[Any, float]

PSI_EPSILON = 1e-4
"""Proportion added to every bin before PSI (Evidently uses the same 0.0001 floor)."""

CHI2_PSEUDO_COUNT = 0.5
"""Pseudo-count added to every reference category for chi-square (Jeffreys prior)."""

CHI2_MIN_EXPECTED = 5.0
"""Categories with a smaller expected count are pooled (Cochran 1954 rule of thumb)."""

_MMD_MEDIAN_PAIRS = 20_000

WASSERSTEIN_MIN_SCALE = 1e-3
"""Floor of the normalising std for Wasserstein (Evidently's ``max(std, 0.001)``)."""


@dataclass(frozen=True, slots=True)
class TestResult:
    """Outcome of one statistical test on one feature (or one feature set).

    ``threshold`` is ``alpha`` for p-value tests and the effect threshold otherwise;
    ``drifted`` is the raw verdict before any multiple-testing correction.

    >>> TestResult("psi", 0.25, None, 0.2, True).to_dict()
    {'test': 'psi', 'statistic': 0.25, 'p_value': None, 'threshold': 0.2, 'drifted': True}
    """

    __test__ = False  # not a pytest test class despite the name

    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict; non-finite floats become ``None``."""
        return {
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": None if self.p_value is None else _json_float(self.p_value),
            "threshold": _json_float(self.threshold),
            "drifted": bool(self.drifted),
        }


# --------------------------------------------------------------------------- helpers


def _json_float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _finite_1d(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def _finite_rows(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, features), got shape {a.shape}")
    return a[np.isfinite(a).all(axis=1)]


def _clean_counts(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64).ravel()
    return np.where(np.isfinite(a) & (a > 0), a, 0.0)


def _aligned_counts(
    reference: Counts, window: Counts
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two count vectors over the same bins: arrays by position, Mappings by key."""
    if isinstance(reference, Mapping) or isinstance(window, Mapping):
        if not (isinstance(reference, Mapping) and isinstance(window, Mapping)):
            raise TypeError("pass both counts as arrays or both as Mappings")
        keys = sorted(set(reference) | set(window), key=str)
        r = _clean_counts([reference.get(k, 0.0) for k in keys])
        w = _clean_counts([window.get(k, 0.0) for k in keys])
        return r, w
    r, w = _clean_counts(reference), _clean_counts(window)
    if r.shape != w.shape:
        raise ValueError(f"counts must cover the same bins: {r.shape} vs {w.shape}")
    return r, w


def _check_level(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def _check_threshold(value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"threshold must be a positive finite number, got {value}")
    return value


def _p_result(test: str, statistic: float, p_value: float, alpha: float) -> TestResult:
    stat = float(statistic) if math.isfinite(statistic) else 0.0
    p = float(p_value) if math.isfinite(p_value) else 1.0
    p = min(max(p, 0.0), 1.0)
    return TestResult(test, stat, p, alpha, p < alpha)


def _effect_result(test: str, statistic: float, threshold: float) -> TestResult:
    stat = float(statistic) if math.isfinite(statistic) else 0.0
    return TestResult(test, stat, None, threshold, stat >= threshold)


# ---------------------------------------------------------------------- univariate


def ks_exact(
    reference: NDArray[np.float64],
    window: NDArray[np.float64],
    alpha: float = 0.05,
    method: Literal["auto", "exact", "asymp"] = "auto",
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test on raw values (delegates to scipy).

    Rule: ``D = max_x |F_ref(x) - F_win(x)|``; drift when ``p_value < alpha``.
    The p-value is scipy's ``ks_2samp(method="auto")``: exact for small samples,
    asymptotic (Kolmogorov) for large ones. Assumes continuous data; with ties the
    test is conservative. ``alpha=0.05`` is the usual level (Evidently's default too).
    ``method`` is passed to scipy: ``"asymp"`` is ~10x faster on samples of thousands
    (the window evaluation uses it for its reported KS; the verdict uses ``ks_binned``).

    >>> rng = np.random.default_rng(0)
    >>> r = ks_exact(rng.normal(size=500), rng.normal(0.5, size=500))
    >>> r.drifted, round(r.statistic, 3)
    (True, 0.214)
    """
    alpha = _check_level("alpha", alpha)
    ref, win = _finite_1d(reference), _finite_1d(window)
    if ref.size == 0 or win.size == 0:
        return TestResult("ks", 0.0, 1.0, alpha, False)
    res = _st.ks_2samp(ref, win, method=method)
    return _p_result("ks", float(res.statistic), float(res.pvalue), alpha)


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
    alpha = _check_level("alpha", alpha)
    r, w = _aligned_counts(reference_counts, window_counts)
    n, m = float(r.sum()), float(w.sum())
    if n <= 0.0 or m <= 0.0:
        return TestResult("ks_binned", 0.0, 1.0, alpha, False)
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(w) / m)))
    d = min(max(d, 0.0), 1.0)
    en = max(round(n * m / (n + m)), 1)
    # kstwo.sf is exact but costs up to 40 ms when en is in the thousands and p is tiny. Where
    # the limiting distribution already says p < 1e-6 (far below any corrected alpha), its
    # value is used instead: the verdict cannot change and it is ~100x faster.
    limit = float(_st.kstwobign.sf(d * math.sqrt(en)))
    p = limit if limit < 1e-6 else float(_st.kstwo.sf(d, en))
    return _p_result("ks_binned", d, p, alpha)


def psi(
    reference_counts: Counts,
    window_counts: Counts,
    threshold: float = 0.2,
    *,
    epsilon: float = PSI_EPSILON,
) -> TestResult:
    """Population Stability Index over shared bins (reference-quantile bins).

    Rule: ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` with ``p``/``q`` the reference
    and window proportions after additive smoothing
    ``p_i = (c_i / N + epsilon) / (1 + k * epsilon)`` (``epsilon=1e-4``, the floor
    Evidently applies), so empty bins neither divide by zero nor dominate: a bin empty
    on both sides contributes 0. Drift when ``PSI >= threshold``.

    Thresholds: < 0.1 no significant change, 0.1-0.2 moderate, >= 0.2 significant:
    the credit-scoring convention (Siddiqi 2006, *Credit Risk Scorecards*). It is an
    effect size without a p-value; with small windows it is biased upward by about
    ``(k - 1) * (1/N + 1/M)``.

    >>> r = psi([25, 25, 25, 25], [10, 20, 30, 40])
    >>> round(r.statistic, 4), r.drifted
    (0.228, True)
    """
    threshold = _check_threshold(threshold)
    r, w = _aligned_counts(reference_counts, window_counts)
    n, m = float(r.sum()), float(w.sum())
    if n <= 0.0 or m <= 0.0 or r.size == 0:
        return TestResult("psi", 0.0, None, threshold, False)
    k = r.size
    p = (r / n + epsilon) / (1.0 + k * epsilon)
    q = (w / m + epsilon) / (1.0 + k * epsilon)
    value = float(np.sum((q - p) * np.log(q / p)))
    return _effect_result("psi", max(value, 0.0), threshold)


def chi_square(
    reference_counts: Mapping[str, float],
    window_counts: Mapping[str, float],
    alpha: float = 0.05,
    *,
    pseudo_count: float = CHI2_PSEUDO_COUNT,
    min_expected: float = CHI2_MIN_EXPECTED,
) -> TestResult:
    """Pearson chi-square goodness of fit of window counts against reference proportions.

    Rule: ``X2 = sum_k (O_k - E_k)^2 / E_k`` with ``E_k = m * p_k``,
    ``p_k = (r_k + 0.5) / (N + 0.5 K)`` over the union of the ``K`` categories of
    both sides; ``X2 ~ chi2(B - 1)`` for ``B`` buckets (``scipy.stats.chisquare``).
    Drift when ``p_value < alpha``.

    * Unseen categories (in the window, not in the reference) get the pseudo-count
      0.5 (Jeffreys prior) instead of a zero expected count, so they never divide
      by zero and a new category with many rows drives ``X2`` up.
    * Categories with ``E_k < 5`` (Cochran's rule) are pooled into one bucket whose
      expected count is floored at 1 (Cochran: none below 1), the other buckets
      scaled down to keep the total: a new category holding 10 % of a 100-row window
      gives ``(10 - 1)^2 / 1 = 81``; a single stray row gives nothing.
    * Fewer than two buckets (e.g. every category rare): no test, ``p=1``.

    The reference is treated as the known truth (goodness of fit, not a test of
    homogeneity), which is right when the reference is much larger than the window.

    >>> r = chi_square({"a": 500, "b": 300, "c": 200}, {"a": 40, "b": 30, "c": 30, "new": 20})
    >>> r.drifted, round(r.p_value, 6)
    (True, 0.0)
    """
    alpha = _check_level("alpha", alpha)
    r, w = _aligned_counts(reference_counts, window_counts)
    n, m = float(r.sum()), float(w.sum())
    if n <= 0.0 or m <= 0.0:
        return TestResult("chi_square", 0.0, 1.0, alpha, False)
    p = (r + pseudo_count) / (n + pseudo_count * r.size)
    expected = m * p
    small = expected < min_expected
    obs_b = list(w[~small])
    exp_b = list(expected[~small])
    if small.any() and exp_b:
        # One pooled bucket for rare and unseen categories, expected count floored
        # at 1 (mass taken proportionally from the others) so a new category with
        # many rows stands out instead of dividing by ~0 or vanishing in a merge.
        pooled_e = float(expected[small].sum())
        floor = min(1.0, 0.5 * m)
        if pooled_e < floor:
            exp_b = [e * (m - floor) / (m - pooled_e) for e in exp_b]
            pooled_e = floor
        obs_b.append(float(w[small].sum()))
        exp_b.append(pooled_e)
    if len(obs_b) < 2:
        return TestResult("chi_square", 0.0, 1.0, alpha, False)
    res = _st.chisquare(np.asarray(obs_b), np.asarray(exp_b))
    return _p_result("chi_square", float(res.statistic), float(res.pvalue), alpha)


def jensen_shannon(
    reference_counts: Counts, window_counts: Counts, threshold: float = 0.1
) -> TestResult:
    """Jensen-Shannon *distance* (square root of the divergence, base 2), in [0, 1].

    Rule: ``JS = sqrt(0.5 KL(p || a) + 0.5 KL(q || a))``, ``a = (p + q) / 2``,
    logarithms base 2; ``0 * log 0 = 0`` so empty bins need no smoothing. Drift when
    ``JS >= threshold``; ``0.1`` is Evidently's default number for categorical columns,
    but Evidently takes natural logarithms: a base-2 distance is the natural-log one times
    ``1 / sqrt(ln 2)`` (about 1.20), so Evidently's 0.1 is 0.12 here.
    Hand-written (not ``scipy.spatial.distance.jensenshannon``) so that Mappings
    align by key and empty inputs give 0 instead of NaN; equal to scipy otherwise.

    >>> r = jensen_shannon({"a": 50, "b": 50}, {"a": 90, "b": 10})
    >>> round(r.statistic, 4), r.drifted
    (0.3831, True)
    """
    threshold = _check_threshold(threshold)
    r, w = _aligned_counts(reference_counts, window_counts)
    n, m = float(r.sum()), float(w.sum())
    if n <= 0.0 or m <= 0.0:
        return TestResult("jensen_shannon", 0.0, None, threshold, False)
    p, q = r / n, w / m
    a = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.sum(np.where(p > 0, p * np.log2(p / a), 0.0))
        kl_q = np.sum(np.where(q > 0, q * np.log2(q / a), 0.0))
    div = min(max(0.5 * float(kl_p + kl_q), 0.0), 1.0)
    return _effect_result("jensen_shannon", math.sqrt(div), threshold)


def hellinger(
    reference_counts: Counts, window_counts: Counts, threshold: float = 0.1
) -> TestResult:
    """Hellinger distance between binned/categorical distributions, in [0, 1].

    Rule: ``H = sqrt(1 - sum_i sqrt(p_i q_i))`` (``= ||sqrt p - sqrt q||_2 / sqrt 2``);
    empty bins need no smoothing. Drift when ``H >= threshold``. There is no
    literature default: 0.1 is our choice, on the same [0, 1] scale as the JS
    distance (for the same pair of distributions ``H`` is usually a bit below JS).

    >>> r = hellinger([50, 50], [90, 10])
    >>> round(r.statistic, 4), r.drifted
    (0.3249, True)
    """
    threshold = _check_threshold(threshold)
    r, w = _aligned_counts(reference_counts, window_counts)
    n, m = float(r.sum()), float(w.sum())
    if n <= 0.0 or m <= 0.0:
        return TestResult("hellinger", 0.0, None, threshold, False)
    bc = float(np.sum(np.sqrt((r / n) * (w / m))))
    return _effect_result("hellinger", math.sqrt(min(max(1.0 - bc, 0.0), 1.0)), threshold)


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
    threshold = _check_threshold(threshold)
    ref, win = _finite_1d(reference), _finite_1d(window)
    if ref.size == 0 or win.size == 0:
        return TestResult("wasserstein", 0.0, None, threshold, False)
    std = float(reference_std)
    scale = max(std, min_scale) if math.isfinite(std) else min_scale
    value = float(_st.wasserstein_distance(ref, win)) / scale
    return _effect_result("wasserstein", value, threshold)


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
    threshold = _check_threshold(threshold)
    r, w = _aligned_counts(reference_counts, window_counts)
    e = np.asarray(edges, dtype=np.float64).ravel()
    if e.size != r.size + 1 or not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0):
        raise ValueError(
            f"edges must be {r.size + 1} finite non-decreasing values, got {e.size} values"
        )
    n, m = float(r.sum()), float(w.sum())
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
    return _effect_result("wasserstein", float(area.sum()) / scale, threshold)


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
    alpha = _check_level("alpha", alpha)
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


# ---------------------------------------------------------------------- multivariate


def _standardise(
    x: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std


def mmd(
    reference: NDArray[np.float64],
    window: NDArray[np.float64],
    alpha: float = 0.05,
    n_permutations: int = 200,
    max_samples: int = 300,
    seed: int = 0,
) -> TestResult:
    """Maximum Mean Discrepancy permutation test with an RBF kernel (multivariate).

    Rule: unbiased ``MMD^2 = mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j)
    - 2 mean_{i,j} k(x_i,y_j)`` with ``k(x,y) = exp(-||x-y||^2 / (2 s^2))``, ``s^2``
    the median squared pairwise distance of the pooled subsample (median heuristic,
    Gretton et al. 2012, JMLR 13; estimated on at most 20,000 random pairs). ``p = (1 + #{b: MMD^2_b >= MMD^2}) / (B + 1)`` over
    ``B`` random relabellings of the pooled sample; drift when ``p < alpha``.

    Columns are standardised by the reference's mean and std (a constant column
    keeps scale 1) so no feature dominates the distance. Rows with a non-finite
    value are dropped; each side is subsampled without replacement to
    ``max_samples``, which bounds the cost (one ``600 x 600`` kernel, permutations
    as one ``(B+1, N) @ (N, N)`` product). Deterministic given ``seed``.

    Power is that of a 300-vs-300 test: mean shifts of ~0.3 std show up; a
    correlation change of 0.6 between two of ten features mostly does not (10-25 %
    of windows), use :class:`PCAReconstruction` ``method="covariance"`` for that.

    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(1000, 3))
    >>> mmd(ref, rng.normal(size=(1000, 3))).drifted
    False
    >>> mmd(ref, rng.normal(0.5, size=(1000, 3))).drifted
    True
    """
    alpha = _check_level("alpha", alpha)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    ref, win = _finite_rows(reference), _finite_rows(window)
    if ref.shape[1] != win.shape[1]:
        raise ValueError(f"feature counts differ: {ref.shape[1]} vs {win.shape[1]}")
    if ref.shape[0] < 2 or win.shape[0] < 2:
        return TestResult("mmd", 0.0, 1.0, alpha, False)
    mean, std = _standardise(ref)
    rng = np.random.default_rng(seed)
    if ref.shape[0] > max_samples:
        ref = ref[rng.choice(ref.shape[0], max_samples, replace=False)]
    if win.shape[0] > max_samples:
        win = win[rng.choice(win.shape[0], max_samples, replace=False)]
    z = (np.vstack([ref, win]) - mean) / std
    n, m = ref.shape[0], win.shape[0]
    big_n = n + m
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    # Median heuristic on at most 20,000 random distinct pairs (the full triangle
    # costs more than the rest of the call; the median moves by ~1 %).
    if big_n * (big_n - 1) // 2 <= _MMD_MEDIAN_PAIRS:
        off = d2[np.triu_indices(big_n, 1)]
    else:
        i, j = rng.integers(0, big_n, size=(2, _MMD_MEDIAN_PAIRS))
        off = d2[i[i != j], j[i != j]]
    med = float(np.median(off))
    if not med > 0.0:
        positive = off[off > 0]
        med = float(np.median(positive)) if positive.size else 1.0
    kern = np.exp(d2 * (-0.5 / med))
    # Row 0 is the observed labelling, rows 1..B are permutations; a[b, i] = 1 if i in X.
    labels = np.zeros((n_permutations + 1, big_n))
    labels[0, :n] = 1.0
    perm = np.argsort(rng.random((n_permutations, big_n)), axis=1)[:, :n]
    np.put_along_axis(labels[1:], perm, 1.0, axis=1)
    ak = labels @ kern
    k_xx = np.einsum("ij,ij->i", ak, labels)  # a' K a
    k_x_all = ak.sum(axis=1)  # a' K 1
    total = float(kern.sum())
    k_xy = k_x_all - k_xx
    k_yy = total - 2.0 * k_xy - k_xx
    diag = 1.0  # k(x, x) for the RBF kernel
    stats_ = (
        (k_xx - n * diag) / (n * (n - 1)) + (k_yy - m * diag) / (m * (m - 1)) - 2.0 * k_xy / (n * m)
    )
    observed = float(stats_[0])
    # Tolerance so permutations equal to the observed value up to rounding count as ties.
    tol = 1e-12 * max(1.0, abs(observed))
    exceed = int(np.count_nonzero(stats_[1:] >= observed - tol))
    p = (exceed + 1) / (n_permutations + 1)
    return _p_result("mmd", observed, p, alpha)


@dataclass(frozen=True, slots=True, eq=False)
class PCAReconstruction:
    """PCA fitted on the reference; tests windows for a change in the joint structure.

    Fit: standardise by the reference mean/std; take the principal axes (eigenvectors of the
    covariance) of the even reference rows and keep the ``k`` leading ones reaching ``variance_kept`` of
    the variance (at most ``d - 1``, so a residual always exists; ``n_components``
    fixes ``k``). The odd rows, out-of-sample for those axes like any window, give
    the null statistics (cross-fitting: in-sample residuals are biased low, badly so
    when eigenvalues are nearly equal; measured: 100 % false alarms without it).

    ``test(method="reconstruction")`` (default): per-row error
    ``e(x) = ||z - z V_k V_k'||^2 / d``, one-sided Welch z
    ``z = (mean e_win - mean e_ref) / sqrt(var_ref/n + var_win/m)``, drift when
    ``norm.sf(z) < alpha``; ``statistic`` is ``z``. Catches new variance outside the
    reference's principal subspace: a relationship the reference had is broken, or a
    new one cuts across it. Limitation: when the reference has no correlation, every
    direction is as "principal" as any other, the discarded ones are set by noise, and
    a new correlation between two features changes the residual only by chance.

    ``test(method="covariance")`` (``test="pca_covariance"``): whiten with all axes,
    ``u = z V / sqrt(lambda)``, and compare the ``d(d+1)/2`` second moments
    ``u_j u_l`` (centred, ``j <= l``) of the window with the odd reference rows:
    ``T = sum (mean_win - mean_ref)^2 / (var_ref/n + var_win/m) ~ chi2(d(d+1)/2)``
    (variances of the products are estimated, so heavy tails are accounted for per
    entry; correlation between entries is ignored, which makes it approximate).
    It catches a correlation change 0 -> 0.6 between two of ten *independent*
    features in every 5,000-row window we tried, which neither the reconstruction
    error nor MMD at its default size (300 rows a side) does.

    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(5000, 10))
    >>> ref[:, 1] = 0.9 * ref[:, 0] + 0.1 * ref[:, 1]
    >>> model = PCAReconstruction.fit(ref)
    >>> model.test(ref[:2000]).drifted
    False
    >>> win = rng.normal(size=(5000, 10))
    >>> model.test(win).drifted
    True
    """

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    components: NDArray[np.float64]  # (d, d), rows = principal axes, leading first
    variances: NDArray[np.float64]  # (d,) eigenvalues of the standardised reference
    n_components: int
    n_reference: int
    error_mean: float
    error_var: float
    product_mean: NDArray[np.float64]  # (d*(d+1)/2,) reference mean of u_j u_l, j <= l
    product_var: NDArray[np.float64]  # (d*(d+1)/2,) reference variance of u_j u_l

    @classmethod
    def fit(
        cls,
        reference: NDArray[np.float64],
        variance_kept: float = 0.9,
        *,
        n_components: int | None = None,
    ) -> PCAReconstruction:
        """Fit on reference rows ``(n, d)``; ``n_components`` overrides ``variance_kept``."""
        if not 0.0 < variance_kept <= 1.0:
            raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
        ref = _finite_rows(reference)
        n, d = ref.shape
        n_tri = d * (d + 1) // 2
        if n < 4:
            return cls(
                np.zeros(d),
                np.ones(d),
                np.eye(d),
                np.ones(d),
                0,
                0,
                0.0,
                0.0,
                np.zeros(n_tri),
                np.zeros(n_tri),
            )
        mean, scale = _standardise(ref)
        z = (ref - mean) / scale
        # Cross-fitting: axes from the even rows, null statistics from the odd rows, so
        # the reference errors are out-of-sample like a window's (in-sample residuals
        # are biased low, badly so when eigenvalues are nearly equal).
        z_fit, z_null = z[0::2], z[1::2]
        n_fit = z_fit.shape[0]
        zc = z_fit - z_fit.mean(axis=0)
        eigval, eigvec = np.linalg.eigh((zc.T @ zc) / (n_fit - 1))  # d x d: cheap
        order = np.argsort(eigval)[::-1]
        variances = np.maximum(eigval[order], 0.0)
        vt = np.ascontiguousarray(eigvec[:, order].T)
        total = float(variances.sum())
        if n_components is None:
            if total > 0:
                cum = np.cumsum(variances) / total
                k = int(np.searchsorted(cum, variance_kept - 1e-12) + 1)
            else:
                k = 0
        else:
            k = int(n_components)
        k = min(max(k, 0), d - 1)
        errors = _reconstruction_errors(z_null, vt[:k])
        u = _whiten(z_null, vt, variances)
        prod = _pair_products(u)
        return cls(
            mean=mean,
            scale=scale,
            components=vt,
            variances=variances,
            n_components=k,
            n_reference=z_null.shape[0],
            error_mean=float(errors.mean()),
            error_var=float(errors.var(ddof=1)),
            product_mean=prod.mean(axis=0),
            product_var=prod.var(axis=0, ddof=1),
        )

    def test(
        self,
        window: NDArray[np.float64],
        alpha: float = 0.05,
        *,
        method: Literal["reconstruction", "covariance"] = "reconstruction",
    ) -> TestResult:
        """Test window rows ``(m, d)``; see the class docstring for both methods."""
        alpha = _check_level("alpha", alpha)
        if method not in ("reconstruction", "covariance"):
            raise ValueError(f"method must be 'reconstruction' or 'covariance', got {method!r}")
        name = "pca_reconstruction" if method == "reconstruction" else "pca_covariance"
        win = _finite_rows(window)
        d = self.mean.size
        if win.shape[1] != d:
            raise ValueError(f"window has {win.shape[1]} features, the model {d}")
        m, n = win.shape[0], self.n_reference
        if m < 2 or n < 2:
            return TestResult(name, 0.0, 1.0, alpha, False)
        z = (win - self.mean) / self.scale
        if method == "reconstruction":
            errors = _reconstruction_errors(z, self.components[: self.n_components])
            diff = float(errors.mean()) - self.error_mean
            se = math.sqrt(max(self.error_var / n + float(errors.var(ddof=1)) / m, 0.0))
            if se > 0.0:
                stat = diff / se
            else:
                stat = 0.0 if abs(diff) <= 1e-12 else math.copysign(1e12, diff)
            return _p_result(name, stat, float(_st.norm.sf(stat)), alpha)
        prod = _pair_products(_whiten(z, self.components, self.variances))
        dev = prod.mean(axis=0) - self.product_mean
        var = self.product_var / n + prod.var(axis=0, ddof=1) / m
        var = np.maximum(var, 1e-12 * (1.0 / n + 1.0 / m))
        stat = float(np.sum(dev**2 / var))
        return _p_result(name, stat, float(_st.chi2.sf(stat, dev.size)), alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible representation (lists of floats)."""
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "n_components": self.n_components,
            "n_reference": self.n_reference,
            "error_mean": self.error_mean,
            "error_var": self.error_var,
            "product_mean": self.product_mean.tolist(),
            "product_var": self.product_var.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PCAReconstruction:
        """Inverse of :meth:`to_dict`."""
        dim = len(d["mean"])
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            components=np.asarray(d["components"], dtype=np.float64).reshape(dim, dim),
            variances=np.asarray(d["variances"], dtype=np.float64),
            n_components=int(d["n_components"]),
            n_reference=int(d["n_reference"]),
            error_mean=float(d["error_mean"]),
            error_var=float(d["error_var"]),
            product_mean=np.asarray(d["product_mean"], dtype=np.float64),
            product_var=np.asarray(d["product_var"], dtype=np.float64),
        )


def _reconstruction_errors(
    z: NDArray[np.float64], kept: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per-row squared residual after projecting on ``kept`` axes, divided by d."""
    scores = z @ kept.T
    resid = np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", scores, scores)
    out: NDArray[np.float64] = np.maximum(resid, 0.0) / z.shape[1]
    return out


def _whiten(
    z: NDArray[np.float64], axes: NDArray[np.float64], variances: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Scores on all axes divided by their reference std (floored for null axes)."""
    floor = max(float(variances.sum()), 1.0) * 1e-6
    out: NDArray[np.float64] = (z @ axes.T) / np.sqrt(np.maximum(variances, floor))
    return out


def _pair_products(u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-row products ``u_j u_l`` for ``j <= l``, centred by column mean."""
    u = u - u.mean(axis=0)
    j, k = np.triu_indices(u.shape[1])
    out: NDArray[np.float64] = u[:, j] * u[:, k]
    return out
