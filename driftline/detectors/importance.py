"""Feature-importance drift: has what the model relies on changed?

Two sources of per-feature importance for a window:

* with attributions per record (e.g. SHAP values): the mean absolute attribution per feature,
  accumulated as mergeable sums (:class:`AttributionSums`);
* without: a model-agnostic proxy, the mutual information between each feature and the
  model's prediction on a window sample (:func:`mutual_information_importance`): quantile bins
  for numeric features, plug-in estimate for categorical ones.

:func:`compare_importance` compares a window's importances with the reference's by Spearman
rank correlation and by the top-k feature set; :func:`importance_drift` is the worker's
verdict, on each feature's *share* of the total importance (a swap of the two leading features
barely moves a rank correlation; docs/DRIFT_DETECTION.md), and :func:`window_importance` picks
the source for a window (attributions, else the prediction proxy on the reservoir rows).

One module of ~750 lines on purpose: the measures, the reference's importances and the window's
verdict must use the same estimators and the same share rule, and read best side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr

from driftline.keys import SettingsError, key, read

if TYPE_CHECKING:
    from driftline.detectors.profile import ReferenceProfile
    from driftline.detectors.sketch import WindowSketch

__all__ = [
    "IMPORTANCE_SOURCES",
    "AttributionSums",
    "FeatureImportanceChange",
    "FeatureRankChange",
    "ImportanceConfigError",
    "ImportanceEvaluation",
    "ImportanceShift",
    "ImportanceThresholds",
    "compare_importance",
    "importance_drift",
    "importance_shares",
    "importance_thresholds_from_dict",
    "mutual_information",
    "mutual_information_importance",
    "proxy_importance",
    "reference_importance",
    "window_importance",
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


def _as_categories(values: NDArray[Any], categorical: bool) -> bool:
    return categorical or values.dtype.kind in "OUSb"


def _codes(values: NDArray[Any], categorical: bool, n_bins: int) -> NDArray[np.int64]:
    """Integer codes: category index, or quantile-bin index for numeric values."""
    if _as_categories(values, categorical):
        return np.unique(values.astype(str), return_inverse=True)[1].astype(np.int64).ravel()
    x = values.astype(np.float64)
    ordered = np.sort(x)  # one sort for the count of distinct values and the quantiles
    distinct = 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1])) if x.size else 0
    if distinct <= n_bins:  # few distinct values: use them as categories
        return np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()
    # the quantiles of sorted values are those of the values (the same order statistics)
    inner = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return np.searchsorted(inner, x, side="right").astype(np.int64)


def mutual_information(
    feature: ArrayLike,
    target: ArrayLike,
    *,
    n_bins: int = 10,
    feature_categorical: bool = False,
    target_categorical: bool = False,
    miller_madow: bool = False,
) -> float:
    """Plug-in mutual information (nats) between a feature and the prediction.

    :math:`I = \\sum_{a,b} \\hat p(a,b) \\log(\\hat p(a,b) / \\hat p(a) \\hat p(b))` over the
    joint histogram.  Numeric variables with more than ``n_bins`` distinct values are cut at
    their empirical quantiles into ``n_bins`` bins; others are used as categories.  Missing
    values (NaN/None) drop the record.  The plug-in estimate is biased upward by about
    ``(A-1)(B-1) / 2n`` nats (Miller-Madow): compare importances computed on samples of the
    same size, or subtract it (``miller_madow=True``, ``A``, ``B`` the occupied bins; the
    result is clipped at 0), which the importance proxy does so that a 2,000-row window
    compares with a larger reference sample.

    >>> round(mutual_information([0, 0, 1, 1], [0, 0, 1, 1]), 4)  # = log 2
    0.6931
    >>> mutual_information([0, 1, 0, 1], [0, 0, 1, 1])
    0.0
    """
    f = np.asarray(feature).ravel()
    t = np.asarray(target).ravel()
    if f.shape != t.shape:
        raise ValueError("feature and target differ in length")
    return _mutual_information(
        f,
        t,
        None,
        n_bins=n_bins,
        feature_categorical=feature_categorical,
        target_categorical=target_categorical,
        miller_madow=miller_madow,
    )


def _mutual_information(
    f: NDArray[Any],
    t: NDArray[Any],
    target_codes: NDArray[np.int64] | None,
    *,
    n_bins: int,
    feature_categorical: bool,
    target_categorical: bool,
    miller_madow: bool,
    feature_codes: NDArray[np.int64] | None = None,
) -> float:
    """:func:`mutual_information` on 1-D arrays of equal length; ``target_codes``: the codes
    of the whole of ``t`` (no value missing), computed once for many features;
    ``feature_codes``: those of the whole of ``f`` (no value missing), if already known."""
    keep = ~(_missing(f) | _missing(t))
    f, t = f[keep], t[keep]
    if f.size == 0:
        return 0.0
    if feature_codes is not None and f.size == feature_codes.size:
        a = feature_codes
    else:
        a = _codes(f, feature_categorical, n_bins)
    if target_codes is None:
        b = _codes(t, target_categorical, n_bins)
    elif f.size == target_codes.size:  # nothing dropped: the same values, the same codes
        b = target_codes
    elif _as_categories(t, target_categorical):
        # codes are ranks among the distinct values kept, in the same order: re-ranking the
        # kept codes gives what coding the kept values gives
        b = np.unique(target_codes[keep], return_inverse=True)[1].astype(np.int64).ravel()
    else:  # numeric bins come from the kept values' quantiles
        b = _codes(t, target_categorical, n_bins)
    n_b = int(b.max()) + 1
    joint = np.bincount(a * n_b + b, minlength=(int(a.max()) + 1) * n_b).reshape(-1, n_b)
    pj = joint / f.size
    pa = pj.sum(axis=1, keepdims=True)
    pb = pj.sum(axis=0, keepdims=True)
    nz = pj > 0
    mi = float(np.sum(pj[nz] * np.log(pj[nz] / (pa @ pb)[nz])))
    if miller_madow:
        occupied_a, occupied_b = int((pa > 0).sum()), int((pb > 0).sum())
        mi -= (occupied_a - 1) * (occupied_b - 1) / (2.0 * f.size)
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
    miller_madow: bool = False,
    feature_codes: Mapping[str, NDArray[np.int64]] | None = None,
) -> dict[str, float]:
    """Model-agnostic importance: MI between each feature and the prediction.

    A uniform random sample of ``sample_size`` records (seeded) is used when the window is
    larger; the same rows for every feature. ``feature_codes``: the bin codes of features
    without a missing value, already computed (:func:`proxy_importance`; no sampling then).

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
    # the prediction's codes once for every feature (when no prediction is missing)
    target_codes = None
    if pred.size and not _missing(pred).any():
        target_codes = _codes(pred, prediction_categorical, n_bins)
    out = {}
    for name, values in features.items():
        v = np.asarray(values).ravel()
        if v.size != n:
            raise ValueError(f"feature {name!r} has {v.size} values, prediction has {n}")
        if rows is not None:
            v = v[rows]
        out[name] = _mutual_information(
            v,
            pred,
            target_codes,
            n_bins=n_bins,
            feature_categorical=name in categorical,
            target_categorical=prediction_categorical,
            miller_madow=miller_madow,
            feature_codes=None
            if feature_codes is None or rows is not None
            else feature_codes.get(name),
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


# -- importance drift in the worker ---------------------------------------------------------

ImportanceSource = Literal["attributions", "label_mi", "prediction_mi"]
IMPORTANCE_SOURCES: tuple[ImportanceSource, ...] = ("attributions", "label_mi", "prediction_mi")
"""What a reference profile's importances were computed from: mean |attribution| per feature,
mutual information of each feature with the label, or with the model's prediction."""

PROXY_SAMPLE_SIZE = 10_000
"""Rows of the reference behind its mutual-information importances. Both sides are
bias-corrected (Miller-Madow), so a window's 2,000-row reservoir compares with them; more rows
make the reference's own noise small next to a window's."""
MAX_LISTED_MISSING = 20


class ImportanceConfigError(SettingsError):
    """Invalid ``importance`` thresholds; the message starts with the offending key path."""


@dataclass(frozen=True, slots=True)
class ImportanceThresholds:
    """Thresholds of feature-importance drift (``importance:`` in a model's thresholds).

    ``min_share_change`` (0.05)
        absolute change of a feature's share of the total importance (mean |attribution|) that
        makes it *changed*; the window has importance drift when any feature changed (severity
        critical from twice this change).
    ``min_share_change_proxy`` (0.2)
        the same for mutual-information importances (no attributions): those of a 2,000-row
        sample are much noisier; measured on a stationary stream, their shares moved by up to
        0.17 by chance, and by 0.25 or more after a swap of the two most important features
        (``benchmarks/bench_importance.py``).
    ``top_k`` (3)
        size of the top-k sets reported with the verdict.
    ``min_records`` (500, as ``min_samples``)
        records behind the window's importances below which it is not judged.
    ``max_features`` (30)
        features per model version exported to Prometheus and stored per window (the changed
        ones first, then by importance): bounds the label cardinality of
        ``model_feature_importance`` with thousands of features.
    ``enabled`` (true)
    """

    enabled: bool = True
    min_share_change: float = key(0.05, gt=0, le=1)
    min_share_change_proxy: float = key(0.2, gt=0, le=1)
    top_k: int = key(3, ge=1)
    min_records: int = key(500, ge=1)
    max_features: int = key(30, ge=1)


def importance_thresholds_from_dict(
    path: str, raw: Any, base: ImportanceThresholds | None = None
) -> ImportanceThresholds:
    """Validate the ``importance`` mapping found at ``path`` over ``base`` (pure; the keys are
    the fields of :class:`ImportanceThresholds`, read by :func:`driftline.keys.read`).

    >>> importance_thresholds_from_dict("x.importance", {"min_share_change": 0.1}).min_share_change
    0.1
    >>> importance_thresholds_from_dict("x.importance", {"top": 2})
    Traceback (most recent call last):
    ...
    driftline.detectors.importance.ImportanceConfigError: x.importance.top: unknown key, did you mean top_k? (allowed: enabled, min_share_change, min_share_change_proxy, top_k, min_records, max_features)
    """
    return read(ImportanceThresholds, raw, path, base=base, error=ImportanceConfigError)


def importance_shares(importance: Mapping[str, float | None]) -> dict[str, float]:
    """Each feature's share of the total importance; None, NaN and infinite values are left
    out, negative ones count as 0. All shares are 0 when the total is 0.

    >>> importance_shares({"a": 3.0, "b": 1.0, "c": None, "d": 0.0})
    {'a': 0.75, 'b': 0.25, 'd': 0.0}
    >>> importance_shares({"a": 0.0})
    {'a': 0.0}
    """
    values = {
        f: max(float(v), 0.0) for f, v in importance.items() if v is not None and math.isfinite(v)
    }
    total = math.fsum(values.values())
    if total <= 0.0:
        return dict.fromkeys(values, 0.0)
    return {f: v / total for f, v in values.items()}


@dataclass(frozen=True, slots=True)
class FeatureImportanceChange:
    """One feature's importance, share and rank (1 = most important) in reference and window."""

    feature: str
    importance: float
    reference_importance: float
    share: float
    reference_share: float
    rank: int
    reference_rank: int
    changed: bool

    @property
    def share_change(self) -> float:
        return self.share - self.reference_share

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "importance": self.importance,
            "reference_importance": self.reference_importance,
            "share": self.share,
            "reference_share": self.reference_share,
            "share_change": self.share_change,
            "rank": self.rank,
            "reference_rank": self.reference_rank,
            "changed": self.changed,
        }


