"""Drift thresholds: defaults, per-model and per-feature overrides, validated at load time.

The file ``config/drift_thresholds.yaml`` has one root key, ``drift_thresholds``, with
``defaults`` (every model) and ``models.<model>`` (overrides, same keys, plus
``features.<feature>``). Every unknown key and every wrong type is refused with an error
naming the key path, e.g.
``drift_thresholds.models.fraud.features.amount.psi: expected a number, got 'high'``.

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
  validated by :func:`driftline.detectors.importance.importance_thresholds_from_dict`.

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
driftline.detectors.thresholds.ThresholdsError: drift_thresholds.models.fraud.features.amount.psi: expected a number, got 'high'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from driftline.detectors.importance import (
    ImportanceConfigError,
    ImportanceThresholds,
    importance_thresholds_from_dict,
)
from driftline.detectors.stats.registry import REGISTRY, names

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


class ThresholdsError(ValueError):
    """Invalid thresholds configuration; the message starts with the offending key path."""


@dataclass(frozen=True, slots=True)
class FeatureThresholds:
    """Resolved thresholds of one feature."""

    tests: dict[str, float]
    min_effect: float | None = None  # None: the model's numeric/categorical minimum
    critical: bool = False


@dataclass(frozen=True, slots=True)
class ModelThresholds:
    """Resolved thresholds of one model (defaults with the model's overrides applied)."""

    tests: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TESTS))
    numeric_test: str = "ks_binned"  # one of NUMERIC_TESTS
    min_effect_numeric: float = 0.12
    min_effect_categorical: float = 0.075
    min_effect_correlation: float = 0.1
    multivariate_alpha: float = 0.01
    correction: Correction = "holm"
    drift_share: float = 0.0
    min_samples: int = 500
    multivariate: bool = True
    max_error_rate: float = 0.05  # share of predictions that failed (error field) in a window
    max_latency_p99_seconds: float = 0.5  # serving latency p99 of a window
    output_drift: bool = True
    output_alpha: float = 0.005
    min_effect_score: float = 0.02
    min_effect_class: float = 0.02
    min_effect_confidence: float = 0.05
    min_effect_prediction: float = 0.12
    low_confidence_band: tuple[float, float] = (0.4, 0.6)
    max_estimated_accuracy_drop: float = 0.05
    data_quality: bool = True
    quality_alpha: float = 0.01
    min_missing_change: float = 0.1
    max_type_error_rate: float = 0.01
    max_out_of_range: float = 0.01
    min_new_category_share: float = 0.02
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
    """All thresholds: defaults and per-model overrides."""

    defaults: ModelThresholds = field(default_factory=ModelThresholds)
    models: dict[str, ModelThresholds] = field(default_factory=dict)

    def for_model(self, model: str) -> ModelThresholds:
        return self.models.get(model, self.defaults)


# -- validation ------------------------------------------------------------------------------


def _fail(path: str, expected: str, got: Any) -> ThresholdsError:
    return ThresholdsError(f"{path}: expected {expected}, got {got!r}")


def _number(path: str, value: Any, low: float, high: float, *, open_low: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, "a number", value)
    ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise _fail(path, f"a number in {bound}", value)
    return float(value)


def _alpha(path: str, value: Any) -> float:
    v = _number(path, value, -math.inf, math.inf, open_low=True)
    if not 0.0 < v < 1.0:
        raise _fail(path, "a number in (0, 1)", value)
    return v


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, "a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise _fail(path, "string keys", key)
    return value


def _test_value(path: str, key: str, value: Any) -> float:
    if key in P_VALUE_TESTS:
        return _alpha(path, value)
    return _number(path, value, 0.0, math.inf, open_low=True)


