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
    outcome_streams,
)
from driftline.sinks.policy import AlertPolicy
from driftline.streams.events import operational_event
from driftline.streams.labels import PartitionLabels


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


def test_an_idle_partition_with_nothing_pending_does_not_hold_stage_two_back() -> None:
    labels = PartitionLabels(0, 60.0, 3600.0, 3600.0, 10)
    assert not labels.pending and not labels.orphans
    assert labels.outcome_watermark(10_000.0, 60.0) >= 10_000.0 - 60.0


def _regression_detections(errors: np.ndarray[Any, Any]) -> list[Any]:
    """Stage 2 of a regression model fed labels with these absolute errors (outcomes.py feeds
    the suite each error's rank among the first `calibration` errors)."""
    from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT
    from driftline.streams.outcomes import ModelOutcomes

    n = errors.size
    times = np.arange(float(n)).tolist()
    state = ModelOutcomes(1)
    state.add(
        {
            "version": ["1"] * n,
            "id": [f"p{i:07d}" for i in range(n)],
            "time": times,
            "event_time": times,
            "label": errors.tolist(),
            "prediction": [0.0] * n,
            "score": [None] * n,
        }
    )
    state.add_watermark(0, float(n))
    return [found for _, found in state.release(lambda version: (DEFAULT_CONCEPT_DRIFT, True))]


def test_a_stationary_regression_model_with_heavy_tailed_errors_raises_no_concept_drift() -> None:
    # the review measured 5-11 false alarms per 60,000 labels on the raw absolute error
    rng = np.random.default_rng(0)
    assert _regression_detections(rng.lognormal(0.0, 1.0, 30_000)) == []
    assert _regression_detections(np.abs(rng.standard_t(3, 30_000))) == []


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_a_threefold_regression_error_jump_is_found_as_quickly_at_any_scale(scale: float) -> None:
    errors = np.random.default_rng(1).lognormal(0.0, 1.0, 8000) * scale
    errors[4000:] *= 3.0
    (found,) = _regression_detections(errors)
    assert 4000 <= found.index < 4300  # measured: 64 labels late at every scale (raw: ~4,700)
    assert found.severity == "critical"


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


def test_a_pending_prediction_keeps_the_label_bound_until_it_is_labelled() -> None:
    labels = PartitionLabels(0, 60.0, 3600.0, 3600.0, 10)
    labels.add_columns("m", "1", ["a"], np.array([9_000.0]), ["1"], None)
    promised = labels.outcome_watermark(10_000.0, 60.0)
    assert promised <= 10_000.0 - 3600.0  # "a" may still be labelled (time >= this): not late
    (outcome,) = labels.add_labels([{"prediction_id": "a", "label": "1", "timestamp": 9_500.0}])
    assert outcome[3] >= promised  # its order time is after what was promised
    assert labels.outcome_watermark(10_000.0, 60.0) == 10_000.0  # nothing pending any more


def test_a_regression_stage_checkpointed_on_raw_errors_restarts_its_detectors() -> None:
    from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT
    from driftline.streams.outcomes import ModelOutcomes

    stage = ConceptStage(DEFAULT_CONCEPT_DRIFT, regression=True)
    raw = np.random.default_rng(2).lognormal(0.0, 1.0, 1000) * 1e3  # learnt on raw errors
    stage.update([str(i) for i in range(1000)], np.arange(1000.0), {"error": raw})
    saved = {**ModelOutcomes(1).to_dict(), "stages": {"1": stage.to_state()}}
    del saved["references"]  # a checkpoint written before ranks were fed
    state = ModelOutcomes.from_dict(saved)
    n = 3000
    times = [2000.0 + i for i in range(n)]
    errors = np.random.default_rng(3).lognormal(0.0, 1.0, n) * 1e3
    state.add(
        {
            "version": ["1"] * n,
            "id": [f"q{i:07d}" for i in range(n)],
            "time": times,
            "event_time": times,
            "label": errors.tolist(),
            "prediction": [0.0] * n,
            "score": [None] * n,
        }
    )
    state.add_watermark(0, 1e6)
    assert state.release(lambda version: (DEFAULT_CONCEPT_DRIFT, True)) == []
    assert state.stages["1"].n_seen == 1000 + n  # the count goes on


def test_a_retired_model_version_is_pruned_and_counts_on_if_it_comes_back() -> None:
    import orjson

    from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT
    from driftline.streams.outcomes import ModelOutcomes

    def outcomes(version: str, start: int, n: int) -> dict[str, list[Any]]:
        times = [float(start + i) for i in range(n)]
        return {
            "version": [version] * n,
            "id": [f"{version}-{start + i:07d}" for i in range(n)],
            "time": times,
            "event_time": times,
            "label": ["1"] * n,
            "prediction": ["1"] * n,
            "score": [None] * n,
        }

    def suite(version: str) -> Any:
        return DEFAULT_CONCEPT_DRIFT, False

    state = ModelOutcomes(1)
    state.add(outcomes("1", 0, 100))
    state.add_watermark(0, 100.0)
    state.release(suite, stale_after=1000.0)
    state.add(outcomes("2", 100, 2000))
    state.add_watermark(0, 1050.0)
    state.release(suite, stale_after=1000.0)
    assert set(state.stages) == {"1", "2"}  # version 1 fed 951 s ago: kept
    state.add_watermark(0, 2100.0)
    state.release(suite, stale_after=1000.0)
    assert set(state.stages) == {"2"} and state.saved_stages["1"] == {
        "n_seen": 100,
        "last_event": None,
    }
    state = ModelOutcomes.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    state.add(outcomes("1", 5000, 10))  # version 1 comes back: its count goes on
    state.add_watermark(0, 6000.0)
    state.release(suite, stale_after=1000.0)
    assert state.stages["1"].n_seen == 110 and set(state.stages) == {"1"}
