"""Output drift (detectors/output.py): score, class balance, low-confidence share, multiclass
probabilities, regression predictions; events, metrics and rows built from the verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds, ThresholdsError, thresholds_from_dict
from driftline.sinks.prometheus import WorkerMetrics
from driftline.sinks.rows import window_rows
from driftline.streams.events import suppress_combined, window_events

N_REF = 50_000


def _scores(
    rng: np.random.Generator,
    n: int,
    positive_rate: float = 0.05,
    shift: float = 0.0,
    low_confidence: float = 0.0,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Fraud-like calibrated-ish scores: positives high, negatives low, a few in between."""
    positive = rng.random(n) < positive_rate
    score = np.where(positive, rng.beta(8, 3, n), rng.beta(1.2, 14, n))
    score = np.clip(score + shift, 0.0, 1.0)
    if low_confidence:
        moved = rng.random(n) < low_confidence
        score = np.where(moved, rng.uniform(0.4, 0.6, n), score)
    prediction = np.where(score >= 0.5, "1", "0").astype(object)  # the 0.5 threshold CBPE assumes
    return score, prediction


def _profile(rng: np.random.Generator, **options: Any) -> ReferenceProfile:
    score, prediction = _scores(rng, N_REF)
    return ReferenceProfile.from_columns(
        {"x": rng.normal(size=N_REF)},
        model="m",
        model_version="1",
        prediction=prediction,
        score=score,
        labels=np.where(rng.random(N_REF) < score, "1", "0"),  # scores are calibrated
        **options,
    )


def _window(
    profile: ReferenceProfile, rng: np.random.Generator, n: int, **change: float
) -> WindowSketch:
    score, prediction = _scores(rng, n, **change)
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    sketch.update(
        RecordBatch(
            numeric={"x": rng.normal(size=n)},
            categorical={},
            event_time=np.zeros(n),
            prediction=prediction,
            score=score,
        )
    )
    return sketch


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return _profile(np.random.default_rng(1))


