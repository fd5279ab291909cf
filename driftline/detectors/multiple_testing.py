"""Multiple-testing corrections for per-feature drift p-values: pure, vectorised.

Testing 13 features at ``alpha=0.05`` each flags at least one of them in about half
of all drift-free windows (``1 - 0.95**13 = 0.49``). Adjust the p-values of one
window's tests together, then compare each adjusted p-value with ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as _st

__all__ = ["METHODS", "adjust_p_values"]

METHODS = ("holm", "bh", "bonferroni")


def adjust_p_values(
    p_values: Sequence[float] | NDArray[np.float64],
    method: Literal["holm", "bh", "bonferroni"] = "holm",
) -> NDArray[np.float64]:
    """Adjusted p-values, in the input order, monotone in the raw p-values, at most 1.

    With ``k`` p-values sorted ascending ``p_(1) <= ... <= p_(k)``:

    * ``"bonferroni"``: ``min(1, k p_i)``; controls the family-wise error rate (FWER)
      under any dependence.
    * ``"holm"`` (default; Holm 1979): ``max_{j<=i} min(1, (k - j + 1) p_(j))``;
      controls the FWER under any dependence and is uniformly more powerful than
      Bonferroni, hence the default.
    * ``"bh"`` (Benjamini & Hochberg 1995): ``min_{j>=i} min(1, k p_(j) / j)``;
      controls the false discovery rate for independent or positively dependent
      tests. Uses ``scipy.stats.false_discovery_control`` when available.

    alibi-detect offers Bonferroni (its default) and BH for the same purpose. NaN
    p-values are treated as 1 (no evidence); values are clipped to [0, 1].

    >>> adjust_p_values([0.01, 0.04, 0.03, 0.5], "holm").round(3).tolist()
    [0.04, 0.09, 0.09, 0.5]
    >>> adjust_p_values([0.01, 0.04, 0.03, 0.5], "bh").round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    >>> adjust_p_values([0.01, 0.04], "bonferroni").tolist()
    [0.02, 0.08]
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    p = np.asarray(p_values, dtype=np.float64).ravel()
    p = np.clip(np.where(np.isnan(p), 1.0, p), 0.0, 1.0)
    k = p.size
    if k == 0:
        return np.empty(0, dtype=np.float64)
    if method == "bonferroni":
        out: NDArray[np.float64] = np.minimum(p * k, 1.0)
        return out
    if method == "bh":
        if hasattr(_st, "false_discovery_control"):  # scipy >= 1.11
            bh = np.asarray(_st.false_discovery_control(p, method="bh"), dtype=np.float64)
            return np.minimum(bh, 1.0)
        return _bh_manual(p)
    order = np.argsort(p, kind="stable")
    ranks = np.arange(1, k + 1, dtype=np.float64)
    holm = np.maximum.accumulate(np.minimum((k - ranks + 1.0) * p[order], 1.0))
    result = np.empty(k, dtype=np.float64)
    result[order] = holm
    return result


def _bh_manual(p_values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """Benjamini-Hochberg by hand: fallback for scipy < 1.11 and cross-check in tests."""
    p = np.clip(np.asarray(p_values, dtype=np.float64).ravel(), 0.0, 1.0)
    k = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    adj = np.minimum.accumulate((ranked * k / np.arange(1, k + 1))[::-1])[::-1]
    result = np.empty(k, dtype=np.float64)
    result[order] = np.minimum(adj, 1.0)
    return result
