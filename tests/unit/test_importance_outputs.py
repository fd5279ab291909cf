"""Where importance drift goes: the importance_drift event, the feature_importance rows, the
model_feature_importance gauge (bounded), and `reference build --attribution-prefix`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from driftline.cli import main
from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import WindowEvaluation, evaluate_window
from driftline.detectors.importance import ImportanceThresholds
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds
from driftline.sinks.prometheus import MAX_FEATURE_LABELS, STALE_VERSION_WINDOWS, WorkerMetrics
from driftline.sinks.rows import window_rows
from driftline.sinks.schema import TABLES
from driftline.streams.events import window_events

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["amount", "device_risk", "merchant_risk", "hour"]


def _evaluation(window_weights: list[float], **thresholds: object) -> WindowEvaluation:
    rng = np.random.default_rng(4)
    weights = [1.2, 0.8, 0.6, 0.0]
    x = {k: rng.normal(size=8_000) for k in NAMES}
    profile = ReferenceProfile.from_columns(
        x,
        model="fraud",
        model_version="3",
        prediction=rng.integers(0, 2, 8_000),
        attributions={k: w * x[k] for w, k in zip(weights, NAMES, strict=True)},
    )
    xw = {k: rng.normal(size=1_000) for k in NAMES}
    sketch = WindowSketch.empty(profile, 60.0, 120.0)
    sketch.update(
        RecordBatch(
            numeric=xw,
            categorical={},
            event_time=np.full(1_000, 60.0),
            prediction=rng.integers(0, 2, 1_000).astype(object),
            attributions={k: w * xw[k] for w, k in zip(window_weights, NAMES, strict=True)},
        )
    )
    limits = ModelThresholds(importance=ImportanceThresholds(**thresholds))  # type: ignore[arg-type]
    return evaluate_window(profile, sketch, limits)


def test_importance_drift_event_names_the_features_and_follows_the_schema() -> None:
    evaluation = _evaluation([0.8, 1.2, 0.6, 0.0])
    (event,) = [e for e in window_events(evaluation, 130.0) if e["type"] == "importance_drift"]
    schema = json.loads((ROOT / "config/schemas/drift_event.v1.schema.json").read_text())
    jsonschema.validate(event, schema)
    assert event["feature"] in ("amount", "device_risk")
    assert set(event["evidence"]["changed_features"]) == {"amount", "device_risk"}
    assert "device_risk share" in event["evidence"]["summary"]
    assert event["severity"] == "critical"  # shares moved by ~0.15, three times 0.05
    assert event["test"] == "importance_share_attributions" and event["threshold"] == 0.05
    again = window_events(evaluation, 999.0)  # the same window judged again: the same id
    assert event["event_id"] in {e["event_id"] for e in again}
    stable = _evaluation([1.2, 0.8, 0.6, 0.0])
    assert not [e for e in window_events(stable, 130.0) if e["type"] == "importance_drift"]


def test_window_summary_maps_to_feature_importance_rows() -> None:
    evaluation = _evaluation([0.8, 1.2, 0.6, 0.0])
    message = {"type": "window", "sources": [0], "event_ids": [], "estimated_performance": {}}
    rows = window_rows({**message, "evaluation": json.loads(json.dumps(evaluation.to_dict()))})
    importance = {r["feature"]: r for r in rows["feature_importance"]}
    assert set(importance) == set(NAMES)
    for row in importance.values():
        assert set(row) == set(TABLES["feature_importance"].columns)
    assert importance["device_risk"]["rank"] == 1 and importance["device_risk"]["changed"]
    assert importance["hour"]["share"] == 0.0 and not importance["hour"]["changed"]
    assert importance["amount"]["window_drifted"] is True
    assert importance["amount"]["n"] == 1_000
    # a window whose importances were not judged adds no table at all
    off = _evaluation([0.8, 1.2, 0.6, 0.0], enabled=False)
    assert "feature_importance" not in window_rows({**message, "evaluation": off.to_dict()})


def _series(metrics: WorkerMetrics, model: str, version: str = "1") -> dict[str, float]:
    return {
        s.labels["feature_name"]: s.value
        for metric in metrics.registry.collect()
        if metric.name == "model_feature_importance"
        for s in metric.samples
        if s.labels["model_name"] == model and s.labels["model_version"] == version
    }


def _verdict(shares: dict[str, float], drifted: bool = False) -> dict[str, object]:
    features = [{"feature": name, "share": share} for name, share in shares.items()]
    return {"status": "evaluated", "drifted": drifted, "features": features}


def test_feature_importance_gauge_is_bounded_and_drops_stale_features() -> None:
    model, metrics = "gauge-test", WorkerMetrics(CollectorRegistry())
    features = {f"f{i}": 1.0 / 100 for i in range(100)}  # more than the label cap
    metrics.export_importance(model, "1", _verdict(features, drifted=True))
    first = _series(metrics, model)
    assert len(first) == MAX_FEATURE_LABELS
    metrics.export_importance(model, "1", _verdict({"f0": 1.0}, drifted=True))
    assert _series(metrics, model) == {"f0": 1.0} and _drifted(metrics, model) == 1.0
    metrics.export_importance(model, "1", {"status": "insufficient_samples", "features": []})
    metrics.export_importance(model, "1", None)
    assert _series(metrics, model) == {"f0": 1.0}  # a window not judged keeps the last judged
    assert _drifted(metrics, model) == 0.0  # ... but no alert fires for ever on an old verdict


def test_champion_and_challenger_importances_are_two_series() -> None:
    """An A/B test: two versions of one model judged in the same windows keep their own
    shares and drift flags instead of overwriting each other's."""
    model, metrics = "ab-test", WorkerMetrics(CollectorRegistry())
    window = (1_767_225_600.0, 1_767_225_660.0)
    metrics.export_importance(model, "7", _verdict({"amount": 0.7, "hour": 0.3}), window)
    metrics.export_importance(
        model, "8", _verdict({"amount": 0.2, "hour": 0.8}, drifted=True), window
    )
    assert _series(metrics, model, "7") == {"amount": 0.7, "hour": 0.3}
    assert _series(metrics, model, "8") == {"amount": 0.2, "hour": 0.8}
    assert _drifted(metrics, model, "7") == 0.0 and _drifted(metrics, model, "8") == 1.0
    # the evaluation of a whole window exports under its version too
    evaluation = _evaluation([0.8, 1.2, 0.6, 0.0]).to_dict()
    metrics.export_window({**evaluation, "model": model, "model_version": "9"}, None)
    assert set(_series(metrics, model, "9")) == set(NAMES)


