"""Data quality per feature and window: the broken-pipeline checks, as verdicts.

A production model mostly goes wrong because an upstream pipeline broke: a feature stops
arriving, a join returns nulls, a unit or a type changes. :func:`evaluate_quality` checks every
monitored feature of a tested window against the reference profile:

================  ==========================================================  ==============
check             finding when                                                severity
================  ==========================================================  ==============
``absent``        no record of the window carried the feature's key           critical
``missing_rate``  two-proportion test on the missing share, Holm-corrected    warning
                  p < ``quality_alpha`` and |change| >= ``min_missing_change``  (critical
                  (0.1)                                                       when all null)
``type_errors``   share of values not readable as the feature's type (numeric warning
                  features: not a number; boolean: not true/false/1/0) above
                  the reference's by >= ``max_type_error_rate`` (0.01), and
                  Holm-corrected p < ``quality_alpha``
``out_of_range``  share of a numeric feature's values outside the reference's warning
                  [min, max] >= ``max_out_of_range`` (0.01)
``constant``      one value (or one category) in the whole window where the   warning
                  reference varied, and the chance of that under the
                  reference is below 1e-6 (``share ** n``)
``new_category``  one category absent from the reference's vocabulary (10,000  warning
                  values by default) takes >= ``min_new_category_share`` (2 %)
                  of the window's values (a lower bound from the heavy-hitters
                  summary, so never overstated)
``new_feature``   a feature the reference does not know, in >= 1 % of records reported only
================  ==========================================================  ==============

The p-value checks (missing rate, type errors) of all features form one family, Holm at
``quality_alpha`` (0.01), apart from the drift tests; the other checks are rules whose chance
under an unchanged pipeline is negligible (an out-of-range share of 1 % where the reference
range covers all but ~2/N of values; a constant window with probability < 1e-6).
``new_feature`` findings are events but not part of the verdict (a new field is not an error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from driftline.detectors.multiple_testing import adjust_p_values
from driftline.detectors.profile import OTHER, ReferenceProfile, bin_index
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.stats import two_proportion
from driftline.detectors.thresholds import ModelThresholds

__all__ = ["CHECKS", "DataQualityEvaluation", "QualityFinding", "evaluate_quality"]

Check = Literal[
    "absent",
    "missing_rate",
    "type_errors",
    "out_of_range",
    "constant",
    "new_category",
    "new_feature",
]
CHECKS: tuple[Check, ...] = get_args(Check)  # in the order of the table above
CONSTANT_PROBABILITY = 1e-6
NEW_FEATURE_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class QualityFinding:
    """One data-quality finding: which feature, which check, the window's and reference's
    figures (``statistic`` is the window's share or rate)."""

    feature: str
    check: Check
    severity: Literal["warning", "critical"]
    statistic: float
    reference: float | None
    threshold: float
    p_value: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "check": self.check,
            "severity": self.severity,
            "statistic": self.statistic,
            "reference": self.reference,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True, slots=True)
class DataQualityEvaluation:
    """The data-quality findings of one window (``drifted``: any finding but new features)."""

    findings: list[QualityFinding]
    missing_rate: dict[str, float]
    reference_missing_rate: dict[str, float]
    alpha: float

    @property
    def drifted(self) -> bool:
        return any(f.check != "new_feature" for f in self.findings)

    def issues(self) -> dict[str, int]:
        """Findings per check (every check present, 0 when none)."""
        out: dict[str, int] = dict.fromkeys(CHECKS, 0)
        for f in self.findings:
            out[f.check] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "alpha": self.alpha,
            "issues": self.issues(),
            "findings": [f.to_dict() for f in self.findings],
            "missing_rate": dict(self.missing_rate),
            "reference_missing_rate": dict(self.reference_missing_rate),
        }


@dataclass
class _Tested:
    feature: str
    check: Check
    p_value: float
    change: float
    minimum: float
    rate: float
    reference: float
    figures: dict[str, Any]


