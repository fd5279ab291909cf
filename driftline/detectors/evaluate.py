"""Judge one window: the single place where a window is called drifted or not.

:func:`evaluate_window` compares a :class:`~driftline.detectors.sketch.WindowSketch` with
its :class:`~driftline.detectors.profile.ReferenceProfile` under
:class:`~driftline.detectors.thresholds.ModelThresholds`, and returns a
:class:`WindowEvaluation` (JSON-compatible with :meth:`WindowEvaluation.to_dict`).

Decision rule
-------------
1. A window with fewer than ``min_samples`` (default 500) records is not tested: its status
   is ``insufficient_samples`` and the caller merges its sketch into the next window
   (``previous.merge(current)``).
2. Per numeric feature: the p-value test named by ``numeric_test`` (default ``ks_binned``,
   KS on the window's full histogram over the reference's quantile bins, so every record of
   the window counts), plus, reported, the exact KS test (reservoir vs reference sample),
   PSI, Jensen-Shannon and Hellinger on the histograms and the normalised Wasserstein
   distance on the window's full fine histogram (200 reference-quantile bins, mass spread
   evenly inside a bin; see ``stats.wasserstein_binned``). Per categorical feature: chi-square (the verdict's p-value),
   Jensen-Shannon, PSI and Hellinger on the category counts. The tests run are those of the
   registry (``stats/registry.py``) for the feature's kind, by ``window_tests.py``.
3. The verdict p-values of all features of the window are corrected together (``correction``,
   default Holm). A feature **drifts** when its corrected p-value is below its alpha **and**
   its effect reaches the minimum effect: normalised Wasserstein >= ``min_effect_numeric``
   (0.12) or Jensen-Shannon distance >= ``min_effect_categorical`` (0.075), the latter with
   its small-sample bias removed (``_debiased_js``: 50 categories in 1,000 records reach a
   distance of 0.1 by chance alone). With large windows
   every p-value test finds *some* difference; the effect gate keeps only those that matter.
4. Multivariate (``multivariate: true`` and >= 2 numeric features): MMD on the standardised
   joint samples, PCA reconstruction error and PCA covariance (whitened-covariance chi-square)
   tests. They have their own family: Holm over the three at ``multivariate_alpha`` (0.01),
   and their own effect gate, a change of at least ``min_effect_correlation`` (0.1) in some
   pairwise Pearson correlation between the samples. A correlation-only change has no
   marginal effect, so the per-feature gates would never let it through.
5. Output drift (``output_drift: true``, :mod:`driftline.detectors.output`): the score
   distribution, the predicted-class balance, the share of low-confidence predictions, the
   per-class probabilities (multiclass) or the predicted value (regression), each with a
   p-value and an effect gate, Holm over these signals at ``output_alpha`` (0.005): their
   own family, apart from the features.
6. Data quality (``data_quality: true``, :mod:`driftline.detectors.quality`): per feature,
   absent, missing-rate change, type errors, out-of-range share, constant, new features;
   the p-value checks Holm-corrected at ``quality_alpha`` (0.01), their own family.
7. The **model drifts** when (a) at least one feature drifts and the share of drifted
   features is >= ``drift_share`` (default 0: any feature), or (b) a feature marked
   ``critical`` drifts, or (c) the multivariate family drifts, or (d) the outputs drift
   (reason ``output``), or (e) a data-quality finding other than a new feature (reason
   ``data_quality``).

Missing (NaN) and invalid (+/-inf, not a number) values are excluded from the drift tests
and reported as rates per feature; the data-quality checks (6) judge them.
``prediction_tests`` keeps the raw chi-square on class counts and binned KS on the score
histogram (uncorrected, as before); the verdict on outputs is ``output``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from driftline.detectors.importance import ImportanceEvaluation, window_importance
from driftline.detectors.multiple_testing import adjust_p_values
from driftline.detectors.output import OutputEvaluation, evaluate_output
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.quality import DataQualityEvaluation, evaluate_quality
from driftline.detectors.sketch import SketchMismatchError, WindowSketch
from driftline.detectors.stats import TestResult, chi_square, ks_binned
from driftline.detectors.stats.registry import MMD_MAX_SAMPLES as MMD_MAX_SAMPLES
from driftline.detectors.stats.registry import MMD_PERMUTATIONS as MMD_PERMUTATIONS
from driftline.detectors.thresholds import ModelThresholds
from driftline.detectors.window_tests import (
    FeatureEvaluation,
    MultivariateEvaluation,
    categorical_feature,
    multivariate_tests,
    numeric_feature,
)

__all__ = [
    "FeatureEvaluation",
    "MultivariateEvaluation",
    "WindowEvaluation",
    "WindowSummary",
    "evaluate_window",
    "window_summary",
]

Status = Literal["evaluated", "insufficient_samples"]


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """Operational metrics of one window, straight from its sketch."""

    n_records: int
    event_time_min: float | None
    event_time_max: float | None
    missing_rate: dict[str, float]
    invalid_count: dict[str, int]
    error_count: int
    error_rate: float
    error_counts: dict[str, int]
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    latency_p99_seconds: float | None
    class_counts: dict[str, int]
    mean_score: float | None
    mean_abs_attribution: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_records": self.n_records,
            "event_time_min": self.event_time_min,
            "event_time_max": self.event_time_max,
            "missing_rate": dict(self.missing_rate),
            "invalid_count": dict(self.invalid_count),
            "error_count": self.error_count,
            "error_rate": self.error_rate,
            "error_counts": dict(self.error_counts),
            "latency_p50_seconds": self.latency_p50_seconds,
            "latency_p95_seconds": self.latency_p95_seconds,
            "latency_p99_seconds": self.latency_p99_seconds,
            "class_counts": dict(self.class_counts),
            "mean_score": self.mean_score,
            "mean_abs_attribution": dict(self.mean_abs_attribution),
        }


@dataclass(frozen=True, slots=True)
class WindowEvaluation:
    """Verdict on one (model, version, window); see the module docstring for the rule."""

    model: str
    model_version: str
    window_start: float
    window_end: float
    status: Status
    drifted: bool
    reasons: list[str]
    drifted_features: list[str]
    drift_share: float
    features: dict[str, FeatureEvaluation]
    multivariate: MultivariateEvaluation | None
    prediction_tests: dict[str, TestResult]
    summary: WindowSummary
    output: OutputEvaluation | None = None
    data_quality: DataQualityEvaluation | None = None
    importance: ImportanceEvaluation | None = None  # feature-importance drift (importance.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "status": self.status,
            "drifted": self.drifted,
            "reasons": list(self.reasons),
            "drifted_features": list(self.drifted_features),
            "drift_share": self.drift_share,
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "prediction_tests": {k: v.to_dict() for k, v in self.prediction_tests.items()},
            "summary": self.summary.to_dict(),
            "output": None if self.output is None else self.output.to_dict(),
            "data_quality": None if self.data_quality is None else self.data_quality.to_dict(),
            "importance": None if self.importance is None else self.importance.to_dict(),
        }


def window_summary(sketch: WindowSketch) -> WindowSummary:
    """Counts, missing rates, error rate, latency quantiles, classes and mean score."""
    n = sketch.n_records
    missing_rate: dict[str, float] = {}
    invalid: dict[str, int] = {}
    for name, s in sketch.numeric.items():
        missing_rate[name] = s.missing / n if n else 0.0
        invalid[name] = s.invalid
    for name, c in sketch.categorical.items():
        missing_rate[name] = c.missing / n if n else 0.0
    errors = sum(sketch.error_counts.values())
    return WindowSummary(
        n_records=n,
        event_time_min=sketch.event_time_min if math.isfinite(sketch.event_time_min) else None,
        event_time_max=sketch.event_time_max if math.isfinite(sketch.event_time_max) else None,
        missing_rate=missing_rate,
        invalid_count=invalid,
        error_count=errors,
        error_rate=errors / n if n else 0.0,
        error_counts=dict(sketch.error_counts),
        latency_p50_seconds=sketch.latency.quantile(0.5),
        latency_p95_seconds=sketch.latency.quantile(0.95),
        latency_p99_seconds=sketch.latency.quantile(0.99),
        class_counts=dict(sketch.class_counts),
        mean_score=sketch.score_sum / sketch.score_n if sketch.score_n else None,
        mean_abs_attribution=sketch.mean_abs_attribution(),
    )


def evaluate_window(
    profile: ReferenceProfile, sketch: WindowSketch, thresholds: ModelThresholds
) -> WindowEvaluation:
    """Judge one window against its reference profile (pure function, never raises on data).

    Examples
    --------
    >>> from driftline.detectors.batch import RecordBatch
    >>> from driftline.detectors.thresholds import ModelThresholds
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.from_columns(
    ...     {"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)},
    ...     model="m", model_version="1")
    >>> def window(shift):
    ...     sketch = WindowSketch.empty(profile, 0.0, 60.0)
    ...     sketch.update(RecordBatch(
    ...         numeric={"x": rng.normal(shift, size=2_000), "y": rng.normal(size=2_000)},
    ...         categorical={}, event_time=np.zeros(2_000),
    ...         prediction=np.full(2_000, "ok", dtype=object)))
    ...     return evaluate_window(profile, sketch, ModelThresholds())
    >>> window(0.0).drifted
    False
    >>> result = window(0.5)
    >>> result.drifted, result.drifted_features, result.reasons
    (True, ['x'], ['feature x'])
    """
    if sketch.profile_fingerprint != profile.fingerprint:
        raise SketchMismatchError(
            f"sketch was built on profile {sketch.profile_fingerprint}, "
            f"not {profile.fingerprint} ({profile.model}/{profile.model_version})"
        )
    summary = window_summary(sketch)
    if sketch.n_records < thresholds.min_samples:
        return WindowEvaluation(
            model=sketch.model,
            model_version=sketch.model_version,
            window_start=sketch.window_start,
            window_end=sketch.window_end,
            status="insufficient_samples",
            drifted=False,
            reasons=[],
            drifted_features=[],
            drift_share=0.0,
            features={},
            multivariate=None,
            prediction_tests={},
            summary=summary,
        )

    pending = [numeric_feature(profile, sketch, name, thresholds) for name in profile.numeric]
    pending += [categorical_feature(profile, sketch, k, thresholds) for k in profile.categorical]
    p_values = [p.p_value for p in pending]
    adjusted = adjust_p_values(p_values, method=thresholds.correction) if p_values else np.empty(0)
    features = {
        item.feature: item.corrected(adj)
        for item, adj in zip(pending, adjusted.tolist(), strict=True)
    }
    drifted_features = [k for k, f in features.items() if f.drifted]
    share = len(drifted_features) / len(features) if features else 0.0
    reasons: list[str] = []
    if drifted_features and share >= thresholds.drift_share:
        reasons += [f"feature {k}" for k in drifted_features]
    reasons += [
        f"critical feature {k}"
        for k in drifted_features
        if features[k].critical and f"feature {k}" not in reasons
    ]
    multivariate = None
    if thresholds.multivariate and len(profile.sample_columns) >= 2:
        multivariate = multivariate_tests(profile, sketch, thresholds)
        if multivariate.drifted:
            reasons.append("multivariate")
    output = evaluate_output(profile, sketch, thresholds) if thresholds.output_drift else None
    if output is not None and output.drifted:
        reasons.append("output")
    quality = evaluate_quality(profile, sketch, thresholds) if thresholds.data_quality else None
    if quality is not None and quality.drifted:
        reasons.append("data_quality")
    return WindowEvaluation(
        model=sketch.model,
        model_version=sketch.model_version,
        window_start=sketch.window_start,
        window_end=sketch.window_end,
        status="evaluated",
        drifted=bool(reasons),
        reasons=reasons,
        drifted_features=drifted_features,
        drift_share=share,
        features=features,
        multivariate=multivariate,
        prediction_tests=_prediction_tests(profile, sketch, thresholds),
        summary=summary,
        output=output,
        data_quality=quality,
        # its own verdict and event (importance_drift), not one of the window's drift reasons
        importance=window_importance(profile, sketch, thresholds.importance),
    )


def _prediction_tests(
    profile: ReferenceProfile, sketch: WindowSketch, thresholds: ModelThresholds
) -> dict[str, TestResult]:
    out: dict[str, TestResult] = {}
    if profile.class_counts and sketch.class_counts:
        out["class_chi_square"] = chi_square(
            {k: float(v) for k, v in profile.class_counts.items()},
            {k: float(v) for k, v in sketch.class_counts.items()},
            alpha=thresholds.tests["chi_square"],
        )
    if profile.score_counts is not None and sketch.score_n:
        out["score_ks_binned"] = ks_binned(
            profile.score_counts, sketch.score_counts, alpha=thresholds.tests["ks_binned"]
        )
    return out
