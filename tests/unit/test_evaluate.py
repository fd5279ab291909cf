"""evaluate_window and the thresholds loader: verdicts, edge cases, validation messages."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import WindowEvaluation, evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import (
    ModelThresholds,
    ThresholdsError,
    load_thresholds,
    thresholds_from_dict,
)

REPO = Path(__file__).resolve().parents[2]
CATS = np.array(["a", "b", "c"], dtype=object)


def _batch(rng: np.random.Generator, n: int, **changes: float) -> RecordBatch:
    x = rng.normal(changes.get("shift", 0.0), 1.0, n)
    y = rng.normal(size=n)
    if "corr" in changes:
        r = changes["corr"]
        y = r * x + np.sqrt(1 - r * r) * y
    p = np.array([0.5, 0.3, 0.2]) + np.array([1.0, -1.0, 0.0]) * changes.get("share", 0.0)
    return RecordBatch(
        numeric={"x": x, "y": y, "k": np.full(n, changes.get("const", 3.0))},
        categorical={"c": CATS[rng.choice(3, n, p=p)]},
        event_time=np.zeros(n),
        prediction=np.array(["p", "q"], dtype=object)[rng.integers(0, 2, n)],
        score=rng.random(n),
    )


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    batch = _batch(np.random.default_rng(0), 20_000)
    return ReferenceProfile.from_batch(batch, model="m", model_version="1")


def _evaluate(
    profile: ReferenceProfile, batch: RecordBatch, thresholds: ModelThresholds | None = None
) -> WindowEvaluation:
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    sketch.update(batch)
    ev = evaluate_window(profile, sketch, thresholds or ModelThresholds())
    text = json.dumps(ev.to_dict(), allow_nan=False)  # JSON-compatible, never NaN
    assert "NaN" not in text
    return ev


def test_stationary_window_is_not_drifted(profile: ReferenceProfile) -> None:
    ev = _evaluate(profile, _batch(np.random.default_rng(1), 2000))
    assert ev.status == "evaluated" and not ev.drifted and ev.drifted_features == []
    assert ev.features["k"].effect == 0.0  # constant in both: no effect, no drift
    assert ev.summary.n_records == 2000 and ev.summary.mean_score is not None


def test_mean_shift_and_category_share_are_detected(profile: ReferenceProfile) -> None:
    ev = _evaluate(profile, _batch(np.random.default_rng(2), 2000, shift=0.4))
    assert ev.drifted and ev.drifted_features == ["x"] and ev.reasons == ["feature x"]
    x = ev.features["x"]
    assert x.adjusted_p_value >= x.p_value and x.effect >= 0.1
    ev = _evaluate(profile, _batch(np.random.default_rng(3), 2000, share=0.15))
    assert ev.drifted_features == ["c"]


def test_correlation_change_is_multivariate(profile: ReferenceProfile) -> None:
    ev = _evaluate(profile, _batch(np.random.default_rng(4), 5000, corr=0.7))
    assert ev.drifted_features == []
    assert ev.multivariate is not None and ev.multivariate.drifted
    assert ev.reasons == ["multivariate"] and ev.multivariate.correlation_change > 0.5


def test_constant_feature_moving_drifts(profile: ReferenceProfile) -> None:
    ev = _evaluate(profile, _batch(np.random.default_rng(5), 1000, const=4.0))
    assert "k" in ev.drifted_features


def test_insufficient_samples_and_empty_window(profile: ReferenceProfile) -> None:
    ev = _evaluate(profile, _batch(np.random.default_rng(6), 100))
    assert ev.status == "insufficient_samples" and not ev.drifted and ev.features == {}
    empty = WindowSketch.empty(profile, 0.0, 60.0)
    ev = evaluate_window(profile, empty, ModelThresholds())
    assert ev.status == "insufficient_samples" and ev.summary.latency_p50_seconds is None
    # carried forward: merged with the next window it is tested
    a = WindowSketch.empty(profile, 0.0, 60.0)
    a.update(_batch(np.random.default_rng(7), 300))
    b = WindowSketch.empty(profile, 60.0, 120.0, seed=1)
    b.update(_batch(np.random.default_rng(8), 300))
    assert evaluate_window(profile, a.merge(b), ModelThresholds()).status == "evaluated"


def test_all_missing_invalid_and_unseen(profile: ReferenceProfile) -> None:
    batch = _batch(np.random.default_rng(9), 1000)
    batch.numeric["x"][:] = np.nan
    batch.numeric["y"][:500] = np.inf
    batch.categorical["c"][:300] = "brand-new"
    ev = _evaluate(profile, batch)
    assert not ev.features["x"].drifted and ev.features["x"].missing == 1000
    assert ev.summary.missing_rate["x"] == 1.0 and ev.summary.invalid_count["y"] == 500
    assert ev.features["c"].drifted and ev.features["c"].unseen == {"brand-new": 300}


def test_model_rules_share_and_critical(profile: ReferenceProfile) -> None:
    batch = _batch(np.random.default_rng(10), 2000, shift=0.4)
    strict = ModelThresholds(drift_share=0.5)
    ev = _evaluate(profile, batch, strict)
    assert ev.drifted_features == ["x"] and not ev.drifted
    config = thresholds_from_dict(
        {
            "drift_thresholds": {
                "models": {"m": {"drift_share": 0.5, "features": {"x": {"critical": True}}}}
            }
        }
    )
    ev = _evaluate(profile, batch, config.for_model("m"))
    assert ev.drifted and ev.reasons == ["critical feature x"]
    gated = replace(ModelThresholds(), min_effect_numeric=5.0)
    assert not _evaluate(profile, batch, gated).drifted


def test_thresholds_file_and_errors(tmp_path: Path) -> None:
    shipped = load_thresholds(REPO / "config" / "drift_thresholds.yaml")
    assert shipped.defaults == ModelThresholds()
    cases = {
        "drift_thresholds.models.fraud.features.amount.psi: expected a number > 0, got 'high'": {
            "models": {"fraud": {"features": {"amount": {"psi": "high"}}}}
        },
        "drift_thresholds.defaults.colour: unknown key": {"defaults": {"colour": 1}},
        "drift_thresholds.defaults.ks: expected a number in (0, 1), got 1.5": {
            "defaults": {"ks": 1.5}
        },
        "drift_thresholds.models.m.correction: expected one of holm, bh, bonferroni": {
            "models": {"m": {"correction": "fdr"}}
        },
        "drift_thresholds.defaults.min_samples: expected an integer >= 1, got True": {
            "defaults": {"min_samples": True}
        },
        "drift_thresholds.models.m.features.x.critical: expected true or false, got 'yes'": {
            "models": {"m": {"features": {"x": {"critical": "yes"}}}}
        },
        "drift_thresholds.defaults.features: unknown key": {"defaults": {"features": {}}},
    }
    for message, body in cases.items():
        with pytest.raises(ThresholdsError) as info:
            thresholds_from_dict({"drift_thresholds": body})
        assert str(info.value).startswith(message), str(info.value)
    bad = tmp_path / "t.yaml"
    bad.write_text("drift_thresholds:\n  defaults:\n    psi: high\n")
    with pytest.raises(ThresholdsError, match=r"t\.yaml: drift_thresholds\.defaults\.psi"):
        load_thresholds(bad)
    merged = thresholds_from_dict(
        {"drift_thresholds": {"defaults": {"psi": 0.3}, "models": {"m": {"ks": 0.01}}}}
    )
    assert merged.for_model("m").tests["psi"] == 0.3 and merged.for_model("m").tests["ks"] == 0.01
    assert merged.for_model("other").tests["ks"] == 0.05