def evaluate_quality(
    profile: ReferenceProfile, sketch: WindowSketch, thresholds: ModelThresholds
) -> DataQualityEvaluation:
    """Data-quality verdict of one window (pure; never raises on data).

    >>> from driftline.detectors.batch import RecordBatch
    >>> rng = np.random.default_rng(0)
    >>> x = np.where(rng.random(20_000) < 0.2, np.nan, rng.normal(size=20_000))
    >>> profile = ReferenceProfile.from_columns({"x": x, "y": rng.normal(size=20_000)},
    ...                                         model="m", model_version="1")
    >>> sketch = WindowSketch.empty(profile, 0.0, 60.0)
    >>> records = [{"timestamp": 0.0, "features": {"x": None if i % 2 else 1.5 * i}}
    ...            for i in range(2_000)]  # x: 50 % missing, out of range; y: never sent
    >>> sketch.update(RecordBatch.from_records(records, profile.feature_types))
    >>> sorted((f.feature, f.check) for f in evaluate_quality(
    ...     profile, sketch, ModelThresholds()).findings)
    [('x', 'missing_rate'), ('x', 'out_of_range'), ('y', 'absent')]
    """
    n = sketch.n_records
    findings: list[QualityFinding] = []
    tested: list[_Tested] = []
    missing_rate: dict[str, float] = {}
    reference_missing: dict[str, float] = {}
    alpha_raw = thresholds.tests["chi_square"]
    for name in profile.feature_types:
        if name in profile.numeric:
            ref_n = profile.numeric[name]
            ref_missing, ref_invalid = ref_n.missing, ref_n.invalid
            ref_total = ref_n.count + ref_missing + ref_invalid
            ref_present = ref_n.count
            win_n = sketch.numeric[name]
            win_missing, win_invalid, win_present = win_n.missing, win_n.invalid, win_n.n
        else:
            ref_c = profile.categorical[name]
            ref_missing, ref_present = ref_c.missing, sum(ref_c.counts.values())
            ref_total = ref_present + ref_missing
            boolean = profile.feature_types[name] == "boolean"
            ref_invalid = ref_c.counts.get(OTHER, 0) if boolean else 0
            win_c = sketch.categorical[name]
            win_present, win_missing = sum(win_c.counts.values()), win_c.missing
            win_invalid = win_c.counts.get(OTHER, 0) if boolean else 0
        win_total = win_present + win_missing + (win_invalid if name in profile.numeric else 0)
        missing_rate[name] = win_missing / win_total if win_total else 0.0
        reference_missing[name] = ref_missing / ref_total if ref_total else 0.0
        if n == 0 or ref_total == 0:
            continue
        if sketch.absent_counts.get(name, 0) >= n and ref_present > 0:
            findings.append(
                QualityFinding(
                    name,
                    "absent",
                    "critical",
                    1.0,
                    reference_missing[name],
                    1.0,
                    figures={"records": n, "records_without_key": sketch.absent_counts[name]},
                )
            )
            continue
        tested.append(
            _proportion_test(
                name, "missing_rate", (ref_missing, ref_total), (win_missing, win_total),
                thresholds.min_missing_change, alpha_raw, {"missing": win_missing},
                two_sided=True,
            )
        )  # fmt: skip
        if name in profile.numeric or profile.feature_types[name] == "boolean":
            tested.append(
                _proportion_test(
                    name, "type_errors", (ref_invalid, ref_total), (win_invalid, win_total),
                    thresholds.max_type_error_rate, alpha_raw, {"invalid": win_invalid},
                )
            )  # fmt: skip
        findings += _range_and_constant(profile, sketch, name, thresholds)

    adjusted: list[float] = (
        adjust_p_values([t.p_value for t in tested], method="holm").tolist() if tested else []
    )
    for t, adj in zip(tested, adjusted, strict=True):
        if _p(adj) < thresholds.quality_alpha and t.change >= t.minimum:
            all_null = t.check == "missing_rate" and t.rate >= 1.0
            findings.append(
                QualityFinding(
                    t.feature,
                    t.check,
                    "critical" if all_null else "warning",
                    t.rate,
                    t.reference,
                    t.minimum,
                    p_value=_p(adj),
                    figures=t.figures,
                )
            )
    for name, count in sorted(sketch.new_features.items()):
        if n and count / n >= NEW_FEATURE_SHARE and name != OTHER:
            findings.append(
                QualityFinding(
                    name, "new_feature", "warning", count / n, None, NEW_FEATURE_SHARE,
                    figures={"records_with_feature": count, "records": n},
                )
            )  # fmt: skip
    findings.sort(key=lambda f: (f.feature, CHECKS.index(f.check)))
    return DataQualityEvaluation(
        findings, missing_rate, reference_missing, thresholds.quality_alpha
    )


