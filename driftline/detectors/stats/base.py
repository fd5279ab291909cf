"""What every statistical test shares: :class:`TestResult` and the input rules.

The helpers below implement the conventions of the package docstring (non-finite values
dropped, negative counts as zero, empty inputs give a non-drifted result, results never NaN);
the test modules use them so each rule is written once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Counts", "TestResult"]

Counts = ArrayLike | Mapping[Any, float]
"""Counts over shared bins: arrays align by position, Mappings (categories) by key."""


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
            "statistic": json_float(self.statistic),
            "p_value": None if self.p_value is None else json_float(self.p_value),
            "threshold": json_float(self.threshold),
            "drifted": bool(self.drifted),
        }


def json_float(x: float) -> float | None:
    """``x`` as a float, or ``None`` when it is not finite (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def finite_1d(x: ArrayLike) -> NDArray[np.float64]:
    """The finite values of ``x``, flattened."""
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def finite_rows(x: ArrayLike) -> NDArray[np.float64]:
    """Rows ``(n, d)`` of ``x`` whose every value is finite (1-D input: one column)."""
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


def count_pair(
    reference: Counts, window: Counts
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float]:
    """Aligned counts and their totals ``(r, w, n, m)``; a total <= 0 means an empty side."""
    r, w = _aligned_counts(reference, window)
    return r, w, float(r.sum()), float(w.sum())


def effect_on_proportions(
    test: str,
    reference: Counts,
    window: Counts,
    threshold: float,
    distance: Callable[[NDArray[np.float64], NDArray[np.float64]], float],
) -> TestResult:
    """An effect-size test between the two sides' proportions over the same bins: the shared
    rules (threshold checked, an empty side gives no drift) around ``distance(p, q)``."""
    threshold = check_threshold(threshold)
    r, w, n, m = count_pair(reference, window)
    if n <= 0.0 or m <= 0.0:
        return effect_result(test, 0.0, threshold)
    return effect_result(test, distance(r / n, w / m), threshold)


def check_level(name: str, value: float) -> float:
    """A significance level in (0, 1), or ``ValueError`` naming the parameter."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def check_threshold(value: float) -> float:
    """An effect threshold: a positive finite number, or ``ValueError``."""
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"threshold must be a positive finite number, got {value}")
    return value


def p_result(test: str, statistic: float, p_value: float, alpha: float) -> TestResult:
    """Result of a p-value test: drift when ``p < alpha`` (NaN statistic 0, NaN p 1)."""
    stat = float(statistic) if math.isfinite(statistic) else 0.0
    p = float(p_value) if math.isfinite(p_value) else 1.0
    p = min(max(p, 0.0), 1.0)
    return TestResult(test, stat, p, alpha, p < alpha)


def effect_result(test: str, statistic: float, threshold: float) -> TestResult:
    """Result of an effect-size test: drift when ``statistic >= threshold`` (NaN: 0)."""
    stat = float(statistic) if math.isfinite(statistic) else 0.0
    return TestResult(test, stat, None, threshold, stat >= threshold)