ImportanceStatus = Literal["evaluated", "insufficient_samples", "no_importance"]


@dataclass(frozen=True, slots=True)
class ImportanceEvaluation:
    """Verdict of :func:`importance_drift` on one window (JSON with :meth:`to_dict`)."""

    source: ImportanceSource
    status: ImportanceStatus
    drifted: bool
    n: int
    """Records behind the window's importances."""
    changed_features: list[str]
    """Features whose share moved by >= ``min_share_change``, largest move first."""
    max_share_change: float
    min_share_change: float
    spearman: float | None
    reference_top_k: tuple[str, ...]
    current_top_k: tuple[str, ...]
    n_features: int
    """Features known on both sides (the shares are over these)."""
    features: tuple[FeatureImportanceChange, ...]
    """At most ``max_features``: the changed ones, then by importance, in current rank order."""
    missing_features: tuple[str, ...] = ()
    """Reference features without importance in the window (at most 20 named)."""
    n_missing: int = 0

    @property
    def severity(self) -> Literal["warning", "critical"]:
        return "critical" if self.max_share_change >= 2 * self.min_share_change else "warning"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "drifted": self.drifted,
            "severity": self.severity if self.drifted else None,
            "n": self.n,
            "changed_features": list(self.changed_features),
            "max_share_change": self.max_share_change,
            "min_share_change": self.min_share_change,
            "spearman": self.spearman,
            "reference_top_k": list(self.reference_top_k),
            "current_top_k": list(self.current_top_k),
            "n_features": self.n_features,
            "features": [f.to_dict() for f in self.features],
            "missing_features": list(self.missing_features),
            "n_missing": self.n_missing,
        }


