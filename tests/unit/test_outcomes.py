"""Stage 2 of concept drift: ordering across sources, cooldown, checkpoint, replays, config."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pytest

from driftline.detectors.concept import (
    DEFAULT_CONCEPT_DRIFT,
    ConceptConfigError,
    ConceptSettings,
    ConceptStage,
    DetectorSpec,
    concept_config_from_dict,
)
from driftline.streams.events import concept_event
from driftline.streams.outcomes import ModelOutcomes, load_concept_config
from driftline.streams.windows import ModelWindows

N = 8000
DRIFT = 5000


def _stream(seed: int = 0) -> list[dict[str, Any]]:
    """Outcomes one per second, labels 10 s after their prediction; 5 % -> 35 % errors."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(N) < np.r_[np.full(DRIFT, 0.05), np.full(N - DRIFT, 0.35)]
    return [
        {
            "version": "1",
            "id": f"p{i:06d}",
            "time": float(i) + 10.0,
            "event_time": float(i),
            "label": "1",
            "prediction": "0" if w else "1",
            "score": 0.7,
        }
        for i, w in enumerate(wrong.tolist())
    ]


def _payload(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = ("version", "id", "time", "event_time", "label", "prediction", "score")
    return {k: [r[k] for r in rows] for k in keys}


def _suite(version: str) -> tuple[ConceptSettings, bool]:
    return DEFAULT_CONCEPT_DRIFT, False


def _run(
    rows: list[dict[str, Any]], n_sources: int, seed: int = 1, restart_every: int = 0
) -> list[str]:
    """Scatter outcomes over sources (each source in order), interleave the sources' pieces at
    random, advance each source's watermark as its labels pass; return the event ids."""
    rng = random.Random(seed)
    per_source: list[list[dict[str, Any]]] = [[] for _ in range(n_sources)]
    for row in rows:
        per_source[rng.randrange(n_sources)].append(row)
    cursors = [0] * n_sources
    state = ModelOutcomes(n_sources)
    ids: list[str] = []
    steps = 0
    while any(c < len(s) for c, s in zip(cursors, per_source, strict=True)):
        source = rng.choice([i for i in range(n_sources) if cursors[i] < len(per_source[i])])
        piece = per_source[source][cursors[source] : cursors[source] + rng.randint(1, 300)]
        cursors[source] += len(piece)
        state.add(_payload(piece))
        # the source has seen labels up to the last one: lateness 0 in this test
        state.add_watermark(source, piece[-1]["time"])
        for version, found in state.release(_suite):
            ids.append(concept_event("m", version, found, 0.0)["event_id"])
        steps += 1
        if restart_every and steps % restart_every == 0:  # crash + restore from the checkpoint
            state = ModelOutcomes.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    for source in range(n_sources):
        state.add_watermark(source, float("inf"))
    for version, found in state.release(_suite):
        ids.append(concept_event("m", version, found, 0.0)["event_id"])
    return ids


def test_one_and_four_sources_give_the_same_events_in_the_same_order() -> None:
    rows = _stream()
    one = _run(rows, 1)
    assert len(one) == 1
    assert _run(rows, 4, seed=2) == one
    assert _run(rows, 4, seed=3) == one


def test_detection_is_after_the_drift_with_change_point_and_error_rates() -> None:
    rows = _stream()
    state = ModelOutcomes(1)
    state.add(_payload(rows))
    state.add_watermark(0, float("inf"))
    [(version, found)] = state.release(_suite)
    assert version == "1" and DRIFT <= found.index < DRIFT + 200
    assert abs(found.change_index - DRIFT) < 50
    assert found.change_time == pytest.approx(rows[found.change_index]["event_time"])
    assert found.error_before is not None and found.error_after is not None
    assert found.error_before < 0.1 < 0.25 < found.error_after
    assert found.severity == "critical" and found.labels_seen == found.index + 1
    event = concept_event("m", version, found, 123.0)
    assert event["evidence"]["change_index"] == found.change_index
    assert event["evidence"]["prediction_id"] == rows[found.index]["id"]


def test_outcomes_wait_for_every_source_then_go_in_time_order() -> None:
    state = ModelOutcomes(2)
    rows = _stream()[:10]
    state.add(_payload(rows[5:]))
    state.add(_payload(rows[:5]))
    state.add_watermark(0, 100.0)
    assert state.release(_suite) == [] and len(state.buffer) == 10  # source 1 has not reported
    state.add_watermark(1, rows[6]["time"])
    state.release(_suite)
    assert state.frontier == (rows[6]["time"], rows[6]["id"]) and len(state.buffer) == 3
    assert state.stages["1"].n_seen == 7


def test_a_replay_changes_nothing_and_late_outcomes_are_counted() -> None:
    rows = _stream()
    state = ModelOutcomes(1)
    state.add(_payload(rows[:6000]))
    state.add_watermark(0, rows[5999]["time"])
    first = [concept_event("m", v, f, 0.0)["event_id"] for v, f in state.release(_suite)]
    state.add(_payload(rows[:6000]))  # replayed after a crash: all behind the frontier
    assert state.late == 6000 and not state.buffer
    state.add(_payload(rows[6000:]))
    state.add_watermark(0, float("inf"))
    later = [concept_event("m", v, f, 0.0)["event_id"] for v, f in state.release(_suite)]
    assert len(first) == 1 and later == [] and state.stages["1"].n_seen == N


def test_checkpoint_restore_mid_stream_gives_the_same_event_ids() -> None:
    rows = _stream(seed=4)
    uninterrupted = _run(rows, 4, seed=5)
    assert _run(rows, 4, seed=5, restart_every=7) == uninterrupted


def test_model_windows_carry_the_outcome_state_in_their_checkpoint() -> None:
    windows = ModelWindows("m", n_sources=1)
    outcomes = windows.outcome_state()
    outcomes.add(_payload(_stream()[:3000]))
    outcomes.add_watermark(0, 1000.0)
    outcomes.release(_suite)
    restored = ModelWindows.from_dict(orjson.loads(orjson.dumps(windows.to_dict())))
    assert restored.outcomes is not None
    assert restored.outcomes.buffer == outcomes.buffer
    assert restored.outcomes.frontier == outcomes.frontier
    again = restored.outcomes._stage("1", DEFAULT_CONCEPT_DRIFT, False)
    assert again.n_seen == outcomes.stages["1"].n_seen


def test_cooldown_suppresses_and_reset_restarts_the_detectors() -> None:
    rng = np.random.default_rng(9)
    # two drifts 1,500 labels apart: 5 % -> 35 % -> 70 %
    errors = rng.random(9000) < np.r_[np.full(4000, 0.05), np.full(1500, 0.35), np.full(3500, 0.7)]
    ids = [str(i) for i in range(errors.size)]
    spec = (DetectorSpec("adwin_error", "adwin", "error", {"clock": 1}),)
    times = np.arange(errors.size, dtype=np.float64)
    streams = {"error": errors.astype(float)}
    none = ConceptStage(ConceptSettings(spec, cooldown_records=0)).update(ids, times, streams)
    long = ConceptStage(ConceptSettings(spec, cooldown_records=3000)).update(ids, times, streams)
    secs = ConceptStage(ConceptSettings(spec, cooldown_seconds=3000.0)).update(ids, times, streams)
    assert len(none) >= 2 and none[0].index >= 4000 and none[1].index >= 5500
    assert [d.index for d in long] == [none[0].index]  # the second drift fell in the cooldown
    assert [d.index for d in secs] == [none[0].index]
    stage = ConceptStage(ConceptSettings(spec, cooldown_records=0, reset_on_detection=True))
    stage.update(ids[:4500], times[:4500], {"error": streams["error"][:4500]})
    monitor = stage.monitors["adwin_error"]
    assert monitor is not None and monitor.n_seen < 500  # fresh since the detection


def test_regression_models_skip_binary_detectors_and_watch_the_absolute_error() -> None:
    settings = concept_config_from_dict(
        {"defaults": {"detectors": [{"kind": "hddm_w"}, {"kind": "adwin", "params": {"clock": 1}}]}}
    ).defaults
    stage = ConceptStage(settings, regression=True)
    assert [s.name for s in stage.specs] == ["adwin_error"]
    rng = np.random.default_rng(2)
    error = np.abs(rng.normal(0, np.r_[np.full(3000, 1.0), np.full(3000, 3.0)]))
    found = stage.update([str(i) for i in range(6000)], np.arange(6000.0), {"error": error})
    assert found and 3000 <= found[0].index < 3300


def test_standardised_page_hinkley_calibrates_on_the_first_values() -> None:
    settings = concept_config_from_dict(
        {
            "defaults": {
                "calibration": 200,
                "detectors": [{"kind": "page_hinkley", "stream": "score"}],
            }
        }
    ).defaults
    stage = ConceptStage(settings)
    scores = np.random.default_rng(0).normal(50.0, 5.0, 300)
    stage.update([str(i) for i in range(300)], np.arange(300.0), {"score": scores})
    monitor = stage.monitors["page_hinkley_score"]
    assert monitor is not None and monitor.n_seen == 100
    assert monitor.reference_mean == pytest.approx(50.0, abs=1.0)
    restored = ConceptStage.from_state(
        settings, False, orjson.loads(orjson.dumps(stage.to_state()))
    )
    assert restored.monitors["page_hinkley_score"] is not None


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"default": {}}, "concept_drift.default"),
        ({"defaults": {"cooldown_records": -1}}, "concept_drift.defaults.cooldown_records"),
        ({"defaults": {"cooldown_seconds": "1h"}}, "concept_drift.defaults.cooldown_seconds"),
        (
            {"defaults": {"detectors": [{"kind": "cusum"}]}},
            "concept_drift.defaults.detectors[0].kind",
        ),
        (
            {"models": {"fraud": {"detectors": [{"kind": "adwin", "params": {"deltaa": 1}}]}}},
            "concept_drift.models.fraud.detectors[0].params",
        ),
        (
            {"defaults": {"detectors": [{"kind": "adwin", "stream": "probability"}]}},
            "concept_drift.defaults.detectors[0].stream",
        ),
        (
            {"defaults": {"detectors": [{"kind": "adwin"}, {"kind": "adwin"}]}},
            "concept_drift.defaults.detectors",
        ),
        ({"defaults": {"reset_on_detection": "yes"}}, "concept_drift.defaults.reset_on_detection"),
    ],
)
def test_bad_config_names_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConceptConfigError) as raised:
        concept_config_from_dict(section)
    assert str(raised.value).startswith(key + ":") or str(raised.value).startswith(key + ".")


