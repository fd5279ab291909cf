"""Output drift: the model's own outputs compared with the reference, label-free.

Labels arrive late; the scores and predicted classes are there at once. :func:`evaluate_output`
turns them into a verdict of its own (:class:`OutputEvaluation`), computed by
:func:`driftline.detectors.evaluate.evaluate_window` for every tested window.

Signals (each a p-value test *and* an effect gate, all from the window's full histograms):

==================  ==============================  ===========================================
signal              p-value test                    effect (gate key, default)
==================  ==============================  ===========================================
``score``           binned KS, 50 score bins        1-Wasserstein of the score histograms, in
                                                    score units (``min_effect_score``, 0.02)
``class_balance``   chi-square on predicted-class   total-variation distance of the class
                    counts                          shares (``min_effect_class``, 0.02)
``low_confidence``  two-proportion z-test on the    absolute change of the share
                    share of scores in the band     (``min_effect_confidence``, 0.05)
``probability:<c>`` binned KS on class c's          1-Wasserstein in probability units
                    probability (multiclass)        (``min_effect_score``)
``prediction``      binned KS on the predicted      normalised Wasserstein on the histogram
                    value's quantile bins           (``min_effect_prediction``, 0.12)
                    (regression)
==================  ==============================  ===========================================

Multiple testing: the signals of one window are one family, corrected with Holm at
``output_alpha`` (default 0.005), apart from the features' family: a stationary model raises
output drift in at most ~1 % of windows whatever the number of signals (measured 0/400
windows at 1,000 and at 10,000 records, ``benchmarks/bench_detection_quality.py --output``). Confidence is tracked on every window:
mean and 10/50/90 % quantiles of the score (for multiclass records without a ``score`` the
score is the probability of the predicted class, i.e. the top class probability) and the
share of scores in ``low_confidence_band`` (default [0.4, 0.6)).

Combined early warning: when output drift is found and the label-free CBPE estimate of the
accuracy (calibrated binary scores, 0.5 threshold, the worker's definition) is more than
``max_estimated_accuracy_drop`` (relative) below the reference accuracy, ``severity`` is
``critical`` and ``estimated_drop_agrees`` is true: one page instead of two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftline.detectors.estimation import expected_confusion_from_histogram
from driftline.detectors.multiple_testing import adjust_p_values
from driftline.detectors.performance import relative_drop
from driftline.detectors.profile import SCORE_BINS, ReferenceProfile
from driftline.detectors.sketch import NumericSketch, WindowSketch
from driftline.detectors.stats import (
    TestResult,
    chi_square,
    ks_binned,
    two_proportion,
    wasserstein_binned,
)
from driftline.detectors.thresholds import ModelThresholds

__all__ = [
    "OutputEvaluation",
    "OutputSignal",
    "estimated_performance",
    "evaluate_output",
    "histogram_edges",
    "score_quantile",
]

SCORE_EDGES = np.linspace(0.0, 1.0, SCORE_BINS + 1)
SCORE_MIDPOINTS = (np.arange(SCORE_BINS) + 0.5) / SCORE_BINS


@dataclass(frozen=True, slots=True)
class OutputSignal:
    """One output signal of one window: its test, its effect gate and the figures behind it."""

    signal: str
    test: TestResult
    adjusted_p_value: float
    effect_measure: str
    effect: float
    min_effect: float
    drifted: bool
    reference: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "drifted": self.drifted,
            "test": self.test.test,
            "statistic": _json(self.test.statistic),
            "p_value": self.test.p_value,
            "adjusted_p_value": self.adjusted_p_value,
            "effect_measure": self.effect_measure,
            "effect": _json(self.effect),
            "min_effect": self.min_effect,
            "reference": dict(self.reference),
            "window": dict(self.window),
        }


@dataclass(frozen=True, slots=True)
class OutputEvaluation:
    """The output-drift verdict of one window (see the module docstring for the rule)."""

    signals: dict[str, OutputSignal]
    alpha: float
    drifted: bool
    drifted_signals: list[str]
    confidence: dict[str, Any]
    class_ratio: dict[str, float]
    reference_class_ratio: dict[str, float]
    estimated_accuracy: float | None
    baseline_accuracy: float | None
    estimated_drop: float | None
    estimated_drop_agrees: bool
    severity: str | None  # None (no drift), "warning", "critical" (agrees with CBPE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "severity": self.severity,
            "alpha": self.alpha,
            "drifted_signals": list(self.drifted_signals),
            "signals": {k: v.to_dict() for k, v in self.signals.items()},
            "confidence": dict(self.confidence),
            "class_ratio": dict(self.class_ratio),
            "reference_class_ratio": dict(self.reference_class_ratio),
            "estimated_accuracy": self.estimated_accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "estimated_drop": self.estimated_drop,
            "estimated_drop_agrees": self.estimated_drop_agrees,
        }


def _json(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ratios(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items())} if total else {}


def score_quantile(counts: NDArray[np.int64], q: float) -> float | None:
    """The q-quantile of a score histogram (50 bins over [0, 1]), linear inside a bin.

    >>> score_quantile(np.array([0] * 25 + [10] + [0] * 24), 0.5)
    0.51
    """
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return None
    cdf = np.concatenate(([0.0], np.cumsum(c) / total))
    return float(np.interp(q, cdf, SCORE_EDGES)) if q > 0 else float(SCORE_EDGES[cdf > 0][0])


def histogram_edges(
    reference_low: float, cuts: NDArray[np.float64], reference_high: float, window: NumericSketch
) -> NDArray[np.float64]:
    """Edges of a numeric sketch's bins for a histogram distance: the reference's ``low``,
    cuts and ``high``, with the under/overflow bins reaching the window's own min/max."""
    lowest = min(window.min, reference_low) if window.n else reference_low
    highest = max(window.max, reference_high) if window.n else reference_high
    return np.concatenate(([lowest, reference_low], cuts, [reference_high, highest]))


