"""Data-quality checks (detectors/quality.py) through evaluate_window, events, metrics, rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import WindowEvaluation, evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds
from driftline.sinks.prometheus import WorkerMetrics
from driftline.sinks.rows import window_rows
from driftline.streams.events import window_events


def _features(rng: np.random.Generator, i: int, change: str) -> dict[str, Any]:
    amount = float(rng.lognormal(3.0, 1.0)) * (100.0 if change == "unit" else 1.0)
    missing = rng.random() < (0.5 if change == "missing" else 0.2)
    out: dict[str, Any] = {
        "amount": None if missing else round(amount, 2),
        "count": int(rng.poisson(3.0)),
        "age": None if change == "null" else 365.0 if change == "constant" else rng.gamma(2, 200),
        "city": "new-city" if change == "category" and rng.random() < 0.5 else f"c{i % 7}",
        "vip": bool(rng.random() < 0.3) if change != "typo" else "maybe",
    }
    if change == "gone":
        del out["count"]
    if change == "extra":
        out["device"] = "ios"
    return out


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    records = [{"timestamp": 0.0, "features": _features(rng, i, "")} for i in range(20_000)]
    built = ReferenceProfile.from_records(records, model="m", model_version="1")
    assert built.feature_types["vip"] == "boolean"
    return built


def _evaluate(profile: ReferenceProfile, change: str, n: int = 3_000) -> WindowEvaluation:
    rng = np.random.default_rng(hash(change) % 2**32)
    records = [{"timestamp": 0.0, "features": _features(rng, i, change)} for i in range(n)]
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    half = n // 2  # two batches: the counts must add up across updates
    sketch.update(RecordBatch.from_records(records[:half], profile.feature_types))
    sketch.update(RecordBatch.from_records(records[half:], profile.feature_types))
    return evaluate_window(profile, WindowSketch.from_dict(sketch.to_dict()), ModelThresholds())


def _found(evaluation: WindowEvaluation) -> set[tuple[str, str]]:
    assert evaluation.data_quality is not None
    return {(f.feature, f.check) for f in evaluation.data_quality.findings}


def test_a_clean_window_has_no_finding(profile: ReferenceProfile) -> None:
    evaluation = _evaluate(profile, "")
    assert _found(evaluation) == set() and "data_quality" not in evaluation.reasons
    assert window_events(evaluation, 0.0) == []


@pytest.mark.parametrize(
    ("change", "expected", "severity"),
    [
        ("missing", ("amount", "missing_rate"), "warning"),
        ("gone", ("count", "absent"), "critical"),
        ("null", ("age", "missing_rate"), "critical"),
        ("constant", ("age", "constant"), "warning"),
        ("unit", ("amount", "out_of_range"), "warning"),
        ("typo", ("vip", "type_errors"), "warning"),
        ("category", ("city", "new_category"), "warning"),
    ],
)
def test_each_broken_pipeline_is_a_finding_and_an_event(
    profile: ReferenceProfile, change: str, expected: tuple[str, str], severity: str
) -> None:
    evaluation = _evaluate(profile, change)
    assert expected in _found(evaluation)
    assert evaluation.drifted and "data_quality" in evaluation.reasons
    events = [e for e in window_events(evaluation, 0.0) if e["type"] == "data_quality"]
    event = next(e for e in events if (e["feature"], e["test"]) == expected)
    assert event["severity"] == severity
    assert "window_missing_rate" in event["evidence"]


def test_new_feature_is_reported_not_a_drift(profile: ReferenceProfile) -> None:
    evaluation = _evaluate(profile, "extra")
    assert _found(evaluation) == {("device", "new_feature")}
    assert not evaluation.drifted
    events = window_events(evaluation, 0.0)
    assert [(e["type"], e["feature"], e["test"]) for e in events] == [
        ("data_quality", "device", "new_feature")
    ]


def test_quality_metrics_and_rows(profile: ReferenceProfile) -> None:
    evaluation = _evaluate(profile, "gone").to_dict()
    evaluation["model"] = "quality-metrics"
    metrics = WorkerMetrics()
    metrics.export_window(evaluation, None)
    sample = metrics.registry.get_sample_value
    labels = {"model_name": "quality-metrics", "model_version": "1"}
    assert sample("model_data_quality_issues", {**labels, "check": "absent"}) == 1.0
    assert sample("model_data_quality_issues", {**labels, "check": "constant"}) == 0.0
    assert sample("model_feature_missing_ratio", {**labels, "feature_name": "count"}) == 1.0
    missing = sample("model_feature_missing_ratio", {**labels, "feature_name": "amount"})
    assert missing == pytest.approx(0.2, abs=0.03)
    message = {"type": "window", "sources": [0], "event_ids": [], "evaluation": evaluation}
    row = window_rows(message)["window_metrics"][0]
    assert row["data_quality_issues"] == 1 and row["data_quality"] is not None


def test_a_new_category_among_tens_of_thousands_is_found_with_bounded_memory() -> None:
    rng = np.random.default_rng(3)
    names = np.array([f"v{i}" for i in range(30_000)], dtype=object)
    p = 1.0 / np.arange(1, 30_001) ** 1.05
    p /= p.sum()
    reference = names[rng.choice(30_000, 100_000, p=p)]
    profile = ReferenceProfile.from_columns({"merchant": reference}, model="m", model_version="1")
    vocabulary = profile.categorical["merchant"].vocabulary
    assert vocabulary is not None and len(vocabulary) == 10_000
    assert not profile.categorical["merchant"].vocabulary_complete

    def window(seed: int) -> WindowSketch:
        r = np.random.default_rng(seed)
        values = names[r.choice(30_000, 10_000, p=p)]
        values[r.random(10_000) < 0.05] = "brand-new-merchant"
        sketch = WindowSketch.empty(profile, 0.0, 60.0)
        for part in np.array_split(values, 4):  # as from several partitions: merged summaries
            piece = WindowSketch.empty(profile, 0.0, 60.0)
            piece.update(
                RecordBatch(numeric={}, categorical={"merchant": part},
                            event_time=np.zeros(len(part)),
                            prediction=np.full(len(part), None, dtype=object))
            )  # fmt: skip
            sketch = sketch.merge(piece)
        assert len(sketch.categorical["merchant"].unseen) <= 100
        return sketch

    for seed in range(3):
        evaluation = evaluate_window(profile, window(seed), ModelThresholds())
        found = _found(evaluation)
        assert ("merchant", "new_category") in found, found
        finding = next(f for f in evaluation.data_quality.findings if f.check == "new_category")  # type: ignore[union-attr]
        assert finding.figures["category"] == "brand-new-merchant"
        assert 0.04 <= finding.statistic <= 0.06  # a lower bound of the true share (~5 %)
