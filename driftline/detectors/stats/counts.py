"""Distances and tests between two count vectors over the same bins or categories: PSI,
chi-square, Jensen-Shannon and Hellinger (numeric features on the reference-quantile bins,
categorical features on the category counts)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray
from scipy import special as _special
from scipy import stats as _st

from driftline.detectors.stats.base import (
    Counts,
    TestResult,
    check_level,
    count_pair,
    effect_on_proportions,
    p_result,
)

__all__ = [
    "CHI2_MIN_EXPECTED",
    "CHI2_PSEUDO_COUNT",
    "PSI_EPSILON",
    "chi_square",
    "hellinger",
    "jensen_shannon",
    "psi",
]

PSI_EPSILON = 1e-4
"""Proportion added to every bin before PSI (Evidently uses the same 0.0001 floor)."""

CHI2_PSEUDO_COUNT = 0.5
"""Pseudo-count added to every reference category for chi-square (Jeffreys prior)."""

CHI2_MIN_EXPECTED = 5.0
"""Categories with a smaller expected count are pooled (Cochran 1954 rule of thumb)."""


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

    def distance(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
        k = p.size
        p = (p + epsilon) / (1.0 + k * epsilon)
        q = (q + epsilon) / (1.0 + k * epsilon)
        return max(float(np.sum((q - p) * np.log(q / p))), 0.0)

    return effect_on_proportions("psi", reference_counts, window_counts, threshold, distance)


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
    alpha = check_level("alpha", alpha)
    r, w, n, m = count_pair(reference_counts, window_counts)
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
    statistic, p_value = pearson_chisquare(np.asarray(obs_b), np.asarray(exp_b))
    return p_result("chi_square", statistic, p_value, alpha)


_SUM_RTOL = float(np.finfo(np.float64).eps) ** 0.5  # scipy's sum check


def pearson_chisquare(
    observed: NDArray[np.float64], expected: NDArray[np.float64]
) -> tuple[float, float]:
    """``scipy.stats.chisquare(observed, expected)`` on finite 1-D float counts whose sums
    agree: the same sum and ``chdtrc`` call, so the same statistic and p-value to the bit,
    without scipy's array-API and NaN-policy wrappers (~2 ms a call, a tenth of a window's
    evaluation). Anything else goes to scipy itself (which raises on sums that disagree).

    >>> obs, exp = np.array([40.0, 30.0, 30.0]), np.array([50.0, 30.0, 20.0])
    >>> res = _st.chisquare(obs, exp)
    >>> pearson_chisquare(obs, exp) == (float(res.statistic), float(res.pvalue))
    True
    """
    obs_sum, exp_sum = float(np.sum(observed)), float(np.sum(expected))
    if (
        observed.ndim != 1
        or observed.shape != expected.shape
        or not (math.isfinite(obs_sum) and math.isfinite(exp_sum))
        or not min(obs_sum, exp_sum) > 0.0
        or not abs(obs_sum - exp_sum) / min(obs_sum, exp_sum) <= _SUM_RTOL
    ):
        res = _st.chisquare(observed, expected)
        return float(res.statistic), float(res.pvalue)
    statistic = np.sum((observed - expected) ** 2 / expected)
    return float(statistic), float(_special.chdtrc(float(observed.size - 1), statistic))


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
    return effect_on_proportions(
        "jensen_shannon", reference_counts, window_counts, threshold, _js_distance
    )


def _js_distance(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    a = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.sum(np.where(p > 0, p * np.log2(p / a), 0.0))
        kl_q = np.sum(np.where(q > 0, q * np.log2(q / a), 0.0))
    return math.sqrt(min(max(0.5 * float(kl_p + kl_q), 0.0), 1.0))


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
    return effect_on_proportions(
        "hellinger", reference_counts, window_counts, threshold, _hellinger
    )


def _hellinger(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    return math.sqrt(min(max(1.0 - float(np.sum(np.sqrt(p * q))), 0.0), 1.0))