def test_stationary_windows_rarely_raise_output_drift(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(2)
    flagged = sum(
        bool(evaluate_window(profile, _window(profile, rng, n), ModelThresholds()).output.drifted)  # type: ignore[union-attr]
        for n in (1_000, 10_000)
        for _ in range(15)
    )
    assert flagged == 0


@pytest.mark.parametrize(
    ("change", "signal"),
    [
        ({"shift": 0.05}, "score"),
        ({"positive_rate": 0.08}, "class_balance"),
        ({"low_confidence": 0.10}, "low_confidence"),
    ],
)
def test_each_output_change_is_detected_in_one_window_of_10000(
    profile: ReferenceProfile, change: dict[str, float], signal: str
) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        evaluation = evaluate_window(
            profile, _window(profile, rng, 10_000, **change), ModelThresholds()
        )
        output = evaluation.output
        assert output is not None and output.drifted, output
        assert signal in output.drifted_signals
        assert "output" in evaluation.reasons and evaluation.drifted
        assert evaluation.drifted_features == []  # the features did not move


def test_confidence_figures_are_tracked_on_every_window(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(4)
    output = evaluate_window(
        profile, _window(profile, rng, 10_000, low_confidence=0.1), ModelThresholds()
    ).output
    assert output is not None
    c = output.confidence
    assert c["band"] == [0.4, 0.6] and c["n"] == 10_000
    assert 0.0 <= c["p10"] <= c["p50"] <= c["p90"] <= 1.0
    assert c["low_confidence_ratio"] == pytest.approx(
        c["reference_low_confidence_ratio"] + 0.1, abs=0.02
    )
    assert set(output.class_ratio) == {"0", "1"}


def test_output_event_names_what_drifted_with_figures(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(5)
    evaluation = evaluate_window(
        profile, _window(profile, rng, 10_000, positive_rate=0.08), ModelThresholds()
    )
    events = window_events(evaluation, detected_at=1.0)
    assert [e["type"] for e in events] == ["output_drift"]
    event = events[0]
    evidence = event["evidence"]
    assert "class_balance" in evidence["drifted_signals"]
    assert "class 1 share 0.04" in evidence["summary"]
    ratio = evidence["signals"]["class_balance"]["window"]["class_ratio"]["1"]
    assert ratio == pytest.approx(0.077, abs=0.01)
    orjson.dumps(event)  # JSON-safe


def test_agreeing_cbpe_drop_makes_one_critical_event() -> None:
    rng = np.random.default_rng(6)
    profile = _profile(rng)
    # scores pulled to the middle: the outputs drift and the expected accuracy falls
    sketch = _window(profile, rng, 10_000, low_confidence=0.5)
    evaluation = evaluate_window(profile, sketch, ModelThresholds())
    output = evaluation.output
    assert output is not None and output.estimated_drop is not None
    assert output.estimated_drop > 0.05 and output.estimated_drop_agrees
    events = window_events(evaluation, detected_at=1.0)
    assert [(e["type"], e["severity"]) for e in events] == [("output_drift", "critical")]
    cbpe = {"type": "estimated_performance_drop", "model": "m", "window_start": 0.0}
    assert suppress_combined([*events, cbpe]) == events
    quiet = evaluate_window(
        profile,
        sketch,
        thresholds_from_dict(
            {"drift_thresholds": {"defaults": {"max_estimated_accuracy_drop": 0.9}}}
        ).defaults,
    )
    assert quiet.output is not None and quiet.output.severity == "warning"


def test_multiclass_probabilities_drift_per_class() -> None:
    rng = np.random.default_rng(7)
    classes = ["a", "b", "c"]

    def batch(n: int, concentration: tuple[float, float, float]) -> RecordBatch:
        p = rng.dirichlet(concentration, n)
        top = p.argmax(axis=1)
        return RecordBatch(
            numeric={"x": rng.normal(size=n)},
            categorical={},
            event_time=np.zeros(n),
            prediction=np.array(classes, dtype=object)[top],
            score=p.max(axis=1),
            probabilities={c: p[:, i] for i, c in enumerate(classes)},
        )

    profile = ReferenceProfile.from_batch(batch(30_000, (4, 2, 2)), model="m", model_version="1")
    assert set(profile.probability_counts) == set(classes)
    same = WindowSketch.empty(profile, 0.0, 60.0)
    same.update(batch(5_000, (4, 2, 2)))
    assert evaluate_window(profile, same, ModelThresholds()).output.drifted is False  # type: ignore[union-attr]
    moved = WindowSketch.empty(profile, 0.0, 60.0)
    moved.update(batch(5_000, (3, 3, 2)))
    round_trip = WindowSketch.from_dict(orjson.loads(orjson.dumps(moved.to_dict())))
    output = evaluate_window(profile, round_trip, ModelThresholds()).output
    assert output is not None
    assert {"probability:a", "probability:b"} <= set(output.drifted_signals)


def test_regression_predicted_values_drift() -> None:
    rng = np.random.default_rng(8)
    records = [
        {"timestamp": 0.0, "features": {"x": float(x)}, "prediction": float(y)}
        for x, y in zip(rng.normal(size=5_000), rng.lognormal(3.0, 0.5, 5_000), strict=True)
    ]
    profile = ReferenceProfile.from_records(records, model="r", model_version="1")
    assert profile.prediction_values is not None and profile.class_counts == {}
    profile = ReferenceProfile.from_json(profile.to_json())

    def window(scale: float) -> WindowSketch:
        sketch = WindowSketch.empty(profile, 0.0, 60.0)
        n = 5_000
        sketch.update(
            RecordBatch(
                numeric={"x": rng.normal(size=n)},
                categorical={},
                event_time=np.zeros(n),
                prediction=(rng.lognormal(3.0, 0.5, n) * scale).astype(object),
            )
        )
        return sketch

    assert evaluate_window(profile, window(1.0), ModelThresholds()).output.drifted is False  # type: ignore[union-attr]
    output = evaluate_window(profile, window(1.3), ModelThresholds()).output
    assert output is not None and output.drifted_signals == ["prediction"]
    assert output.signals["prediction"].effect > 0.12


def test_output_metrics_and_rows(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(9)
    evaluation = evaluate_window(
        profile, _window(profile, rng, 10_000, shift=0.05), ModelThresholds()
    ).to_dict()
    evaluation["model"] = "metrics-test"
    metrics = WorkerMetrics()
    metrics.export_window(evaluation, None)
    sample = metrics.registry.get_sample_value
    labels = {"model_name": "metrics-test", "model_version": "1"}
    assert sample("model_output_drift_severity", labels) in (1.0, 2.0)
    assert sample("model_output_drift_detected", {**labels, "signal": "score"}) == 1.0
    assert sample("model_score_drift", labels) == pytest.approx(0.05, abs=0.01)
    assert sample("model_low_confidence_ratio", labels) is not None
    share = sample("model_prediction_class_ratio", {**labels, "class": "1"})
    assert share == pytest.approx(0.05, abs=0.01)
    row = window_rows(
        {"type": "window", "sources": [0], "event_ids": [], "evaluation": evaluation}
    )["window_metrics"][0]
    assert row["output_drifted"] is True and row["output_severity"] in ("warning", "critical")
    assert row["score_drift"] == pytest.approx(0.05, abs=0.01)
    assert row["low_confidence_ratio"] is not None and row["output"] is not None


def test_output_thresholds_are_validated_with_the_key() -> None:
    m = thresholds_from_dict(
        {
            "drift_thresholds": {
                "models": {"fraud": {"output_alpha": 0.001, "min_effect_class": 0.05}}
            }
        }
    ).for_model("fraud")
    assert (m.output_alpha, m.min_effect_class, m.min_effect_score) == (0.001, 0.05, 0.02)
    with pytest.raises(ThresholdsError, match=r"drift_thresholds\.defaults\.low_confidence_band"):
        thresholds_from_dict(
            {"drift_thresholds": {"defaults": {"low_confidence_band": [0.6, 0.4]}}}
        )
    with pytest.raises(ThresholdsError, match=r"drift_thresholds\.defaults\.output_drift"):
        thresholds_from_dict({"drift_thresholds": {"defaults": {"output_drift": "yes"}}})
    off = evaluate_window(
        _profile(np.random.default_rng(10)),
        _window(_profile(np.random.default_rng(10)), np.random.default_rng(11), 1_000, shift=0.2),
        thresholds_from_dict({"drift_thresholds": {"defaults": {"output_drift": False}}}).defaults,
    )
    assert off.output is None and "output" not in off.reasons
