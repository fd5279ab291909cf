"""Label-free performance estimation for binary classifiers (CBPE, as in NannyML).

If ``p`` is a *calibrated* probability that ``y = 1``, a prediction ``ŷ = 1`` is a true
positive with probability ``p`` and a false positive with probability ``1 - p``.  Summing
over a window gives the expected confusion matrix

* ``TP = Σ p`` and ``FP = Σ (1 - p)`` over records predicted 1,
* ``FN = Σ p`` and ``TN = Σ (1 - p)`` over records predicted 0,

from which estimated accuracy, precision, recall and F1 follow without any label.  When the
raw scores are not calibrated, an isotonic calibrator fitted on the labelled reference maps
score -> P(y = 1) (:class:`IsotonicCalibrator`).  Alert bands, as in NannyML, are the mean
± 3 std of the estimate over reference chunks (:meth:`CBPE.fit`).

The estimate assumes the calibration learnt on the reference still holds (no concept drift:
P(y | score) unchanged); covariate shift is what it is made for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import isotonic_regression

__all__ = [
    "CBPE",
    "CBPEEstimate",
    "ExpectedConfusion",
    "IsotonicCalibrator",
    "MetricBand",
    "expected_confusion",
    "expected_confusion_from_histogram",
]

ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1")


def _div(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


@dataclass(frozen=True, slots=True)
class ExpectedConfusion:
    """Expected (fractional) confusion counts; add two to merge windows."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    @property
    def n(self) -> float:
        """Number of records."""
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: ExpectedConfusion) -> ExpectedConfusion:
        return ExpectedConfusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    def metrics(self) -> dict[str, float | None]:
        """Estimated accuracy, precision, recall, F1 (None where undefined)."""
        return {
            "accuracy": _div(self.tp + self.tn, self.n),
            "precision": _div(self.tp, self.tp + self.fp),
            "recall": _div(self.tp, self.tp + self.fn),
            "f1": _div(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        }


def expected_confusion(probabilities: ArrayLike, predictions: ArrayLike) -> ExpectedConfusion:
    """Expected confusion matrix from calibrated P(y=1) and the model's 0/1 predictions.

    >>> ec = expected_confusion([0.9, 0.6, 0.2, 0.4], [1, 1, 0, 0])
    >>> tuple(round(v, 2) for v in (ec.tp, ec.fp, ec.fn, ec.tn))
    (1.5, 0.5, 0.6, 1.4)
    >>> round(ec.metrics()["accuracy"], 2)
    0.72
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    pred = np.asarray(predictions).ravel().astype(bool)
    if p.shape != pred.shape:
        raise ValueError("probabilities and predictions differ in length")
    keep = ~np.isnan(p)
    p, pred = p[keep], pred[keep]
    return ExpectedConfusion(
        tp=float(p[pred].sum()),
        fp=float((1.0 - p[pred]).sum()),
        fn=float(p[~pred].sum()),
        tn=float((1.0 - p[~pred]).sum()),
    )


def expected_confusion_from_histogram(
    counts: ArrayLike, probabilities: ArrayLike, predictions: ArrayLike
) -> ExpectedConfusion:
    """Expected confusion matrix from a score histogram (mergeable: add the counts).

    ``counts[b]`` records fell in score bin ``b``; ``probabilities[b]`` is the calibrated
    P(y=1) of that bin (e.g. the calibrator at the bin midpoint) and ``predictions[b]`` the
    model's decision there.  Exact when the decision threshold is a bin edge; the error of
    using one probability per bin shrinks with the bin width.

    >>> ec = expected_confusion_from_histogram([2, 3], [0.25, 0.75], [0, 1])
    >>> ec.tp, ec.fp, ec.fn, ec.tn
    (2.25, 0.75, 0.5, 1.5)
    """
    c = np.asarray(counts, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    pred = np.asarray(predictions).ravel().astype(bool)
    if not (c.shape == p.shape == pred.shape):
        raise ValueError("counts, probabilities and predictions need one value per bin")
    return ExpectedConfusion(
        tp=float(np.dot(c[pred], p[pred])),
        fp=float(np.dot(c[pred], 1.0 - p[pred])),
        fn=float(np.dot(c[~pred], p[~pred])),
        tn=float(np.dot(c[~pred], 1.0 - p[~pred])),
    )


@dataclass(frozen=True, slots=True)
class IsotonicCalibrator:
    """Monotone map score -> P(y=1), fitted by isotonic regression (PAVA).

    Fitted with ``scipy.optimize.isotonic_regression`` (scipy >= 1.12, the project's floor) on
    the reference scores and labels, ties pooled.  Stored as breakpoints (the ends of each
    constant block), applied with ``np.interp``: linear between blocks, constant beyond the
    fitted range.  JSON-serialisable via :meth:`to_dict`.

    >>> cal = IsotonicCalibrator.fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    >>> cal.x, cal.y
    ((0.1, 0.2, 0.3, 0.4), (0.0, 0.5, 0.5, 1.0))
    >>> cal([0.25, 0.9]).tolist()
    [0.5, 1.0]
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("calibrator needs as many x as y breakpoints, at least one")
        if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < 0):
            raise ValueError("calibrator breakpoints must be non-decreasing")

    @classmethod
    def fit(cls, scores: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
        """Fit on reference scores and 0/1 labels (NaN scores or labels are dropped)."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()
        if s.shape != y.shape:
            raise ValueError("scores and labels differ in length")
        keep = ~(np.isnan(s) | np.isnan(y))
        s, y = s[keep], y[keep]
        if s.size == 0:
            raise ValueError("no labelled reference scores to fit the calibrator on")
        uniq, inverse, n = np.unique(s, return_inverse=True, return_counts=True)
        mean_y = np.bincount(inverse, weights=y) / n
        fitted = isotonic_regression(mean_y, weights=n.astype(np.float64)).x
        # keep the first and last point of each constant block
        change = np.flatnonzero(np.diff(fitted) != 0)
        keep_idx = np.unique(np.concatenate([[0, uniq.size - 1], change, change + 1]))
        return cls(tuple(uniq[keep_idx].tolist()), tuple(np.clip(fitted[keep_idx], 0, 1).tolist()))

    def __call__(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities for ``scores`` (vectorised)."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IsotonicCalibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))


@dataclass(frozen=True, slots=True)
class MetricBand:
    """Reference band of an estimated metric: mean ± n_std std over reference chunks."""

    mean: float
    std: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class CBPEEstimate:
    """Estimated metrics of one window and the alerts against the reference bands."""

    confusion: ExpectedConfusion
    metrics: dict[str, float | None]
    drops: dict[str, bool] = field(default_factory=dict)
    """Per metric: estimate below the band's lower bound."""

    @property
    def estimated_performance_drop(self) -> bool:
        """True if any estimated metric fell below its reference band."""
        return any(self.drops.values())


class CBPE:
    """Confidence-based performance estimation for a binary classifier.

    Parameters
    ----------
    threshold
        Decision threshold: the model predicts 1 when ``score >= threshold``.
    calibrator
        Maps raw scores to P(y=1); None if the scores are already calibrated.
    bands
        Per metric, the reference band (see :meth:`fit`); metrics without a band never alert.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.beta(2, 2, 20_000)
    >>> y = (rng.random(p.size) < p).astype(int)
    >>> cbpe = CBPE.fit(p[:10_000], y[:10_000], chunk_size=1000)
    >>> est = cbpe.estimate(p[10_000:])
    >>> realised = float(np.mean((p[10_000:] >= 0.5) == y[10_000:]))
    >>> abs(est.metrics["accuracy"] - realised) < 0.02, est.estimated_performance_drop
    (True, False)
    """

    def __init__(
        self,
        threshold: float = 0.5,
        calibrator: IsotonicCalibrator | None = None,
        bands: Mapping[str, MetricBand] | None = None,
    ) -> None:
        self.threshold = float(threshold)
        self.calibrator = calibrator
        self.bands: dict[str, MetricBand] = dict(bands or {})

    @classmethod
    def fit(
        cls,
        reference_scores: ArrayLike,
        reference_labels: ArrayLike | None = None,
        *,
        threshold: float = 0.5,
        calibrate: bool = True,
        chunk_size: int | None = None,
        n_chunks: int = 10,
        n_std: float = 3.0,
    ) -> CBPE:
        """Fit the calibrator (if labels are given and ``calibrate``) and the alert bands.

        The reference is cut into consecutive chunks of ``chunk_size`` records (default: 10
        equal chunks, like NannyML's default); each chunk's estimate is computed, and the band
        is mean ± ``n_std`` (3, NannyML) sample std (ddof=1), clipped to [0, 1].  Needs at least
        two chunks; fewer leaves the bands empty (no alerts).
        """
        s = np.asarray(reference_scores, dtype=np.float64).ravel()
        calibrator = None
        if calibrate and reference_labels is not None:
            calibrator = IsotonicCalibrator.fit(s, reference_labels)
        model = cls(threshold, calibrator)
        s = s[~np.isnan(s)]
        size = chunk_size if chunk_size is not None else s.size // n_chunks
        if size <= 0 or s.size // size < 2:
            return model
        per_metric: dict[str, list[float]] = {m: [] for m in ESTIMATED_METRICS}
        for start in range(0, (s.size // size) * size, size):
            est = model.estimate(s[start : start + size]).metrics
            for m in ESTIMATED_METRICS:
                value = est[m]
                if value is not None:
                    per_metric[m].append(value)
        for m, vals in per_metric.items():
            if len(vals) >= 2:
                mean, std = float(np.mean(vals)), float(np.std(vals, ddof=1))
                model.bands[m] = MetricBand(
                    mean, std, max(0.0, mean - n_std * std), min(1.0, mean + n_std * std)
                )
        return model

    def probabilities(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Calibrated P(y=1) (the scores themselves without a calibrator)."""
        s = np.asarray(scores, dtype=np.float64)
        return self.calibrator(s) if self.calibrator is not None else s

    def _result(self, confusion: ExpectedConfusion) -> CBPEEstimate:
        metrics = confusion.metrics()
        drops = {}
        for m, band in self.bands.items():
            value = metrics.get(m)
            drops[m] = value is not None and value < band.lower
        return CBPEEstimate(confusion, metrics, drops)

    def estimate(self, scores: ArrayLike, predictions: ArrayLike | None = None) -> CBPEEstimate:
        """Estimate a window's metrics from its scores (predictions default to the threshold)."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        pred = s >= self.threshold if predictions is None else np.asarray(predictions)
        return self._result(expected_confusion(self.probabilities(s), pred))

    def estimate_from_histogram(self, counts: ArrayLike, bin_edges: ArrayLike) -> CBPEEstimate:
        """Estimate from score-histogram counts over ``bin_edges`` (len(counts) + 1 edges).

        Each bin is represented by its midpoint: calibrated probability and decision.
        """
        edges = np.asarray(bin_edges, dtype=np.float64).ravel()
        c = np.asarray(counts, dtype=np.float64).ravel()
        if edges.size != c.size + 1:
            raise ValueError(f"need {c.size + 1} bin edges for {c.size} bins, got {edges.size}")
        mid = 0.5 * (edges[:-1] + edges[1:])
        return self._result(
            expected_confusion_from_histogram(c, self.probabilities(mid), mid >= self.threshold)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "threshold": self.threshold,
            "calibrator": None if self.calibrator is None else self.calibrator.to_dict(),
            "bands": {
                m: {"mean": b.mean, "std": b.std, "lower": b.lower, "upper": b.upper}
                for m, b in self.bands.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CBPE:
        """Inverse of :meth:`to_dict`."""
        cal = data.get("calibrator")
        bands = {m: MetricBand(**b) for m, b in data.get("bands", {}).items()}
        for band in bands.values():
            if not all(math.isfinite(v) for v in (band.mean, band.std, band.lower, band.upper)):
                raise ValueError("band values must be finite")
        return cls(
            float(data["threshold"]),
            None if cal is None else IsotonicCalibrator.from_dict(cal),
            bands,
        )
