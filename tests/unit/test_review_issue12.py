"""Review of issue 12 (concept drift per model version, importance drift) and issue 8 item 1.

The alert-policy tests pass (fixed in sinks/policy.py). The xfail tests (strict) show defects in
files owned by other helpers; each reason names the file and the fix. When a fix lands, its test
passes, strict xfail fails the run, and the marker is to be removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftline.detectors.concept import (
    CheckpointVersionError,
    ConceptStage,
    concept_config_from_dict,
)
from driftline.sinks.policy import AlertPolicy
from driftline.streams.events import operational_event
from driftline.streams.labels import PartitionLabels
from driftline.streams.outcomes import outcome_streams


def _dropped(key: str, model: str = "") -> dict[str, Any]:
    detail = {"stage": "stage1", "checkpoint_key": key, "error": "KeyError: 'open'"}
    return operational_event(
        "checkpoint_dropped", key, {**detail, "checkpoint": {"k": key}}, 1e9, model
    )


def _importance(window_end: float, feature: str = "amount") -> dict[str, Any]:
    return {
        "event_id": f"imp-{feature}-{window_end}",
        "type": "importance_drift",
        "severity": "warning",
        "model": "fraud",
        "model_version": "1",
        "feature": feature,
        "test": "importance_share_attributions",
        "window_start": window_end - 60,
        "window_end": window_end,
    }


def _window(window_end: float) -> dict[str, Any]:
    evaluation = {"model": "fraud", "model_version": "1", "window_end": window_end}
    return {"type": "window", "evaluation": evaluation}


def test_each_dropped_checkpoint_notifies_once_and_a_replay_does_not() -> None:
    policy = AlertPolicy()
    firsts = [policy.on_event(_dropped(f"s1/{p}"), now=float(p)) for p in range(3)]
    assert [[n.action for n in sent] for sent in firsts] == [["firing"]] * 3
    assert policy.on_event(_dropped("s1/0"), now=5.0) == []  # the same finding again
    assert policy.on_event(_dropped("s2/fraud", "fraud"), now=6.0)[0].action == "firing"


def test_an_importance_drift_alert_resolves_when_a_window_closes_without_it() -> None:
    policy = AlertPolicy()
    (fired,) = policy.on_event(_importance(60), now=0.0)
    key = AlertPolicy.key(_importance(60))
    assert policy.on_window(_window(60), {key}) == []  # its own window
    (resolved,) = policy.on_window(_window(120), set())
    assert resolved.action == "resolved" and resolved.alert.alert_id == fired.alert.alert_id
    assert policy.on_event(_importance(180), now=1.0)[0].action == "firing"  # a new incident


@pytest.mark.parametrize("model", ["", "fraud"])
def test_the_postgres_sink_stores_operational_events(model: str) -> None:
    from driftline.sinks.rows import event_rows

    (row,) = event_rows(_dropped("s1/0" if not model else f"s2/{model}", model))["drift_events"]
    assert row["type"] == "operational" and row["model"] == model


def test_a_dropped_checkpoint_re_emitted_after_a_restart_is_the_same_row() -> None:
    from driftline.sinks.rows import event_rows

    def emitted(now: float) -> dict[str, Any]:
        saved = {"partition": 0, "max_event_time": 1.7e9, "open": [{"window_end": 1.7e9 + 60}]}
        detail = {"stage": "stage1", "checkpoint_key": "s1/0", "error": "E", "checkpoint": saved}
        event = operational_event("checkpoint_dropped", "s1/0", detail, now)
        (row,) = event_rows(event)["drift_events"]
        return row

    first, again = emitted(1.8e9), emitted(1.8e9 + 86_400.0)  # the wall clock moved on
    assert (first["event_id"], first["event_time"]) == (again["event_id"], again["event_time"])
    assert first["event_time"].timestamp() == 1.7e9 + 60


@pytest.mark.xfail(
    strict=True,
    reason="concept.py ConceptSettings.signature() holds detector names, kinds and streams only: "
    "a checkpoint restores the OLD params (and standardise) after a config change, until the "
    "next detection resets the suite (on a stable model: never); DRIFT_DETECTION.md says a "
    "changed suite restarts the detectors. Fix: put params and standardise in the signature.",
)
def test_changed_detector_params_are_not_silently_ignored_after_a_restart() -> None:
    before = concept_config_from_dict(
        {"defaults": {"detectors": [{"kind": "adwin", "params": {"clock": 1, "delta": 0.002}}]}}
    ).defaults
    after = concept_config_from_dict(
        {"defaults": {"detectors": [{"kind": "adwin", "params": {"clock": 32, "delta": 1e-6}}]}}
    ).defaults
    stage = ConceptStage(before)
    stage.update(["a", "b"], np.array([1.0, 2.0]), {"error": np.array([0.0, 1.0])})
    try:
        restored = ConceptStage.from_state(after, False, stage.to_state())
    except CheckpointVersionError:
        return  # restarting the detectors under the new configuration is right too
    monitor = restored.monitors["adwin_error"]
    assert monitor is not None and dict(monitor.params) == {"clock": 32, "delta": 1e-6}


def test_booleans_and_integral_numbers_are_one_class_in_the_error_stream() -> None:
    streams = outcome_streams(
        [True, "true", 1.0, "1", False, "0"], [1, 1, 1, 1, 0, 0.0], [0.9] * 6, regression=False
    )
    assert streams["error"].tolist() == [0.0] * 6


@pytest.mark.xfail(
    strict=True,
    reason="labels.py outcome_watermark: a partition that has seen no label promises only "
    "prediction watermark - labels.horizon_seconds, even with nothing pending (an idle partition "
    "caught up by mark_idle, e.g. predictions keyed by model on a 4-partition topic): stage 2 "
    "then holds every outcome of every partition back by the horizon (1 h by default, up to "
    "MAX_BUFFERED = 200,000 outcomes, 8 MB per stage-2 checkpoint). Real worker, the stream of "
    "tests/service/test_concept_pipeline.py keyed to one partition, default horizon: 1 topic "
    "partition -> event at index 12017; 4 partitions (3 idle) -> no event. Fix: with nothing pending, "
    "promise the prediction watermark; or treat a caught-up, quiet labels partition as idle.",
)
def test_an_idle_partition_with_nothing_pending_does_not_hold_stage_two_back() -> None:
    labels = PartitionLabels(0, 60.0, 3600.0, 3600.0, 10)
    assert not labels.pending and not labels.orphans
    assert labels.outcome_watermark(10_000.0, 60.0) >= 10_000.0 - 60.0


@pytest.mark.xfail(
    strict=True,
    reason="concept.py: the default suite (ADWIN clock=1, unstandardised) on a regression "
    "model's absolute error: ADWIN's bound assumes values in [0, 1]; on stationary heavy-tailed "
    "errors (lognormal, |t(3)|) it fired 5-11 times per 60,000 labels (every cooldown), and on "
    "errors of scale 1e-3 it saw a 3x jump ~4,700 labels late (scale 1e3: 2-4). Measured only "
    "on classification in DRIFT_DETECTION.md. Fix: for regression feed a bounded, scale-free "
    "stream, e.g. the empirical CDF of the error under the first `calibration` values.",
)
def test_a_stationary_regression_model_with_heavy_tailed_errors_raises_no_concept_drift() -> None:
    from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT

    n = 30_000
    errors = np.random.default_rng(0).lognormal(0.0, 1.0, n)
    stage = ConceptStage(DEFAULT_CONCEPT_DRIFT, regression=True)
    found = stage.update([str(i) for i in range(n)], np.arange(float(n)), {"error": errors})
    assert found == []


def test_prediction_importance_counts_each_class_once_whatever_its_spelling() -> None:
    from driftline.detectors.profile import ReferenceProfile

    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    y = (x + rng.normal(0, 0.5, 4000) > 0).astype(int)
    spelled = np.array(
        [
            [True, "true", 1, "1.0"][i % 4] if v else [False, "false", 0, "0"][i % 4]
            for i, v in enumerate(y.tolist())
        ],
        dtype=object,
    )

    def prediction_mi(prediction: Any) -> dict[str, float]:
        profile = ReferenceProfile.from_columns(
            {"x": x}, model="m", model_version="1", prediction=prediction, labels=y, fit_pca=False
        )
        return profile.importance["prediction_mi"]

    assert prediction_mi(spelled) == pytest.approx(prediction_mi(y))
    assert prediction_mi(y)["x"] <= np.log(2)  # a binary target: at most ln 2 nats


def test_the_window_proxy_counts_each_predicted_class_once_whatever_its_spelling() -> None:
    from dataclasses import fields

    from driftline.detectors.importance import ImportanceThresholds, window_importance
    from driftline.detectors.sketch import WindowSketch
    from tests.unit.test_importance import _profile_and_window

    profile, sketch = _profile_and_window([2.0, 1.0, 0.5], [2.0, 1.0, 0.5], attributions=False)

    class WithPredictions(WindowSketch):
        reservoir_predictions: Any

    def judged(predictions: list[Any]) -> Any:
        proxy = WithPredictions(**{f.name: getattr(sketch, f.name) for f in fields(sketch)})
        proxy.reservoir_predictions = np.array(predictions, dtype=object)
        return window_importance(profile, proxy, ImportanceThresholds())

    positive = (sketch.reservoir_rows @ np.array([2.0, 1.0, 0.5]) > 0).tolist()
    plain = judged([int(p) for p in positive])
    spelled = judged(
        [
            [True, "true", 1, "1.0"][i % 4] if p else [False, "false", 0, "0"][i % 4]
            for i, p in enumerate(positive)
        ]
    )
    assert plain is not None and spelled is not None
    assert [f.importance for f in spelled.features] == pytest.approx(
        [f.importance for f in plain.features]
    )


def test_an_unrestorable_stage_keeps_counting_labels() -> None:
    import orjson

    from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT
    from driftline.streams.outcomes import ModelOutcomes

    def chunk(start: int, n: int, error_rate: float, seed: int) -> dict[str, list[Any]]:
        wrong = np.random.default_rng(seed).random(n) < error_rate
        times = [float(start + i) for i in range(n)]
        return {
            "version": ["1"] * n,
            "id": [f"p{start + i:07d}" for i in range(n)],
            "time": times,
            "event_time": times,
            "label": ["1"] * n,
            "prediction": ["0" if w else "1" for w in wrong.tolist()],
            "score": [None] * n,
        }

    def suite(version: str) -> Any:
        return DEFAULT_CONCEPT_DRIFT, False

    state = ModelOutcomes(1)
    state.add(chunk(0, 3000, 0.05, 1))
    state.add_watermark(0, 3000.0)
    state.release(suite)
    saved = orjson.loads(orjson.dumps(state.to_dict()))
    for stage in saved["stages"].values():  # e.g. river upgraded since the checkpoint
        for monitor in stage["monitors"].values():
            monitor["river_version"] = "0.0"
    state = ModelOutcomes.from_dict(saved)
    state.add(chunk(3000, 2000, 0.05, 2))
    state.add(chunk(5000, 3000, 0.35, 3))
    state.add_watermark(0, 8000.0)
    [(_, found)] = state.release(suite)
    assert found.prediction_id == f"p{found.index:07d}"  # index in the version's whole stream