def estimated_performance(score_counts: NDArray[np.int64]) -> dict[str, float | None]:
    """Label-free estimate (CBPE, expected confusion matrix) from a score histogram, assuming
    calibrated binary scores and a 0.5 decision threshold (the worker's definition)."""
    if int(np.asarray(score_counts).sum()) == 0:
        return {}
    confusion = expected_confusion_from_histogram(
        score_counts, SCORE_MIDPOINTS, SCORE_MIDPOINTS >= 0.5
    )
    return dict(confusion.metrics())


class _Family:
    """The signals of one window before the correction."""

    def __init__(self) -> None:
        self.items: list[tuple[str, TestResult, str, float, float, dict[str, Any], dict[str, Any]]]
        self.items = []

    def add(
        self,
        signal: str,
        test: TestResult,
        effect_measure: str,
        effect: float,
        min_effect: float,
        reference: dict[str, Any] | None = None,
        window: dict[str, Any] | None = None,
    ) -> None:
        self.items.append(
            (signal, test, effect_measure, effect, min_effect, reference or {}, window or {})
        )


def evaluate_output(
    profile: ReferenceProfile, sketch: WindowSketch, thresholds: ModelThresholds
) -> OutputEvaluation:
    """Output-drift verdict of one window (pure; never raises on data).

    >>> from driftline.detectors.batch import RecordBatch
    >>> rng = np.random.default_rng(0)
    >>> score = rng.beta(1, 12, 20_000)
    >>> profile = ReferenceProfile.from_columns(
    ...     {"x": rng.normal(size=20_000)}, model="m", model_version="1",
    ...     prediction=(score >= 0.5).astype(int), score=score)
    >>> def window(shift):
    ...     s = np.clip(rng.beta(1, 12, 10_000) + shift, 0, 1)
    ...     sketch = WindowSketch.empty(profile, 0.0, 60.0)
    ...     sketch.update(RecordBatch(numeric={"x": rng.normal(size=10_000)}, categorical={},
    ...         event_time=np.zeros(10_000), prediction=(s >= 0.5).astype(int).astype(object),
    ...         score=s))
    ...     return evaluate_output(profile, sketch, ModelThresholds())
    >>> window(0.0).drifted
    False
    >>> result = window(0.05)
    >>> result.drifted, result.drifted_signals, round(result.signals["score"].effect, 2)
    (True, ['score'], 0.05)
    """
    family = _Family()
    alpha_p = thresholds.tests["ks_binned"]
    # score distribution
    ref_scores = profile.score_counts
    win_scores = sketch.score_counts
    confidence: dict[str, Any] = {"band": list(thresholds.low_confidence_band)}
    if ref_scores is not None and int(ref_scores.sum()) and sketch.score_n:
        effect = wasserstein_binned(ref_scores, win_scores, SCORE_EDGES, 1.0).statistic
        ref_mean = float(ref_scores @ SCORE_MIDPOINTS / ref_scores.sum())
        win_mean = sketch.score_sum / sketch.score_n
        family.add(
            "score",
            ks_binned(ref_scores, win_scores, alpha=alpha_p),
            "wasserstein_score_units",
            effect,
            thresholds.min_effect_score,
            {"mean": ref_mean, "p50": score_quantile(ref_scores, 0.5)},
            {"mean": win_mean, "p50": score_quantile(win_scores, 0.5)},
        )
        lo, hi = (round(edge * SCORE_BINS) for edge in thresholds.low_confidence_band)
        ref_low, win_low = int(ref_scores[lo:hi].sum()), int(win_scores[lo:hi].sum())
        ref_n, win_n = int(ref_scores.sum()), int(win_scores.sum())
        share = two_proportion(ref_low, ref_n, win_low, win_n, alpha=alpha_p)
        family.add(
            "low_confidence",
            share,
            "share_change",
            abs(share.statistic),
            thresholds.min_effect_confidence,
            {"low_confidence_ratio": ref_low / ref_n},
            {"low_confidence_ratio": win_low / win_n},
        )
        confidence.update(
            {
                "mean": win_mean,
                "p10": score_quantile(win_scores, 0.1),
                "p50": score_quantile(win_scores, 0.5),
                "p90": score_quantile(win_scores, 0.9),
                "low_confidence_ratio": win_low / win_n,
                "reference_mean": ref_mean,
                "reference_low_confidence_ratio": ref_low / ref_n,
                "n": win_n,
            }
        )
    # predicted classes
    class_ratio = _ratios(sketch.class_counts)
    reference_ratio = _ratios(profile.class_counts)
    if profile.class_counts and sketch.class_counts:
        keys = set(class_ratio) | set(reference_ratio)
        distance = 0.5 * sum(
            abs(class_ratio.get(k, 0.0) - reference_ratio.get(k, 0.0)) for k in keys
        )
        family.add(
            "class_balance",
            chi_square(
                {k: float(v) for k, v in profile.class_counts.items()},
                {k: float(v) for k, v in sketch.class_counts.items()},
                alpha=thresholds.tests["chi_square"],
            ),
            "total_variation",
            distance,
            thresholds.min_effect_class,
            {"class_ratio": reference_ratio},
            {"class_ratio": class_ratio},
        )
    # per-class probabilities (multiclass)
    for name, ref_counts in profile.probability_counts.items():
        win_counts = sketch.probability_counts.get(name)
        if win_counts is None or not int(win_counts.sum()) or not int(ref_counts.sum()):
            continue
        family.add(
            f"probability:{name}",
            ks_binned(ref_counts, win_counts, alpha=alpha_p),
            "wasserstein_probability_units",
            wasserstein_binned(ref_counts, win_counts, SCORE_EDGES, 1.0).statistic,
            thresholds.min_effect_score,
            {"mean": float(ref_counts @ SCORE_MIDPOINTS / ref_counts.sum())},
            {"mean": float(win_counts @ SCORE_MIDPOINTS / win_counts.sum())},
        )
    # regression: the predicted value
    ref_values, win_values = profile.prediction_values, sketch.prediction_values
    if ref_values is not None and win_values is not None and win_values.n and ref_values.count:
        edges = histogram_edges(ref_values.low, ref_values.cuts, ref_values.high, win_values)
        family.add(
            "prediction",
            ks_binned(ref_values.counts, win_values.counts, alpha=alpha_p),
            "wasserstein",
            wasserstein_binned(
                ref_values.counts, win_values.counts, edges, ref_values.std
            ).statistic,
            thresholds.min_effect_prediction,
            {"mean": ref_values.mean, "std": ref_values.std},
            {"mean": win_values.mean, "std": math.sqrt(win_values.variance)},
        )

    raw = [_clean_p(item[1].p_value) for item in family.items]
    adjusted = adjust_p_values(raw, method="holm").tolist() if raw else []
    alpha = thresholds.output_alpha
    signals: dict[str, OutputSignal] = {}
    for (name, test, measure, effect, min_effect, ref, win), adj in zip(
        family.items, adjusted, strict=True
    ):
        adj = _clean_p(adj)
        effect = float(effect) if math.isfinite(effect) else 0.0
        signals[name] = OutputSignal(
            signal=name,
            test=test,
            adjusted_p_value=adj,
            effect_measure=measure,
            effect=effect,
            min_effect=min_effect,
            drifted=adj < alpha and effect >= min_effect,
            reference=ref,
            window=win,
        )
    drifted_signals = [k for k, s in signals.items() if s.drifted]

    estimate = estimated_performance(win_scores) if profile.prediction_values is None else {}
    baseline = (profile.performance or {}).get("accuracy")
    drop = relative_drop(estimate.get("accuracy"), baseline)
    agrees = (
        bool(drifted_signals) and drop is not None and drop > thresholds.max_estimated_accuracy_drop
    )
    severity = None if not drifted_signals else ("critical" if agrees else "warning")
    return OutputEvaluation(
        signals=signals,
        alpha=alpha,
        drifted=bool(drifted_signals),
        drifted_signals=drifted_signals,
        confidence=confidence,
        class_ratio=class_ratio,
        reference_class_ratio=reference_ratio,
        estimated_accuracy=estimate.get("accuracy"),
        baseline_accuracy=baseline,
        estimated_drop=drop,
        estimated_drop_agrees=agrees,
        severity=severity,
    )


def _clean_p(p: float | None) -> float:
    if p is None or not math.isfinite(p):
        return 1.0
    return min(max(float(p), 0.0), 1.0)
