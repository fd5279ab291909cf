"""Window performance metrics, against hand-computed values."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from driftline.detectors import performance
from driftline.detectors.performance import (
    ConfusionCounts,
    RegressionSums,
    binary_metrics,
    classification_metrics,
    log_loss,
    multiclass_metrics,
    performance_trend,
    regression_metrics,
    relative_drop,
    roc_auc,
    roc_auc_from_histograms,
)


def test_binary_confusion_by_hand() -> None:
    # TP=3, FN=1, FP=2, TN=4 (n=10)
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    cc = ConfusionCounts()
    cc.update(y_true, y_pred)
    assert cc.labels == (0, 1)
    assert cc.matrix.tolist() == [[4, 2], [1, 3]]
    m = binary_metrics(cc)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert m["positive_rate"] == pytest.approx(0.5)
    assert m["prevalence"] == pytest.approx(0.4)


def test_confusion_merge_and_json() -> None:
    a, b = ConfusionCounts(), ConfusionCounts()
    a.update(["cat", "dog"], ["cat", "cat"])
    b.update(["bird", "dog", None], ["bird", "dog", "dog"])
    merged = a.merge(b)
    assert merged.n == 4 and merged.n_unlabelled == 1
    back = ConfusionCounts.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert back.labels == merged.labels
    assert back.matrix.tolist() == merged.matrix.tolist()
    i, j = back.index("dog"), back.index("cat")
    assert back.matrix[i, j] == 1 and back.matrix[i, i] == 1


def test_float_labels_become_ints_and_nan_is_missing() -> None:
    cc = ConfusionCounts()
    cc.update(np.array([1.0, 0.0, np.nan]), np.array([1.0, 1.0, 0.0]))
    assert cc.labels == (0, 1) and cc.n == 2 and cc.n_unlabelled == 1


def test_multiclass_by_hand() -> None:
    # classes a, b, c; rows true, cols pred
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = multiclass_metrics(_counts(y_true, y_pred))
    # per class precision: a 2/2, b 1/2, c 1/2; recall: a 2/3, b 1/2, c 1/1
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1 = [2 * 2 / (2 + 3), 2 * 1 / (2 + 2), 2 * 1 / (2 + 1)]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["micro_f1"] == pytest.approx(4 / 6)


def _counts(t: list[str], p: list[str]) -> ConfusionCounts:
    cc = ConfusionCounts()
    cc.update(t, p)
    return cc


def test_edge_cases_give_none_not_nan() -> None:
    empty = binary_metrics(ConfusionCounts())
    assert all(v is None for v in empty.values())
    only_neg = classification_metrics([0, 0, 0], [0, 0, 0], scores=[0.1, 0.2, 0.3])
    assert only_neg["accuracy"] == 1.0
    assert only_neg["precision"] is None and only_neg["recall"] is None
    assert only_neg["roc_auc"] is None and only_neg["n"] == 3
    unlabelled = classification_metrics([None, None], [1, 0], scores=[0.9, 0.1])
    assert unlabelled["n"] == 0 and unlabelled["accuracy"] is None
    assert unlabelled["roc_auc"] is None and unlabelled["log_loss"] is None
    assert multiclass_metrics(ConfusionCounts())["macro_f1"] is None
    assert regression_metrics([], [])["mae"] is None
    assert relative_drop(0.5, 0.0) is None and relative_drop(None, 0.9) is None


def test_classification_metrics_with_scores() -> None:
    out = classification_metrics(
        [1, 0, 1, 0, None], [1, 0, 0, 0, 1], scores=[0.9, 0.2, 0.4, 0.3, 0.7]
    )
    assert out["roc_auc"] == pytest.approx(1.0)  # positives 0.9, 0.4 above negatives 0.2, 0.3
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.7]))
    assert out["log_loss"] == pytest.approx(expected)
    assert out["n"] == 4


def test_auc_tiny_by_hand_with_ties() -> None:
    # positives 0.8, 0.5; negatives 0.5, 0.2 -> pairs: 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]) == pytest.approx(0.875)
    # same as histograms over bins [0.2], [0.5], [0.8]
    assert roc_auc_from_histograms([0, 1, 1], [1, 1, 0]) == pytest.approx(0.875)
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert roc_auc_from_histograms([0, 0], [1, 2]) is None


def test_histogram_auc_approaches_exact() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(20_000) < 0.3
    s = 1 / (1 + np.exp(-(rng.normal(size=y.size) + 1.2 * y)))
    exact = roc_auc(y, s)
    assert exact is not None
    errors = []
    for bins in (10, 100, 1000):
        edges = np.linspace(0, 1, bins + 1)
        pos, _ = np.histogram(s[y], edges)
        neg, _ = np.histogram(s[~y], edges)
        approx = roc_auc_from_histograms(pos, neg)
        assert approx is not None
        errors.append(abs(approx - exact))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4


def test_log_loss_clipped() -> None:
    value = log_loss([1], [0.0])
    assert value is not None and np.isfinite(value)
    assert log_loss([], []) is None


def test_regression_sums_merge() -> None:
    a, b = RegressionSums(), RegressionSums()
    a.update([0.0, 0.0], [1.0, -3.0])
    b.update([1.0, np.nan], [1.0, 5.0])
    m = a.merge(b)
    assert m.n == 3 and m.mae == pytest.approx(4 / 3) and m.rmse == pytest.approx(np.sqrt(10 / 3))
    assert RegressionSums.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_relative_drop_direction() -> None:
    assert relative_drop(0.72, 0.9) == pytest.approx(0.2)
    assert relative_drop(0.95, 0.9) == pytest.approx(-0.05 / 0.9)
    assert relative_drop(0.3, 0.2, higher_is_better=False) == pytest.approx(0.5)


def test_trend_per_hour_and_rules() -> None:
    hours = np.arange(6) * 3600.0
    falling = [0.90, 0.89, 0.87, 0.865, 0.85, 0.84]
    tr = performance_trend(falling, hours)
    assert tr.unit == "per_hour" and tr.direction == "degrading"
    assert tr.slope == pytest.approx(np.polyfit(np.arange(6), falling, 1)[0])
    # error metric going down is an improvement
    assert performance_trend(falling, higher_is_better=False).direction == "improving"
    # noisy flat series is stable
    rng = np.random.default_rng(0)
    assert performance_trend(0.9 + 0.01 * rng.normal(size=30)).direction == "stable"
    # tiny but consistent change below min_change is stable
    assert performance_trend([0.9, 0.899, 0.898, 0.897]).direction == "stable"
    # too few points, Nones dropped
    short = performance_trend([0.9, None, 0.5])
    assert short.direction == "stable" and short.slope is None and short.n == 2


def test_doctests() -> None:
    assert doctest.testmod(performance).failed == 0
