"""CBPE: expected confusion matrix, isotonic calibration, reference bands."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from driftline.detectors import estimation
from driftline.detectors.estimation import (
    CBPE,
    ExpectedConfusion,
    IsotonicCalibrator,
    expected_confusion,
    expected_confusion_from_histogram,
)


def test_cbpe_tiny_by_hand() -> None:
    # p = [0.9, 0.7, 0.3, 0.1], threshold 0.5 -> predicted [1, 1, 0, 0]
    # TP = 0.9 + 0.7 = 1.6, FP = 0.1 + 0.3 = 0.4, FN = 0.3 + 0.1 = 0.4, TN = 0.7 + 0.9 = 1.6
    est = CBPE().estimate([0.9, 0.7, 0.3, 0.1])
    c = est.confusion
    assert (c.tp, c.fp, c.fn, c.tn) == pytest.approx((1.6, 0.4, 0.4, 1.6))
    assert est.metrics["accuracy"] == pytest.approx(0.8)
    assert est.metrics["precision"] == pytest.approx(0.8)
    assert est.metrics["recall"] == pytest.approx(0.8)
    assert est.metrics["f1"] == pytest.approx(0.8)
    assert not est.estimated_performance_drop  # no bands, no alerts


def test_edge_cases() -> None:
    empty = expected_confusion([], [])
    assert empty.n == 0 and all(v is None for v in empty.metrics().values())
    all_neg = expected_confusion([0.1, 0.2], [0, 0])
    assert all_neg.metrics()["precision"] is None  # nothing predicted positive
    assert all_neg.metrics()["accuracy"] == pytest.approx(0.85)
    with_nan = expected_confusion([0.8, np.nan], [1, 1])
    assert with_nan.n == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no labelled"):
        IsotonicCalibrator.fit([0.1, 0.2], [np.nan, np.nan])


def test_histogram_matches_records_when_bins_are_exact() -> None:
    scores = np.array([0.05, 0.15, 0.15, 0.55, 0.95, 0.95])
    edges = np.linspace(0, 1, 11)
    counts, _ = np.histogram(scores, edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    per_record = CBPE().estimate(np.round(scores, 2))
    # scores sit on bin midpoints, so the histogram estimate is exact
    hist = CBPE().estimate_from_histogram(counts, edges)
    assert hist.confusion.tp == pytest.approx(per_record.confusion.tp)
    assert hist.confusion.tn == pytest.approx(per_record.confusion.tn)
    direct = expected_confusion_from_histogram(counts, mids, mids >= 0.5)
    assert direct == hist.confusion
    merged = direct + direct
    assert merged.n == pytest.approx(12)
    with pytest.raises(ValueError, match="bin edges"):
        CBPE().estimate_from_histogram(counts, edges[:-1])


def _simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(2, 2, n)
    return p, (rng.random(n) < p).astype(np.int64)


def test_estimate_close_to_realised_on_calibrated_data() -> None:
    rng = np.random.default_rng(11)
    p_ref, y_ref = _simulate(10_000, rng)
    cbpe = CBPE.fit(p_ref, y_ref, calibrate=False, chunk_size=1000)
    # covariate shift: more confident scores in production
    p = rng.beta(5, 5, 5000) ** 2
    y = (rng.random(p.size) < p).astype(np.int64)
    est = cbpe.estimate(p).metrics
    pred = p >= 0.5
    realised_acc = np.mean(pred == y)
    realised_prec = y[pred].mean()
    assert est["accuracy"] == pytest.approx(realised_acc, abs=0.02)
    assert est["precision"] == pytest.approx(realised_prec, abs=0.03)


def test_calibration_fixes_miscalibrated_scores() -> None:
    rng = np.random.default_rng(5)
    p_true, y = _simulate(30_000, rng)
    # overconfident model: score = sigmoid(3 * logit(p)), same ranking, wrong probabilities
    logit = np.log(p_true / (1 - p_true))
    score = 1 / (1 + np.exp(-3 * logit))
    ref, cur = slice(0, 15_000), slice(15_000, None)
    realised = np.mean((score[cur] >= 0.5) == y[cur])
    raw = CBPE.fit(score[ref], y[ref], calibrate=False).estimate(score[cur])
    cal = CBPE.fit(score[ref], y[ref], calibrate=True).estimate(score[cur])
    assert raw.metrics["accuracy"] is not None and cal.metrics["accuracy"] is not None
    assert abs(raw.metrics["accuracy"] - realised) > 0.1  # overconfidence over-estimates
    assert cal.metrics["accuracy"] == pytest.approx(realised, abs=0.02)


def test_isotonic_calibrator_by_hand_and_json() -> None:
    # PAVA on labels [1, 0, 0, 1] at scores 1..4 pools the first three: 1/3
    cal = IsotonicCalibrator.fit([1, 2, 3, 4], [1, 0, 0, 1])
    assert cal([1, 2, 3, 4]).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert cal.x == (1.0, 3.0, 4.0)  # the middle point of a constant block is dropped
    back = IsotonicCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    # ties in scores are pooled before PAVA
    tied = IsotonicCalibrator.fit([0.5, 0.5, 0.9], [0, 1, 1])
    assert tied([0.5]).tolist() == [0.5]
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicCalibrator((0.0, 1.0), (1.0, 0.0))


def test_bands_and_drop_flag() -> None:
    rng = np.random.default_rng(8)
    p_ref, y_ref = _simulate(20_000, rng)
    cbpe = CBPE.fit(p_ref, y_ref, chunk_size=2000)
    band = cbpe.bands["accuracy"]
    assert band.lower < band.mean < band.upper
    assert band.lower == pytest.approx(band.mean - 3 * band.std)
    # scores drift toward 0.5: the model becomes unsure and accuracy should drop
    unsure = rng.uniform(0.45, 0.55, 2000)
    drop = cbpe.estimate(unsure)
    assert drop.drops["accuracy"] and drop.estimated_performance_drop
    assert not cbpe.estimate(p_ref[:2000]).estimated_performance_drop
    back = CBPE.from_dict(json.loads(json.dumps(cbpe.to_dict())))
    assert back.bands == cbpe.bands and back.calibrator == cbpe.calibrator
    # too little reference for two chunks: no bands, never alerts
    assert CBPE.fit(p_ref[:5], y_ref[:5], chunk_size=10).bands == {}


def test_expected_confusion_addition() -> None:
    total = ExpectedConfusion(1, 2, 3, 4) + ExpectedConfusion(1, 1, 1, 1)
    assert total == ExpectedConfusion(2, 3, 4, 5)


def test_doctests() -> None:
    assert doctest.testmod(estimation).failed == 0