def _valid(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def importance_drift(
    reference: Mapping[str, float | None],
    current: Mapping[str, float | None],
    *,
    n: int,
    source: ImportanceSource = "attributions",
    thresholds: ImportanceThresholds | None = None,
) -> ImportanceEvaluation:
    """Compare a window's per-feature importances with the reference's (pure, see the module
    docstring for the rule). Only features with a finite importance on both sides count;
    shares are over those.

    >>> ref = {"amount": 0.40, "age": 0.30, "hour": 0.20, "noise": 0.10}
    >>> swapped = {"amount": 0.30, "age": 0.40, "hour": 0.20, "noise": 0.10}
    >>> result = importance_drift(ref, swapped, n=1_000)
    >>> result.drifted, result.changed_features, result.current_top_k
    (True, ['age', 'amount'], ('age', 'amount', 'hour'))
    >>> importance_drift(ref, {k: 2 * v for k, v in ref.items()}, n=1_000).drifted
    False
    >>> importance_drift(ref, swapped, n=10).status
    'insufficient_samples'
    """
    thresholds = thresholds or ImportanceThresholds()
    known_ref = {f for f, v in reference.items() if _valid(v)}
    names = sorted(f for f in known_ref if _valid(current.get(f)))
    missing = sorted(known_ref.difference(names))
    ref_values = {f: max(float(reference[f] or 0.0), 0.0) for f in names}
    cur_values = {f: max(float(current[f] or 0.0), 0.0) for f in names}
    ref_shares, cur_shares = importance_shares(ref_values), importance_shares(cur_values)
    status: ImportanceStatus = "evaluated"
    if n < thresholds.min_records:
        status = "insufficient_samples"
    elif not any(ref_shares.values()) or not any(cur_shares.values()):
        status = "no_importance"
    shift = compare_importance(ref_values, cur_values, top_k=thresholds.top_k)
    ref_rank = {c.feature: c.reference_rank for c in shift.features}
    cur_rank = {c.feature: c.current_rank for c in shift.features}
    change = {f: cur_shares[f] - ref_shares[f] for f in names}
    judged = status == "evaluated"
    minimum = (
        thresholds.min_share_change
        if source == "attributions"
        else thresholds.min_share_change_proxy
    )
    # a share is a ratio of sums: compare with a hair of tolerance for float rounding
    limit = minimum - 1e-12
    changed = (
        sorted((f for f in names if abs(change[f]) >= limit), key=lambda f: (-abs(change[f]), f))
        if judged
        else []
    )
    kept = set(changed[: thresholds.max_features])
    for f in sorted(names, key=lambda f: (-max(ref_shares[f], cur_shares[f]), f)):
        if len(kept) >= thresholds.max_features:
            break
        kept.add(f)
    features = tuple(
        FeatureImportanceChange(
            feature=f,
            importance=cur_values[f],
            reference_importance=ref_values[f],
            share=cur_shares[f],
            reference_share=ref_shares[f],
            rank=cur_rank[f],
            reference_rank=ref_rank[f],
            changed=f in changed,
        )
        for f in sorted(kept, key=lambda f: cur_rank[f])
    )
    return ImportanceEvaluation(
        source=source,
        status=status,
        drifted=bool(changed),
        n=int(n),
        changed_features=changed,
        max_share_change=max((abs(v) for v in change.values()), default=0.0),
        min_share_change=minimum,
        spearman=shift.spearman,
        reference_top_k=shift.reference_top_k,
        current_top_k=shift.current_top_k,
        n_features=len(names),
        features=features,
        missing_features=tuple(missing[:MAX_LISTED_MISSING]),
        n_missing=len(missing),
    )


def proxy_importance(
    rows: ArrayLike,
    columns: Sequence[str],
    target: ArrayLike,
    *,
    target_categorical: bool = True,
    n_bins: int = 10,
) -> dict[str, float]:
    """Mutual information of each column of ``rows`` (a window's numeric sample) with
    ``target`` (the label, or the prediction when labels lag), one value per column.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2))
    >>> imp = proxy_importance(x, ["signal", "noise"], (x[:, 0] > 0).astype(int))
    >>> imp["signal"] > 0.5 > imp["noise"]
    True
    """
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(columns):
        raise ValueError(f"rows: expected shape (n, {len(columns)}), got {matrix.shape}")
    return mutual_information_importance(
        {name: matrix[:, j] for j, name in enumerate(columns)},
        target,
        prediction_categorical=target_categorical,
        n_bins=n_bins,
        sample_size=None,
        miller_madow=True,
        feature_codes=_numeric_codes_of_columns(matrix, columns, n_bins),
    )


def _numeric_codes_of_columns(
    matrix: NDArray[np.float64], columns: Sequence[str], n_bins: int
) -> dict[str, NDArray[np.int64]]:
    """``_codes`` of every column of ``matrix`` without a missing value, with one sort and one
    ``np.quantile`` for all of them instead of one per column (the same order statistics and
    the same interpolation per column, so the same cuts; a cut of -0.0 instead of 0.0 would
    compare equal, so the codes are the same in any case).

    >>> m = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 7.0]])
    >>> {k: v.tolist() for k, v in _numeric_codes_of_columns(m, ["a", "b"], 10).items()}
    {'a': [0, 1, 2]}
    """
    complete = np.flatnonzero(~np.isnan(matrix).any(axis=0))
    if matrix.shape[0] == 0 or complete.size == 0:
        return {}
    ordered = np.sort(matrix[:, complete], axis=0)
    distinct = 1 + np.count_nonzero(ordered[1:] != ordered[:-1], axis=0)
    many = np.flatnonzero(distinct > n_bins)
    quantiles = (
        np.quantile(ordered[:, many], np.linspace(0.0, 1.0, n_bins + 1)[1:-1], axis=0)
        if many.size
        else np.empty((n_bins - 1, 0))
    )
    cuts_of = {int(k): quantiles[:, i] for i, k in enumerate(many)}
    out: dict[str, NDArray[np.int64]] = {}
    for k, j in enumerate(complete.tolist()):
        x = matrix[:, j].astype(np.float64)
        if k in cuts_of:
            inner = np.unique(cuts_of[k])
            out[columns[j]] = np.searchsorted(inner, x, side="right").astype(np.int64)
        else:  # few distinct values: used as categories, as in `_codes`
            out[columns[j]] = np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()
    return out


def reference_importance(
    features: Mapping[str, ArrayLike],
    *,
    categorical: Collection[str] = (),
    attributions: Mapping[str, ArrayLike] | None = None,
    labels: ArrayLike | None = None,
    prediction: ArrayLike | None = None,
    target_categorical: bool = True,
    sample_size: int = PROXY_SAMPLE_SIZE,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """A reference profile's importances per source (:data:`IMPORTANCE_SOURCES`): mean
    |attribution| per feature when attributions are given, and the mutual information of each
    feature with the label and with the prediction when those are given (on a seeded sample of
    ``sample_size`` rows, bias-corrected). Sources without data are absent.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = {"a": rng.normal(size=3000), "b": rng.normal(size=3000)}
    >>> y = (x["a"] > 0).astype(int)
    >>> imp = reference_importance(x, labels=y, attributions={"a": x["a"], "b": 0.1 * x["b"]})
    >>> sorted(imp), imp["label_mi"]["a"] > imp["label_mi"]["b"]
    (['attributions', 'label_mi'], True)
    """
    out: dict[str, dict[str, float]] = {}
    if attributions:
        means = {}
        for name, column in attributions.items():
            values = np.abs(np.asarray(column, dtype=np.float64).ravel())
            values = values[np.isfinite(values)]
            if values.size:
                means[str(name)] = float(values.mean())
        if means:
            out["attributions"] = means
    for source, target in (("label_mi", labels), ("prediction_mi", prediction)):
        if target is None or not features:
            continue
        t = np.asarray(target, dtype=object).ravel()
        present = ~_missing(t)
        if not present.any():
            continue
        rows = np.flatnonzero(present)
        if rows.size > sample_size:
            rows = np.sort(np.random.default_rng(seed).choice(rows, sample_size, replace=False))
        t = t[rows]
        t = t.astype(str) if target_categorical else t.astype(np.float64)
        columns = {k: _finite_or_nan(np.asarray(v).ravel()[rows]) for k, v in features.items()}
        out[source] = mutual_information_importance(
            columns,
            t,
            categorical=categorical,
            prediction_categorical=target_categorical,
            sample_size=None,
            miller_madow=True,
        )
    return out


def _finite_or_nan(values: NDArray[Any]) -> NDArray[Any]:
    """+/-inf (how the core marks an invalid number) as missing."""
    if values.dtype.kind != "f":
        return values
    return np.where(np.isfinite(values), values, np.nan)


def window_importance(
    profile: ReferenceProfile, sketch: WindowSketch, thresholds: ImportanceThresholds
) -> ImportanceEvaluation | None:
    """The importance verdict of one window, or None when it cannot be judged.

    With attributions in the window (``sketch.mean_abs_attribution()``) and reference
    attributions in the profile: mean |attribution| per feature. Without attributions: the
    mutual information of each sampled numeric feature with the prediction, if the sketch keeps
    the prediction of its reservoir rows (``reservoir_predictions``, aligned with
    ``reservoir_rows``, kept by :class:`~driftline.detectors.sketch.WindowSketch`) and the
    profile has ``prediction_mi`` importances (see docs/DRIFT_DETECTION.md).
    """
    if not thresholds.enabled:
        return None
    reference = profile.importance
    current = sketch.mean_abs_attribution()
    if current and "attributions" in reference:
        n = max(sketch.attribution_n.values(), default=0)
        return importance_drift(
            reference["attributions"], current, n=n, source="attributions", thresholds=thresholds
        )
    predictions = getattr(sketch, "reservoir_predictions", None)
    rows = sketch.reservoir_rows
    if predictions is None or "prediction_mi" not in reference or len(predictions) != len(rows):
        return None
    target = np.asarray(predictions, dtype=object)
    known = ~_missing(target)
    if not known.any():
        return None
    categorical = profile.prediction_values is None  # regression models: values
    if categorical:  # one class per spelling, as the reference's prediction_mi (class_value)
        from driftline.detectors.normalise import class_value

        target = np.array(_class_texts(target[known].tolist(), class_value), dtype=str)
    else:
        target = target[known].astype(np.float64)
    window = proxy_importance(
        rows[known], sketch.reservoir_columns, target, target_categorical=categorical
    )
    return importance_drift(
        reference["prediction_mi"],
        window,
        n=int(known.sum()),
        source="prediction_mi",
        thresholds=thresholds,
    )


def _class_texts(values: list[Any], class_value: Callable[[Any], Any]) -> list[str]:
    """``str(class_value(v))`` for each value, computed once per distinct value (a window's
    2,000 reservoir predictions hold a handful of classes).

    >>> from driftline.detectors.normalise import class_value
    >>> _class_texts(["1", "0", "1", 1.0, True, "fraud"], class_value)
    ['1', '0', '1', '1', '1', 'fraud']
    """
    spelled: dict[tuple[type, Any], str] = {}
    out = []
    for v in values:
        try:
            key = (type(v), v)
            text = spelled.get(key)
            if text is None:
                text = spelled[key] = str(class_value(v))
        except TypeError:  # unhashable: as it is
            text = str(class_value(v))
        out.append(text)
    return out
