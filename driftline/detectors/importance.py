"""Feature-importance drift: has what the model relies on changed?

Two sources of per-feature importance for a window:

* with attributions per record (e.g. SHAP values): the mean absolute attribution per feature,
  accumulated as mergeable sums (:class:`AttributionSums`);
* without: a model-agnostic proxy, the mutual information between each feature and the
  model's prediction on a window sample (:func:`mutual_information_importance`): quantile bins
  for numeric features, plug-in estimate for categorical ones.

:func:`compare_importance` compares a window's importances with the reference's by Spearman
rank correlation and by the top-k feature set.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr

__all__ = [
    "AttributionSums",
    "FeatureRankChange",
    "ImportanceShift",
    "compare_importance",
    "mutual_information",
    "mutual_information_importance",
]


class AttributionSums:
    """Mergeable per-feature sums of |attribution| for mean-absolute-attribution importance.

    NaN attributions are skipped per feature.

    >>> acc = AttributionSums(["a", "b"])
    >>> acc.update([[0.5, -0.1], [-1.5, 0.3]])
    >>> acc.mean_abs()
    {'a': 1.0, 'b': 0.2}
    """

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        if len(set(self.features)) != len(self.features):
            raise ValueError("feature names must be unique")
        self.sum_abs = np.zeros(len(self.features), dtype=np.float64)
        self.count = np.zeros(len(self.features), dtype=np.int64)

    def update(self, attributions: ArrayLike) -> None:
        """Add a (n_records, n_features) array of attributions, columns in feature order."""
        a = np.asarray(attributions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != len(self.features):
            raise ValueError(f"expected shape (n, {len(self.features)}), got {a.shape}")
        ok = ~np.isnan(a)
        self.sum_abs += np.where(ok, np.abs(a), 0.0).sum(axis=0)
        self.count += ok.sum(axis=0)

    def merge(self, other: AttributionSums) -> AttributionSums:
        """A new object holding the sum of both (same features required)."""
        if other.features != self.features:
            raise ValueError("cannot merge attribution sums over different features")
        out = AttributionSums(self.features)
        out.sum_abs = self.sum_abs + other.sum_abs
        out.count = self.count + other.count
        return out

    def mean_abs(self) -> dict[str, float | None]:
        """Mean |attribution| per feature (None for a feature with no value)."""
        return {
            f: (float(s / c) if c > 0 else None)
            for f, s, c in zip(self.features, self.sum_abs, self.count, strict=True)
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "features": list(self.features),
            "sum_abs": self.sum_abs.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributionSums:
        """Inverse of :meth:`to_dict`."""
        out = cls(data["features"])
        out.sum_abs = np.asarray(data["sum_abs"], dtype=np.float64).reshape(len(out.features))
        out.count = np.asarray(data["count"], dtype=np.int64).reshape(len(out.features))
        return out


def _codes(values: NDArray[Any], categorical: bool, n_bins: int) -> NDArray[np.int64]:
    """Integer codes: category index, or quantile-bin index for numeric values."""
    if categorical or values.dtype.kind in "OUSb":
        return np.unique(values.astype(str), return_inverse=True)[1].astype(np.int64).ravel()
    x = values.astype(np.float64)
    if np.unique(x).size <= n_bins:  # few distinct values: use them as categories
        return np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()
    inner = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return np.searchsorted(inner, x, side="right").astype(np.int64)


def mutual_information(
    feature: ArrayLike,
    target: ArrayLike,
    *,
    n_bins: int = 10,
    feature_categorical: bool = False,
    target_categorical: bool = False,
) -> float:
    """Plug-in mutual information (nats) between a feature and the prediction.

    :math:`I = \\sum_{a,b} \\hat p(a,b) \\log(\\hat p(a,b) / \\hat p(a) \\hat p(b))` over the
    joint histogram.  Numeric variables with more than ``n_bins`` distinct values are cut at
    their empirical quantiles into ``n_bins`` bins; others are used as categories.  Missing
    values (NaN/None) drop the record.  The plug-in estimate is biased upward by about
    ``(A-1)(B-1) / 2n`` nats (Miller-Madow): compare importances computed on samples of the
    same size.

    >>> round(mutual_information([0, 0, 1, 1], [0, 0, 1, 1]), 4)  # = log 2
    0.6931
    >>> mutual_information([0, 1, 0, 1], [0, 0, 1, 1])
    0.0
    """
    f = np.asarray(feature).ravel()
    t = np.asarray(target).ravel()
    if f.shape != t.shape:
        raise ValueError("feature and target differ in length")
    keep = ~(_missing(f) | _missing(t))
    f, t = f[keep], t[keep]
    if f.size == 0:
        return 0.0
    a = _codes(f, feature_categorical, n_bins)
    b = _codes(t, target_categorical, n_bins)
    n_b = int(b.max()) + 1
    joint = np.bincount(a * n_b + b, minlength=(int(a.max()) + 1) * n_b).reshape(-1, n_b)
    pj = joint / f.size
    pa = pj.sum(axis=1, keepdims=True)
    pb = pj.sum(axis=0, keepdims=True)
    nz = pj > 0
    mi = float(np.sum(pj[nz] * np.log(pj[nz] / (pa @ pb)[nz])))
    return max(mi, 0.0)


def _missing(values: NDArray[Any]) -> NDArray[np.bool_]:
    if values.dtype == object:
        return np.fromiter(
            (v is None or (isinstance(v, float) and math.isnan(v)) for v in values),
            dtype=bool,
            count=values.size,
        )
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values), dtype=bool)
    return np.zeros(values.size, dtype=bool)


def mutual_information_importance(
    features: Mapping[str, ArrayLike],
    prediction: ArrayLike,
    *,
    categorical: Collection[str] = (),
    prediction_categorical: bool = False,
    n_bins: int = 10,
    sample_size: int | None = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """Model-agnostic importance: MI between each feature and the prediction.

    A uniform random sample of ``sample_size`` records (seeded) is used when the window is
    larger; the same rows for every feature.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = {"signal": rng.normal(size=2000), "noise": rng.normal(size=2000)}
    >>> imp = mutual_information_importance(x, (x["signal"] > 0).astype(int))
    >>> imp["signal"] > 0.5 > imp["noise"]
    True
    """
    pred = np.asarray(prediction).ravel()
    n = pred.size
    rows: NDArray[np.int64] | None = None
    if sample_size is not None and n > sample_size:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample_size, replace=False))
        pred = pred[rows]
    out = {}
    for name, values in features.items():
        v = np.asarray(values).ravel()
        if v.size != n:
            raise ValueError(f"feature {name!r} has {v.size} values, prediction has {n}")
        if rows is not None:
            v = v[rows]
        out[name] = mutual_information(
            v,
            pred,
            n_bins=n_bins,
            feature_categorical=name in categorical,
            target_categorical=prediction_categorical,
        )
    return out


@dataclass(frozen=True, slots=True)
class FeatureRankChange:
    """One feature's importance and rank (1 = most important) in reference and current."""

    feature: str
    reference: float
    current: float
    reference_rank: int
    current_rank: int

    @property
    def rank_change(self) -> int:
        """Positive when the feature became more important (moved up)."""
        return self.reference_rank - self.current_rank


