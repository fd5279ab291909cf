"""Drift thresholds: defaults, per-model and per-feature overrides, validated at load time.

The file ``config/drift_thresholds.yaml`` has one root key, ``drift_thresholds``, with
``defaults`` (every model) and ``models.<model>`` (overrides, same keys, plus
``features.<feature>``). Every unknown key and every wrong type is refused with an error
naming the key path, e.g.
``drift_thresholds.models.fraud.features.amount.psi: expected a number > 0, got 'high'``.
The keys, their types, bounds and defaults are the fields of the dataclasses below, read by
the one key reader (:mod:`driftline.keys`).

Keys (defaults in brackets, where they come from in parentheses):

* one key per registered statistical test (``detectors/stats/registry.py``, e.g. ``ks``,
  ``psi``, ``mmd``): for a p-value test its significance level alpha, in (0, 1); for an
  effect-size test its threshold, > 0. The table of every test, its default and where the
  default comes from is generated from the registry into docs/DRIFT_DETECTION.md.
* ``numeric_test`` [``ks_binned``]: the p-value test behind a numeric feature's verdict, any
  registered p-value test for numeric features, e.g. ``ks_binned`` (KS on the window's full
  histogram) or ``ks`` (exact KS on the samples).
* ``min_effect_numeric`` [0.12]: normalised Wasserstein distance a numeric feature must reach
  to be called drifted (Evidently's 0.1 raised to 0.12: with 1,000-record windows, features
  that pass Holm by chance have a Wasserstein distance of 0.10-0.13).
* ``min_effect_categorical`` [0.075]: Jensen-Shannon distance (base 2, small-sample bias
  removed) a categorical feature must reach; below Evidently's 0.1 (itself 0.12 in base 2) because a 10-point move between two large categories
  gives only about 0.085, above the 0.05-0.07 that 8 categories reach by chance in 1,000
  records.
* ``min_effect_correlation`` [0.1]: largest change of a pairwise Pearson correlation the
  multivariate verdict requires (0 disables the gate).
* ``multivariate_alpha`` [0.01]: family-wise level of the multivariate tests (MMD, PCA
  reconstruction, PCA covariance; Holm within the family).
* ``correction`` [``holm``]: ``holm`` (Holm 1979, family-wise error), ``bh``
  (Benjamini-Hochberg 1995, false discovery rate) or ``bonferroni``; applied across the
  features of one model and window.
* ``drift_share`` [0.0]: the model drifts when at least one feature drifts *and* the share
  of drifted features is at least this (Evidently uses 0.5; 0 means any feature).
* ``min_samples`` [500]: windows with fewer records are not tested.
* ``multivariate`` [true]: run the multivariate tests.
* output drift (the model's outputs, label-free; see ``evaluate.OutputEvaluation``):
  ``output_drift`` [true] runs the tests; ``output_alpha`` [0.005] is the family-wise level
  of the output tests (Holm over score, class balance, low-confidence share, per-class
  probabilities or the regression prediction: their own family, apart from the features;
  0.005 because the families add up: at 0.01 the model-level false-alarm rate of the
  13-feature benchmark stream was 1.1 % at 1,000 records, above the 1 % target);
  a signal drifts when its corrected p-value is below ``output_alpha`` *and* its effect
  reaches the minimum: ``min_effect_score`` [0.02] (1-Wasserstein distance between the
  score histograms, in score units: a shift of the mean score by 0.05 gives ~0.05),
  ``min_effect_class`` [0.02] (total-variation distance between the predicted-class
  shares: 5 % -> 8 % positives gives 0.03), ``min_effect_confidence`` [0.05] (absolute
  change of the share of low-confidence predictions), ``min_effect_prediction`` [0.12]
  (regression: normalised Wasserstein, as ``min_effect_numeric``).
  ``low_confidence_band`` [[0.4, 0.6]]: a prediction is low-confidence when its score
  lies in ``[low, high)`` (multiples of 0.02, the score histogram's bins; for multiclass
  models whose score is the top class probability use e.g. ``[0.0, 0.6]``).
  ``max_estimated_accuracy_drop`` [0.05]: when output drift and a CBPE-estimated relative
  accuracy drop above this agree in one window, the ``output_drift`` event is critical
  and says so (same default as ``labels.max_accuracy_drop``).
* data quality (per feature and window; see ``detectors/quality.py``): ``data_quality``
  [true] runs the checks; ``quality_alpha`` [0.01] is the family-wise level (Holm over the
  features) of the missing-rate and type-error tests; ``min_missing_change`` [0.1]: absolute
  change of a feature's missing rate that counts; ``max_type_error_rate`` [0.01]: share of
  values that cannot be read as the feature's type (above the reference's share);
  ``max_out_of_range`` [0.01]: share of a numeric feature's values outside the reference's
  observed [min, max]; ``min_new_category_share`` [0.02]: share of a categorical feature's
  values taken by one category absent from the reference's vocabulary.
* per feature only: ``critical`` [false] (the model drifts whenever this feature drifts),
  ``min_effect`` (overrides the numeric/categorical minimum effect), and the test keys above
  that apply to one feature (registered for numeric or categorical features).
* ``importance``: feature-importance drift, a mapping whose keys (``min_share_change``,
  ``min_share_change_proxy``, ``top_k``, ``min_records``, ``max_features``, ``enabled``) are
  the fields of :class:`driftline.detectors.importance.ImportanceThresholds`.

>>> t = thresholds_from_dict({"drift_thresholds": {
...     "defaults": {"min_samples": 1000},
...     "models": {"fraud": {"psi": 0.25, "features": {"amount": {"critical": True}}}}}})
>>> m = t.for_model("fraud")
>>> m.min_samples, m.tests["psi"], m.feature("amount").critical, m.feature("other").critical
(1000, 0.25, True, False)
>>> thresholds_from_dict({"drift_thresholds": {"models": {"fraud": {"features": {
...     "amount": {"psi": "high"}}}}}})
Traceback (most recent call last):
...
driftline.detectors.thresholds.ThresholdsError: drift_thresholds.models.fraud.features.amount.psi: expected a number > 0, got 'high'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from driftline.detectors.importance import ImportanceThresholds
from driftline.detectors.stats.registry import REGISTRY, names
from driftline.keys import Bound, SettingsError, key, read, yaml_problem

__all__ = [
    "DEFAULT_TESTS",
    "DriftThresholds",
    "FeatureThresholds",
    "ModelThresholds",
    "ThresholdsError",
    "load_thresholds",
    "thresholds_from_dict",
]

Correction = Literal["holm", "bh", "bonferroni"]

# Test keys, their validation and defaults come from the statistical-test registry.
P_VALUE_TESTS = names(kind="p_value")
EFFECT_TESTS = names(kind="effect")
FEATURE_TESTS = names(scopes=("numeric", "categorical"))
NUMERIC_TESTS = names(kind="p_value", scopes=("numeric",))  # choices of numeric_test
DEFAULT_TESTS: dict[str, float] = {t.name: t.default for t in REGISTRY}
SCORE_BIN_WIDTH = 0.02  # the score histogram's bins (profile.SCORE_BINS = 50 over [0, 1])


class ThresholdsError(SettingsError):
    """Invalid thresholds configuration; the message starts with the offending key path."""


def _test_bounds(tests: tuple[str, ...]) -> dict[str, Bound | None]:
    """A p-value test's key is its alpha, in (0, 1); an effect test's its threshold, > 0."""
    return {t: Bound(gt=0, lt=1) if t in P_VALUE_TESTS else Bound(gt=0) for t in tests}


def _band_problem(band: tuple[float, float]) -> str | None:
    if any(abs(e / SCORE_BIN_WIDTH - round(e / SCORE_BIN_WIDTH)) > 1e-9 for e in band):
        return f"expected edges that are multiples of 0.02 (the score bins), got {list(band)}"
    return None if band[0] < band[1] else f"expected low < high, got {list(band)}"


@dataclass(frozen=True, slots=True)
class FeatureThresholds:
    """Resolved thresholds of one feature."""

    tests: dict[str, float] = key(factory=dict, spread=lambda: _test_bounds(FEATURE_TESTS))
    min_effect: float | None = key(None, ge=0)  # None: the model's numeric/categorical minimum
    critical: bool = False


@dataclass(frozen=True, slots=True)
class ModelThresholds:
    """Resolved thresholds of one model (defaults with the model's overrides applied)."""

    tests: dict[str, float] = key(
        factory=lambda: dict(DEFAULT_TESTS), spread=lambda: _test_bounds(tuple(DEFAULT_TESTS))
    )
    numeric_test: str = key("ks_binned", choices=NUMERIC_TESTS)
    min_effect_numeric: float = key(0.12, ge=0)
    min_effect_categorical: float = key(0.075, ge=0)
    min_effect_correlation: float = key(0.1, ge=0)
    multivariate_alpha: float = key(0.01, gt=0, lt=1)
    correction: Correction = "holm"
    drift_share: float = key(0.0, ge=0, le=1)
    min_samples: int = key(500, ge=1)
    multivariate: bool = True
    max_error_rate: float = key(0.05, ge=0, le=1)  # share of failed predictions in a window
    max_latency_p99_seconds: float = key(0.5, gt=0)  # serving latency p99 of a window
    output_drift: bool = True
    output_alpha: float = key(0.005, gt=0, lt=1)
    min_effect_score: float = key(0.02, ge=0)
    min_effect_class: float = key(0.02, ge=0)
    min_effect_confidence: float = key(0.05, ge=0)
    min_effect_prediction: float = key(0.12, ge=0)
    low_confidence_band: tuple[float, float] = key((0.4, 0.6), ge=0, le=1, check=_band_problem)
    max_estimated_accuracy_drop: float = key(0.05, gt=0, le=1)
    data_quality: bool = True
    quality_alpha: float = key(0.01, gt=0, lt=1)
    min_missing_change: float = key(0.1, gt=0, le=1)
    max_type_error_rate: float = key(0.01, gt=0, le=1)
    max_out_of_range: float = key(0.01, gt=0, le=1)
    min_new_category_share: float = key(0.02, gt=0, le=1)
    features: dict[str, FeatureThresholds] = field(default_factory=dict)
    importance: ImportanceThresholds = field(default_factory=ImportanceThresholds)

    def feature(self, name: str) -> FeatureThresholds:
        """Thresholds of one feature (the model's, with the feature's overrides)."""
        own = self.features.get(name)
        if own is None:
            return FeatureThresholds(tests=self.tests)
        return replace(own, tests={**self.tests, **own.tests})


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """All thresholds: defaults and per-model overrides (each model starts from the defaults;
    ``features`` are per model only)."""

    defaults: ModelThresholds = key(factory=ModelThresholds, without=("features",))
    models: dict[str, ModelThresholds] = key(factory=dict, base="defaults")

    def for_model(self, model: str) -> ModelThresholds:
        return self.models.get(model, self.defaults)


@dataclass(frozen=True, slots=True)
class _ThresholdsFile:
    drift_thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    concept_drift: Mapping[str, Any] | None = None  # read by detectors/concept/settings.py


def thresholds_from_dict(data: Any) -> DriftThresholds:
    """Validate a parsed configuration (``{"drift_thresholds": {...}}``); pure function."""
    return read(_ThresholdsFile, data, error=ThresholdsError).drift_thresholds


def load_thresholds(path: str | Path) -> DriftThresholds:
    """Read and validate a YAML thresholds file (see the module docstring for the keys)."""
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ThresholdsError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    try:
        return thresholds_from_dict(data)
    except ThresholdsError as exc:
        raise ThresholdsError(f"{path}: {exc}") from None