def test_a_retired_version_loses_its_importance_series() -> None:
    """Once the other version has been judged STALE_VERSION_WINDOWS window lengths after a
    version's last judged window, that version's series go (its drift flag would otherwise
    keep ModelFeatureImportanceDrift firing for a model version nobody serves)."""
    model, metrics = "retired", WorkerMetrics(CollectorRegistry())
    start, length = 1_767_225_600.0, 60.0
    metrics.export_importance(model, "1", _verdict({"a": 1.0}, drifted=True), (start, start + 60))
    for k in range(1, STALE_VERSION_WINDOWS + 2):
        window = (start + k * length, start + (k + 1) * length)
        metrics.export_importance(model, "2", _verdict({"a": 0.5, "b": 0.5}), window)
        stale = k > STALE_VERSION_WINDOWS  # v1's last window ended STALE.. lengths before
        assert (_series(metrics, model, "1") == {}) is stale, k
        assert (_drifted(metrics, model, "1") is None) is stale, k
    assert _series(metrics, model, "2") == {"a": 0.5, "b": 0.5}
    # another model's versions are not touched
    metrics.export_importance("other", "1", _verdict({"a": 1.0}), (start, start + 60))
    later = (start + 100 * length, start + 101 * length)
    metrics.export_importance(model, "2", _verdict({"a": 1.0}), later)
    assert _series(metrics, "other", "1") == {"a": 1.0}


def _drifted(metrics: WorkerMetrics, model: str, version: str = "1") -> float | None:
    return metrics.registry.get_sample_value(
        "model_importance_drift_detected", {"model_name": model, "model_version": version}
    )


def test_reference_build_reads_attribution_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    lines = ["amount,hour,shap_amount,shap_hour,prediction,label"]
    for _ in range(600):
        amount, hour = rng.normal(), rng.normal()
        lines.append(
            f"{amount:.4f},{hour:.4f},{1.5 * amount:.4f},{0.1 * hour:.4f},"
            f"{int(amount > 0)},{int(amount + rng.normal() > 0)}"
        )
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "profile.json"
    argv = [
        "reference", "build", "--model", "fraud", "--model-version", "1", "--out", str(out),
        "--csv", str(csv), "--prediction-column", "prediction", "--label-column", "label",
    ]  # fmt: skip
    assert main([*argv, "--attribution-prefix", "shap_"]) == 0
    profile = ReferenceProfile.load(out)
    assert set(profile.feature_types) == {"amount", "hour"}  # shap_* are not features
    attributions = profile.importance["attributions"]
    assert attributions["amount"] > 10 * attributions["hour"]
    assert profile.importance["label_mi"]["amount"] > profile.importance["label_mi"]["hour"]
    capsys.readouterr()
    assert main([*argv, "--attribution-prefix", "lime_"]) != 0
    err = capsys.readouterr().err
    assert "--attribution-prefix 'lime_': no column starts with it" in err
    assert "Traceback" not in err
