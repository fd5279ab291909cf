"""Model performance per window, from labels, predictions and scores.

Everything is vectorised numpy.  Where a metric is undefined (no positives, empty window,
one class only) the value is ``None``, never NaN.

* :class:`ConfusionCounts` -- mergeable, JSON-serialisable counts per (true, predicted) pair,
  from which accuracy, precision, recall and F1 (binary; macro/micro for multiclass) derive.
  The streaming layer accumulates one per window and merges them.
* :func:`roc_auc` (exact, Mann-Whitney ranks) and :func:`roc_auc_from_histograms` (from two
  score histograms by class, mergeable, ties within a bin counted half).
* :func:`log_loss`, :class:`RegressionSums` (MAE, RMSE).
* :func:`relative_drop` against a reference baseline and :func:`performance_trend` over recent
  windows: in :mod:`driftline.detectors.degradation` (importable from here too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from driftline.detectors.degradation import PerformanceTrend, performance_trend, relative_drop

__all__ = [
    "ConfusionCounts",
    "PerformanceTrend",
    "RegressionSums",
    "binary_metrics",
    "classification_metrics",
    "log_loss",
    "multiclass_metrics",
    "performance_trend",
    "regression_metrics",
    "relative_drop",
    "roc_auc",
    "roc_auc_from_histograms",
]

Label = int | str | bool
Metrics = dict[str, float | None]


def _div(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _missing_mask(values: NDArray[Any]) -> NDArray[np.bool_]:
    """True where a label is missing: None in object arrays, NaN in float arrays."""
    if values.dtype == object:
        return np.fromiter(
            (v is None or (isinstance(v, float) and math.isnan(v)) for v in values),
            dtype=bool,
            count=values.size,
        )
    if np.issubdtype(values.dtype, np.floating):
        return np.asarray(np.isnan(values), dtype=bool)
    return np.zeros(values.size, dtype=bool)


def _label(value: Any) -> Label:
    """A JSON-friendly Python scalar: integral floats become ints (1.0 -> 1)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool | int | str):
        return value
    raise TypeError(f"unsupported class label {value!r} ({type(value).__name__})")