def test_the_shipped_thresholds_file_holds_the_default_suite() -> None:
    from pathlib import Path

    config = load_concept_config(
        Path(__file__).resolve().parents[2] / "config" / "drift_thresholds.yaml"
    )
    assert config.defaults == DEFAULT_CONCEPT_DRIFT


def test_a_bad_thresholds_file_fails_naming_the_file_and_the_key(tmp_path: Any) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("concept_drift:\n  defaults:\n    detectors:\n      - {kind: hdddm_w}\n")
    with pytest.raises(ConceptConfigError) as raised:
        load_concept_config(path)
    assert str(raised.value).startswith(f"{path}: concept_drift.defaults.detectors[0].kind:")
    assert load_concept_config(tmp_path / "absent.yaml").defaults == DEFAULT_CONCEPT_DRIFT


def test_outcome_error_stream_uses_one_class_rule() -> None:
    """The concept stage's error stream: True/1/"true"/1.0 are the same class (no error)."""
    from driftline.detectors.concept import outcome_streams

    labels = [True, "true", 1.0, "1", False, "0", "fraud", 1]
    predictions = [1, 1.0, "1", True, "false", 0.0, "fraud", 0]
    streams = outcome_streams(labels, predictions, [0.9] * 8, regression=False)
    assert streams["error"].tolist() == [0.0] * 7 + [1.0]
    # the positive class for the log loss: the first four and the last are class 1
    assert np.allclose(streams["loss"][[0, 1, 2, 3, 7]], -np.log(0.9))
    assert np.allclose(streams["loss"][[4, 5]], -np.log(0.1))