@dataclass(frozen=True, slots=True)
class ImportanceShift:
    """Result of :func:`compare_importance`."""

    spearman: float | None
    """Rank correlation of the importances; None if undefined (fewer than 2 features or a
    constant ranking)."""
    reference_top_k: tuple[str, ...]
    current_top_k: tuple[str, ...]
    top_k_changed: bool
    shifted: bool
    features: tuple[FeatureRankChange, ...]
    """Sorted by current rank."""


def _ranks(importance: Mapping[str, float], names: Sequence[str]) -> dict[str, int]:
    # descending importance, ties broken by name for determinism
    order = sorted(names, key=lambda f: (-importance[f], f))
    return {f: i + 1 for i, f in enumerate(order)}


def compare_importance(
    reference: Mapping[str, float | None],
    current: Mapping[str, float | None],
    *,
    threshold: float = 0.7,
    top_k: int = 3,
) -> ImportanceShift:
    """Compare per-feature importances of a window with the reference.

    Rule: *shifted* if the Spearman rank correlation over the common features is below
    ``threshold`` (default 0.7, the conventional boundary of a "strong" correlation; a
    convention, not a derived value) **or** the set of the ``top_k`` most important features
    (default 3, capped at the number of features) differs, order within it ignored.  Features
    missing on either side, or with None importance, are left out.

    >>> ref = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}
    >>> cur = {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.6}
    >>> s = compare_importance(ref, cur, top_k=2)
    >>> s.shifted, s.current_top_k, round(s.spearman, 6)
    (True, ('d', 'b'), -0.8)
    """
    names = sorted(
        f for f in reference if f in current and reference[f] is not None and current[f] is not None
    )
    ref = {f: float(v) for f, v in reference.items() if f in names and v is not None}
    cur = {f: float(v) for f, v in current.items() if f in names and v is not None}
    ref_rank, cur_rank = _ranks(ref, names), _ranks(cur, names)
    k = min(top_k, len(names))
    ref_top = tuple(sorted(names, key=lambda f: ref_rank[f])[:k])
    cur_top = tuple(sorted(names, key=lambda f: cur_rank[f])[:k])
    rho: float | None = None
    if len(names) >= 2:
        a = np.asarray([ref[f] for f in names])
        b = np.asarray([cur[f] for f in names])
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            rho = float(spearmanr(a, b).statistic)
    top_changed = set(ref_top) != set(cur_top)
    shifted = top_changed or (rho is not None and rho < threshold)
    changes = tuple(
        FeatureRankChange(f, ref[f], cur[f], ref_rank[f], cur_rank[f])
        for f in sorted(names, key=lambda f: cur_rank[f])
    )
    return ImportanceShift(rho, ref_top, cur_top, top_changed, shifted, changes)
