"""Is a model doing worse? Two comparisons of a performance metric, from whatever window computed
it (:mod:`driftline.detectors.performance`): :func:`relative_drop` against the reference
baseline, and :func:`performance_trend` over recent windows (slope, noise, direction).
Pure numpy; a metric that is undefined (None, NaN) never makes a verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["PerformanceTrend", "performance_trend", "relative_drop"]


def relative_drop(
    current: float | None, baseline: float | None, higher_is_better: bool = True
) -> float | None:
    """Relative degradation against a reference baseline; positive means worse.

    ``(baseline - current) / |baseline|`` for metrics where higher is better (accuracy, AUC),
    ``(current - baseline) / |baseline|`` otherwise (MAE, log loss).  None if either value is
    None or not finite, or the baseline is 0.

    >>> round(relative_drop(0.8, 0.9), 4)
    0.1111
    >>> round(relative_drop(1.2, 1.0, higher_is_better=False), 4)
    0.2
    """
    if current is None or baseline is None:
        return None
    if not (math.isfinite(current) and math.isfinite(baseline)) or baseline == 0:
        return None
    delta = baseline - current if higher_is_better else current - baseline
    return delta / abs(baseline)


@dataclass(frozen=True, slots=True)
class PerformanceTrend:
    """Least-squares trend of a metric over recent windows."""

    slope: float | None
    """Change of the metric per hour (timestamps given) or per window."""
    unit: Literal["per_hour", "per_window"]
    volatility: float | None
    """Standard deviation of the residuals around the fitted line (ddof=2)."""
    t_statistic: float | None
    """slope / its standard error."""
    change: float | None
    """Fitted change across the observed span (slope x span)."""
    direction: Literal["improving", "degrading", "stable"]
    n: int


def performance_trend(
    values: Sequence[float | None] | NDArray[np.float64],
    timestamps: Sequence[float] | NDArray[np.float64] | None = None,
    *,
    higher_is_better: bool = True,
    min_change: float = 0.01,
    min_t: float = 2.0,
) -> PerformanceTrend:
    """Slope, volatility and direction of a metric over recent windows.

    Fits ``value = a + b * t`` by least squares (``t`` in hours from epoch-second
    ``timestamps``, or the window number).  Rule for ``direction``: *stable* unless the
    fitted change over the span, ``b * (t_max - t_min)``, is at least ``min_change`` in
    absolute value (default 0.01 = one point of accuracy) **and** the slope is distinguishable
    from noise, ``|b / se(b)| >= min_t`` (default 2, about 95 % two-sided); then *improving*
    or *degrading* by the sign of ``b`` and ``higher_is_better``.  Windows whose value is None
    or NaN are dropped; with fewer than three left the trend is *stable* with undefined
    statistics (two points leave no residual to judge noise).

    >>> tr = performance_trend([0.90, 0.88, 0.86, 0.84, 0.82])
    >>> round(tr.slope, 3), tr.direction
    (-0.02, 'degrading')
    """
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    if timestamps is None:
        t = np.arange(v.size, dtype=np.float64)
        unit: Literal["per_hour", "per_window"] = "per_window"
    else:
        t = np.asarray(timestamps, dtype=np.float64) / 3600.0
        unit = "per_hour"
        if t.shape != v.shape:
            raise ValueError("values and timestamps differ in length")
    ok = np.isfinite(v) & np.isfinite(t)
    v, t = v[ok], t[ok]
    n = int(v.size)
    if n < 3 or np.ptp(t) == 0:
        return PerformanceTrend(None, unit, None, None, None, "stable", n)
    tc = t - t.mean()
    sxx = float(np.dot(tc, tc))
    slope = float(np.dot(tc, v - v.mean()) / sxx)
    residuals = v - v.mean() - slope * tc
    volatility = float(np.sqrt(np.dot(residuals, residuals) / (n - 2)))
    se = volatility / math.sqrt(sxx)
    t_stat = math.inf if se == 0 else slope / se
    if slope == 0:
        t_stat = 0.0
    change = slope * float(np.ptp(t))
    direction: Literal["improving", "degrading", "stable"] = "stable"
    if abs(change) >= min_change and abs(t_stat) >= min_t:
        better = (slope > 0) == higher_is_better
        direction = "improving" if better else "degrading"
    return PerformanceTrend(
        slope, unit, volatility, None if math.isinf(t_stat) else t_stat, change, direction, n
    )