class ConfusionCounts:
    """Counts of (true class, predicted class) pairs; mergeable and JSON-serialisable.

    ``matrix[i, j]`` counts records of true class ``labels[i]`` predicted as ``labels[j]``.
    New classes are added as they appear.  Records whose true label is missing (None or NaN)
    are not counted in the matrix but in :attr:`n_unlabelled`.

    Examples
    --------
    >>> cc = ConfusionCounts()
    >>> cc.update([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    >>> cc.labels, cc.matrix.tolist()
    ((0, 1), [[1, 1], [1, 2]])
    >>> m = binary_metrics(cc)
    >>> m["precision"], m["recall"], m["accuracy"]
    (0.6666666666666666, 0.6666666666666666, 0.6)
    >>> ConfusionCounts.from_dict(cc.to_dict()).matrix.tolist()
    [[1, 1], [1, 2]]
    """

    def __init__(self, labels: Sequence[Label] = ()) -> None:
        self.labels: tuple[Label, ...] = tuple(_label(v) for v in labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be unique, got {self.labels}")
        self.matrix: NDArray[np.int64] = np.zeros((len(self.labels),) * 2, dtype=np.int64)
        self.n_unlabelled = 0

    @property
    def n(self) -> int:
        """Number of labelled records counted."""
        return int(self.matrix.sum())

    def _grow(self, new: Sequence[Label]) -> None:
        add = [v for v in new if v not in self.labels]
        if not add:
            return
        k = len(self.labels)
        self.labels = self.labels + tuple(add)
        grown = np.zeros((len(self.labels),) * 2, dtype=np.int64)
        grown[:k, :k] = self.matrix
        self.matrix = grown

    def index(self, label: Label) -> int:
        """Position of ``label`` in :attr:`labels` (``KeyError`` if never seen)."""
        try:
            return self.labels.index(_label(label))
        except ValueError:
            raise KeyError(f"class {label!r} not seen; known: {self.labels}") from None

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        """Count a batch of (true, predicted) pairs (vectorised)."""
        t = np.asarray(y_true).ravel()
        p = np.asarray(y_pred).ravel()
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred differ in length: {t.size} != {p.size}")
        missing = _missing_mask(t)
        self.n_unlabelled += int(missing.sum())
        t, p = t[~missing], p[~missing]
        if t.size == 0:
            return
        if _missing_mask(p).any():
            raise ValueError("y_pred contains missing values")
        uniq, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
        uniq_labels = [_label(v) for v in uniq.tolist()]
        self._grow(uniq_labels)
        k = len(self.labels)
        code = np.asarray([self.labels.index(v) for v in uniq_labels], dtype=np.int64)[inverse]
        pairs = code[: t.size] * k + code[t.size :]
        self.matrix += np.bincount(pairs, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionCounts) -> ConfusionCounts:
        """A new object holding the sum of both (labels aligned)."""
        out = ConfusionCounts(self.labels)
        out.matrix = self.matrix.copy()
        out.n_unlabelled = self.n_unlabelled + other.n_unlabelled
        out._grow(other.labels)
        idx = np.asarray([out.labels.index(v) for v in other.labels], dtype=np.int64)
        out.matrix[np.ix_(idx, idx)] += other.matrix
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "labels": list(self.labels),
            "matrix": self.matrix.tolist(),
            "n_unlabelled": self.n_unlabelled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfusionCounts:
        """Inverse of :meth:`to_dict`."""
        out = cls(data["labels"])
        k = len(out.labels)
        matrix = np.asarray(data["matrix"], dtype=np.int64).reshape(k, k) if k else out.matrix
        if matrix.shape != out.matrix.shape or (matrix < 0).any():
            raise ValueError("matrix must be a non-negative square matrix matching labels")
        out.matrix = matrix
        out.n_unlabelled = int(data.get("n_unlabelled", 0))
        return out


def binary_metrics(counts: ConfusionCounts, positive_label: Label = 1) -> Metrics:
    """Accuracy, precision, recall, F1, predicted and actual positive rates.

    ``precision`` is None without predicted positives, ``recall`` without actual positives,
    ``f1`` when both are zero; everything is None on an empty window.
    """
    n = counts.n
    if positive_label in counts.labels:
        i = counts.index(positive_label)
        tp = int(counts.matrix[i, i])
        fp = int(counts.matrix[:, i].sum()) - tp
        fn = int(counts.matrix[i, :].sum()) - tp
    else:
        tp = fp = fn = 0
    correct = int(np.trace(counts.matrix))
    return {
        "accuracy": _div(correct, n),
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "positive_rate": _div(tp + fp, n),
        "prevalence": _div(tp + fn, n),
    }


def multiclass_metrics(counts: ConfusionCounts) -> Metrics:
    """Accuracy and macro/micro precision, recall and F1.

    Macro averages are over classes where the per-class value is defined (a class never
    predicted has no precision); micro precision = micro recall = micro F1 = accuracy when
    every record has exactly one predicted class.
    """
    m = counts.matrix.astype(np.float64)
    n = m.sum()
    tp = np.diag(m)
    pred = m.sum(axis=0)
    true = m.sum(axis=1)

    def macro(num: NDArray[np.float64], den: NDArray[np.float64]) -> float | None:
        ok = den > 0
        return float(np.mean(num[ok] / den[ok])) if ok.any() else None

    micro = _div(float(tp.sum()), float(n))
    return {
        "accuracy": micro,
        "macro_precision": macro(tp, pred),
        "macro_recall": macro(tp, true),
        "macro_f1": macro(2 * tp, pred + true),
        "micro_precision": micro,
        "micro_recall": micro,
        "micro_f1": micro,
    }


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Exact ROC AUC via the Mann-Whitney U statistic (ties count half).

    :math:`AUC = (R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)` with :math:`R_+` the sum of the positives'
    mid-ranks.  None if one class is absent.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_from_histograms(positive_counts: ArrayLike, negative_counts: ArrayLike) -> float | None:
    """ROC AUC from per-class counts over the same ascending score bins.

    Trapezoidal AUC of the ROC curve whose points are the bin edges, which equals the
    Mann-Whitney statistic with scores in the same bin counted as ties (half):
    :math:`AUC = \\sum_b N_b (P_{>b} + P_b/2) / (P\\,N)`.  It approaches :func:`roc_auc` as
    bins get finer.  None if one class is absent.

    >>> roc_auc_from_histograms([0, 1, 1], [1, 1, 0])
    0.875
    """
    pos = np.asarray(positive_counts, dtype=np.float64).ravel()
    neg = np.asarray(negative_counts, dtype=np.float64).ravel()
    if pos.shape != neg.shape:
        raise ValueError("positive and negative histograms need the same bins")
    p_total, n_total = pos.sum(), neg.sum()
    if p_total == 0 or n_total == 0:
        return None
    pos_above = p_total - np.cumsum(pos)
    return float(np.sum(neg * (pos_above + 0.5 * pos)) / (p_total * n_total))


def log_loss(y_true: ArrayLike, probabilities: ArrayLike, eps: float = 1e-15) -> float | None:
    """Mean binary cross-entropy in nats, probabilities clipped to ``[eps, 1 - eps]``.

    >>> round(log_loss([1, 0], [0.8, 0.2]), 6)
    0.223144
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.size == 0:
        return None
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def classification_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    scores: ArrayLike | None = None,
    positive_label: Label = 1,
    binary: bool | None = None,
) -> Metrics:
    """Metrics for one window; records with a missing label are ignored.

    Binary (two classes or ``binary=True``): :func:`binary_metrics`, plus ``roc_auc`` and
    ``log_loss`` when ``scores`` (P(positive)) are given.  Multiclass: :func:`multiclass_metrics`.
    ``n`` (labelled records) is always included.
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    labelled = ~_missing_mask(t)
    counts = ConfusionCounts()
    counts.update(t, p)
    is_binary = binary if binary is not None else len(counts.labels) <= 2
    out: Metrics
    if is_binary:
        out = binary_metrics(counts, positive_label)
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64).ravel()[labelled]
            y = np.asarray([_label(v) == positive_label for v in t[labelled].tolist()], dtype=bool)
            out["roc_auc"] = roc_auc(y, s)
            out["log_loss"] = log_loss(y, s)
    else:
        out = multiclass_metrics(counts)
    out["n"] = float(counts.n)
    return out