def _choice(path: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(path, "one of " + ", ".join(allowed), value)
    return str(value)


def _feature(path: str, raw: Any) -> FeatureThresholds:
    data = _mapping(path, raw)
    tests: dict[str, float] = {}
    min_effect: float | None = None
    critical = False
    for key, value in data.items():
        p = f"{path}.{key}"
        if key in FEATURE_TESTS:
            tests[key] = _test_value(p, key, value)
        elif key == "min_effect":
            min_effect = _number(p, value, 0.0, math.inf, open_low=False)
        elif key == "critical":
            if not isinstance(value, bool):
                raise _fail(p, "true or false", value)
            critical = value
        else:
            raise ThresholdsError(
                f"{p}: unknown key (allowed: {', '.join([*FEATURE_TESTS, 'min_effect', 'critical'])})"
            )
    return FeatureThresholds(tests=tests, min_effect=min_effect, critical=critical)


_MODEL_KEYS = (
    *P_VALUE_TESTS,
    *EFFECT_TESTS,
    "numeric_test",
    "min_effect_numeric",
    "min_effect_categorical",
    "min_effect_correlation",
    "multivariate_alpha",
    "correction",
    "drift_share",
    "min_samples",
    "multivariate",
    "max_error_rate",
    "max_latency_p99_seconds",
    "output_drift",
    "output_alpha",
    "min_effect_score",
    "min_effect_class",
    "min_effect_confidence",
    "min_effect_prediction",
    "low_confidence_band",
    "max_estimated_accuracy_drop",
    "data_quality",
    "quality_alpha",
    "min_missing_change",
    "max_type_error_rate",
    "max_out_of_range",
    "min_new_category_share",
    "importance",
)
SCORE_BIN_WIDTH = 0.02  # the score histogram's bins (profile.SCORE_BINS = 50 over [0, 1])


def _band(path: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(path, "[low, high]", value)
    low = _number(f"{path}[0]", value[0], 0.0, 1.0, open_low=False)
    high = _number(f"{path}[1]", value[1], 0.0, 1.0, open_low=False)
    for edge in (low, high):
        if abs(edge / SCORE_BIN_WIDTH - round(edge / SCORE_BIN_WIDTH)) > 1e-9:
            raise _fail(path, "edges that are multiples of 0.02 (the score bins)", value)
    if not low < high:
        raise _fail(path, "low < high", value)
    return (low, high)


def _model(path: str, raw: Any, base: ModelThresholds, *, allow_features: bool) -> ModelThresholds:
    data = _mapping(path, raw)
    tests = dict(base.tests)
    changes: dict[str, Any] = {}
    for key, value in data.items():
        p = f"{path}.{key}"
        if key in DEFAULT_TESTS:
            tests[key] = _test_value(p, key, value)
        elif key == "numeric_test":
            changes[key] = _choice(p, value, NUMERIC_TESTS)
        elif key == "correction":
            changes[key] = _choice(p, value, ("holm", "bh", "bonferroni"))
        elif key in ("min_effect_numeric", "min_effect_categorical", "min_effect_correlation"):
            changes[key] = _number(p, value, 0.0, math.inf, open_low=False)
        elif key in (
            "min_missing_change",
            "max_type_error_rate",
            "max_out_of_range",
            "min_new_category_share",
        ):
            changes[key] = _number(p, value, 0.0, 1.0, open_low=True)
        elif key in ("multivariate_alpha", "output_alpha", "quality_alpha"):
            changes[key] = _alpha(p, value)
        elif key in (
            "min_effect_score",
            "min_effect_class",
            "min_effect_confidence",
            "min_effect_prediction",
        ):
            changes[key] = _number(p, value, 0.0, math.inf, open_low=False)
        elif key == "max_estimated_accuracy_drop":
            changes[key] = _number(p, value, 0.0, 1.0, open_low=True)
        elif key == "low_confidence_band":
            changes[key] = _band(p, value)
        elif key in ("drift_share", "max_error_rate"):
            changes[key] = _number(p, value, 0.0, 1.0, open_low=False)
        elif key == "max_latency_p99_seconds":
            changes[key] = _number(p, value, 0.0, math.inf, open_low=True)
        elif key == "min_samples":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(p, "an integer >= 1", value)
            changes[key] = value
        elif key in ("multivariate", "output_drift", "data_quality"):
            if not isinstance(value, bool):
                raise _fail(p, "true or false", value)
            changes[key] = value
        elif key == "importance":  # parsed by the importance module, which owns its keys
            try:
                changes[key] = importance_thresholds_from_dict(p, value, base.importance)
            except ImportanceConfigError as exc:
                raise ThresholdsError(str(exc)) from None
        elif key == "features" and allow_features:
            feats = _mapping(p, value)
            changes[key] = {name: _feature(f"{p}.{name}", f) for name, f in feats.items()}
        else:
            allowed = [*_MODEL_KEYS, *(["features"] if allow_features else [])]
            raise ThresholdsError(f"{p}: unknown key (allowed: {', '.join(allowed)})")
    return replace(base, tests=tests, **changes)


def thresholds_from_dict(data: Any) -> DriftThresholds:
    """Validate a parsed configuration (``{"drift_thresholds": {...}}``); pure function."""
    root = _mapping("<root>", data)
    for key in root:
        if key not in ("drift_thresholds", "concept_drift"):  # concept_drift: detectors/concept/settings.py
            raise ThresholdsError(f"{key}: unknown key (allowed: drift_thresholds, concept_drift)")
    body = _mapping("drift_thresholds", root.get("drift_thresholds"))
    for key in body:
        if key not in ("defaults", "models"):
            raise ThresholdsError(
                f"drift_thresholds.{key}: unknown key (allowed: defaults, models)"
            )
    defaults = _model(
        "drift_thresholds.defaults", body.get("defaults"), ModelThresholds(), allow_features=False
    )
    models_raw = _mapping("drift_thresholds.models", body.get("models"))
    models = {
        name: _model(f"drift_thresholds.models.{name}", raw, defaults, allow_features=True)
        for name, raw in models_raw.items()
    }
    return DriftThresholds(defaults=defaults, models=models)


def load_thresholds(path: str | Path) -> DriftThresholds:
    """Read and validate a YAML thresholds file (see the module docstring for the keys)."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    try:
        return thresholds_from_dict(data)
    except ThresholdsError as exc:
        raise ThresholdsError(f"{path}: {exc}") from None