def _range_and_constant(
    profile: ReferenceProfile, sketch: WindowSketch, name: str, thresholds: ModelThresholds
) -> list[QualityFinding]:
    out: list[QualityFinding] = []
    if name in profile.numeric:
        ref = profile.numeric[name]
        win = sketch.numeric[name]
        if win.n == 0 or ref.count == 0:
            return out
        outside = int(win.counts[0] + win.counts[-1])
        share = outside / win.n
        if share >= thresholds.max_out_of_range:
            out.append(
                QualityFinding(
                    name,
                    "out_of_range",
                    "warning",
                    share,
                    0.0,
                    thresholds.max_out_of_range,
                    figures={
                        "below": int(win.counts[0]),
                        "above": int(win.counts[-1]),
                        "window_min": win.min,
                        "window_max": win.max,
                        "reference_min": ref.low,
                        "reference_max": ref.high,
                    },
                )
            )
        if win.n >= 2 and win.min == win.max and ref.variance > 0:
            idx = int(bin_index(np.array([win.min]), ref.cuts, ref.low, ref.high)[0])
            ref_share = float(ref.counts[idx]) / ref.count
            out += _constant(name, win.min, win.n, ref_share, ref.std)
        return out
    counts = sketch.categorical[name].counts
    ref_counts = profile.categorical[name].counts
    total_present = sum(counts.values())
    if profile.feature_types[name] != "boolean" and total_present:
        reference = profile.categorical[name]
        for value, count in sorted(sketch.categorical[name].unseen.items()):
            share = count / total_present
            if share >= thresholds.min_new_category_share and not reference.known(value):
                out.append(
                    QualityFinding(
                        name, "new_category", "warning", share, 0.0,
                        thresholds.min_new_category_share,
                        figures={"category": value, "records_at_least": count,
                                 "vocabulary_complete": reference.vocabulary_complete},
                    )
                )  # fmt: skip
    present = [k for k, v in counts.items() if v > 0]
    total = sum(counts.values())
    ref_total = sum(ref_counts.values())
    if (
        len(present) == 1
        and total >= 2
        and ref_total
        and sum(1 for v in ref_counts.values() if v) > 1
    ):
        ref_share = ref_counts.get(present[0], 0) / ref_total
        out += _constant(name, present[0], total, ref_share, None)
    return out


def _proportion_test(
    name: str,
    check: Check,
    reference: tuple[int, int],
    window: tuple[int, int],
    minimum: float,
    alpha: float,
    figures: dict[str, Any],
    *,
    two_sided: bool = False,
) -> _Tested:
    """The two-proportion test of one share (missing values, type errors), window against
    reference, before the Holm correction; ``change`` is the rise (either way if two-sided)."""
    (ref_k, ref_total), (win_k, win_total) = reference, window
    result = two_proportion(ref_k, ref_total, win_k, win_total, alpha=alpha)
    return _Tested(
        name,
        check,
        _p(result.p_value),
        abs(result.statistic) if two_sided else result.statistic,
        minimum,
        win_k / win_total if win_total else 0.0,
        ref_k / ref_total if ref_total else 0.0,
        {**figures, "records": win_total},
    )


def _constant(
    name: str, value: Any, records: int, reference_share: float, reference: float | None
) -> list[QualityFinding]:
    """A ``constant`` finding when ``records`` equal values had a chance below
    `CONSTANT_PROBABILITY` under the reference (``reference_share ** records``)."""
    chance = math.exp(records * math.log(reference_share)) if reference_share > 0 else 0.0
    if chance >= CONSTANT_PROBABILITY:
        return []
    figures = {"value": value, "records": records, "reference_share_of_value": reference_share}
    return [QualityFinding(name, "constant", "warning", 0.0, reference, 0.0, figures=figures)]


def _p(p: float | None) -> float:
    if p is None or not math.isfinite(p):
        return 1.0
    return min(max(float(p), 0.0), 1.0)