@dataclass(slots=True)
class RegressionSums:
    """Mergeable sums for MAE and RMSE: n, sum |e|, sum e^2.

    >>> r = RegressionSums()
    >>> r.update([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])
    >>> r.mae, r.rmse
    (1.0, 1.2909944487358056)
    """

    n: int = 0
    sum_abs: float = 0.0
    sum_sq: float = 0.0

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        """Add a batch; pairs with a NaN on either side are skipped."""
        err = (
            np.asarray(y_pred, dtype=np.float64).ravel()
            - np.asarray(y_true, dtype=np.float64).ravel()
        )
        err = err[~np.isnan(err)]
        self.n += int(err.size)
        self.sum_abs += float(np.abs(err).sum())
        self.sum_sq += float(np.square(err).sum())

    def merge(self, other: RegressionSums) -> RegressionSums:
        """A new object holding the sum of both."""
        return RegressionSums(
            self.n + other.n, self.sum_abs + other.sum_abs, self.sum_sq + other.sum_sq
        )

    @property
    def mae(self) -> float | None:
        """Mean absolute error (None if empty)."""
        return _div(self.sum_abs, self.n)

    @property
    def rmse(self) -> float | None:
        """Root mean squared error (None if empty)."""
        mse = _div(self.sum_sq, self.n)
        return None if mse is None else math.sqrt(mse)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"n": self.n, "sum_abs": self.sum_abs, "sum_sq": self.sum_sq}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegressionSums:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["n"]), float(data["sum_abs"]), float(data["sum_sq"]))


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> Metrics:
    """MAE, RMSE and n for one window (NaN pairs skipped)."""
    r = RegressionSums()
    r.update(y_true, y_pred)
    return {"mae": r.mae, "rmse": r.rmse, "n": float(r.n)}
