"""Concept drift wrapper: agreement with river, exact restore from a JSON checkpoint."""

from __future__ import annotations

import doctest
import importlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from river.drift import ADWIN, KSWIN, PageHinkley
from river.drift.binary import DDM, EDDM, HDDMA, HDDMW

from driftline.detectors import concept
from driftline.detectors.concept import (
    BINARY_KINDS,
    DETECTOR_KINDS,
    CheckpointVersionError,
    ConceptDriftMonitor,
    ConceptDriftSuite,
    ConceptSettings,
    ConceptStage,
    SuiteMember,
    concept_config_from_dict,
)

RNG = np.random.default_rng(2024)
# errors Bernoulli(0.1) -> Bernoulli(0.4); values N(0, 1) -> N(1, 1)
ERRORS = (RNG.random(8000) < np.r_[np.full(4000, 0.1), np.full(4000, 0.4)]).astype(np.int64)
VALUES = RNG.normal(np.r_[np.zeros(4000), np.ones(4000)], 1.0)

RIVER: dict[str, Callable[[], Any]] = {
    "adwin": ADWIN,
    "ddm": DDM,
    "eddm": EDDM,
    "hddm_a": HDDMA,
    "hddm_w": HDDMW,
    "page_hinkley": PageHinkley,
    "kswin": lambda: KSWIN(seed=0),
}


def stream(kind: str) -> np.ndarray:
    # KSWIN costs ~0.2 ms per update: a shorter stream around the change keeps the test fast
    if kind == "kswin":
        return VALUES[3500:4700]
    return ERRORS if kind in BINARY_KINDS else VALUES


def river_drifts(kind: str, values: np.ndarray) -> list[int]:
    det = RIVER[kind]()
    out = []
    for i, x in enumerate(values.tolist()):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def test_all_seven_kinds_covered() -> None:
    assert set(DETECTOR_KINDS) == set(RIVER)


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_agrees_with_river_exactly(kind: str) -> None:
    values = stream(kind)
    expected = river_drifts(kind, values)
    mon = ConceptDriftMonitor(kind)
    got = mon.update_many(values)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert mon.drift_count == len(expected) and mon.n_seen == values.size
    # a real drift is found after the change point
    change = 500 if kind == "kswin" else 4000
    assert any(i >= change for i in expected), kind


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_restored_detector_flags_same_indices(kind: str) -> None:
    values = stream(kind)
    expected = river_drifts(kind, values)
    # cut in several places, including right after each drift (the reset is pending there)
    cuts = sorted({values.size // 3, values.size // 2 + 7} | {i + 1 for i in expected[:3]})
    mon = ConceptDriftMonitor(kind)
    got: list[int] = []
    start = 0
    for cut in [*cuts, values.size]:
        got += (mon.update_many(values[start:cut]) + start).tolist()
        wire = json.dumps(mon.to_state(), allow_nan=False)  # strict JSON
        mon = ConceptDriftMonitor.from_state(json.loads(wire))
        start = cut
    assert got == expected
    assert mon.n_seen == values.size and mon.drift_count == len(expected)


def test_binary_warnings_and_state() -> None:
    mon = ConceptDriftMonitor("ddm")
    det = DDM()
    warn = []
    for i, x in enumerate(ERRORS.tolist()):
        det.update(x)
        if det.warning_detected and not det.drift_detected:
            warn.append(i)
    mon.update_many(ERRORS)
    assert mon.warning_indices.tolist() == warn
    assert mon.warning_count == len(warn)
    assert mon.state in {"stable", "warning", "drift"}


def test_nan_skipped_and_indices_refer_to_batch() -> None:
    values = ERRORS.astype(np.float64)
    with_nan = np.insert(values, np.arange(0, values.size, 2), np.nan)  # NaN every other slot
    mon_a, mon_b = ConceptDriftMonitor("hddm_a"), ConceptDriftMonitor("hddm_a")
    plain = mon_a.update_many(values)
    gapped = mon_b.update_many(with_nan)
    assert np.isnan(with_nan[gapped]).sum() == 0
    assert (~np.isnan(with_nan))[: gapped[0] + 1].sum() - 1 == plain[0]
    assert mon_b.n_seen == values.size


def test_standardisation_matches_feeding_z_scores() -> None:
    x = 10.0 + 5.0 * VALUES
    mon = ConceptDriftMonitor("page_hinkley", reference_mean=10.0, reference_std=5.0)
    assert mon.update_many(x).tolist() == river_drifts("page_hinkley", (x - 10.0) / 5.0)
    ref = ConceptDriftMonitor.from_reference("page_hinkley", x[:4000])
    assert ref.reference_std == pytest.approx(np.std(x[:4000], ddof=1))


def test_empty_batch_and_single_update() -> None:
    mon = ConceptDriftMonitor("adwin")
    assert mon.update_many(np.empty(0)).size == 0
    assert mon.state == "stable" and mon.n_seen == 0
    assert mon.update(0.5) == "stable"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "nope"}, "unknown detector"),
        ({"kind": "ddm", "reference_mean": 0.0, "reference_std": 1.0}, "standardisation"),
        ({"kind": "adwin", "reference_mean": 0.0}, "both"),
        ({"kind": "adwin", "reference_mean": 0.0, "reference_std": 0.0}, "> 0"),
    ],
)
def test_invalid_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConceptDriftMonitor(**kwargs)


def test_binary_rejects_non_binary_values() -> None:
    with pytest.raises(ValueError, match="0/1"):
        ConceptDriftMonitor("ddm").update_many([0.0, 0.5])


def test_checkpoint_version_mismatch_refused() -> None:
    state = ConceptDriftMonitor("adwin").to_state()
    state["river_version"] = "0.1.0"
    with pytest.raises(CheckpointVersionError):
        ConceptDriftMonitor.from_state(state)


def test_checkpoint_rejects_unknown_classes() -> None:
    state = ConceptDriftMonitor("ddm").to_state()
    state["detector"]["_p"] = {"__obj__": "os.system", "attrs": {}}
    with pytest.raises(KeyError):
        ConceptDriftMonitor.from_state(state)


def test_suite_records_and_restore() -> None:
    members = [
        SuiteMember("adwin_error", "error", "adwin"),
        SuiteMember("ddm_error", "error", "ddm"),
        SuiteMember("ph_score", "score", "page_hinkley", {"threshold": 50.0}, 0.0, 1.0),
    ]
    suite = ConceptDriftSuite(members)
    first = suite.update({"error": ERRORS[:4000], "score": VALUES[:4000]})
    suite = ConceptDriftSuite.from_state(json.loads(json.dumps(suite.to_state())))
    second = suite.update({"error": ERRORS[4000:], "score": VALUES[4000:]})
    whole = ConceptDriftSuite(members).update({"error": ERRORS, "score": VALUES})
    combined = [(r.detector, r.sample, r.state) for r in first + second]
    assert sorted(combined) == sorted((r.detector, r.sample, r.state) for r in whole)
    assert {r.detector for r in whole if r.state == "drift"} >= {"adwin_error", "ddm_error"}
    for r in second:
        assert r.sample == 4000 + r.index
    # a stream missing from the batch is skipped
    assert suite.update({"score": VALUES[:10]}) is not None
    assert suite.monitors["adwin_error"].n_seen == 8000


def test_suite_default_and_duplicate_names() -> None:
    assert [m.name for m in ConceptDriftSuite.default().members] == ["adwin_error"]
    with pytest.raises(ValueError, match="unique"):
        ConceptDriftSuite([SuiteMember("a", "error", "adwin"), SuiteMember("a", "error", "ddm")])


@pytest.mark.parametrize("module", ["checkpoint", "monitor", "settings", "stage", "suite"])
def test_doctests(module: str) -> None:
    found = doctest.testmod(importlib.import_module(f"{concept.__name__}.{module}"))
    assert found.attempted > 0 and found.failed == 0


def _stage_settings(detector: dict[str, Any]) -> ConceptSettings:
    return concept_config_from_dict({"defaults": {"detectors": [detector]}}).defaults


@pytest.mark.parametrize(
    "changed",
    [
        {"kind": "page_hinkley", "stream": "score", "params": {"threshold": 80}},
        {"kind": "page_hinkley", "stream": "score", "standardise": False},
    ],
)
def test_a_stage_restored_under_changed_params_or_standardise_starts_fresh(
    changed: dict[str, Any],
) -> None:
    before = _stage_settings({"kind": "page_hinkley", "stream": "score"})
    stage = ConceptStage(before)
    stage.update(["a", "b", "c"], np.arange(3.0), {"score": np.array([0.1, 0.5, 0.9])})
    state = json.loads(json.dumps(stage.to_state()))
    assert ConceptStage.from_state(before, False, state).n_seen == 3  # same suite: restored
    with pytest.raises(CheckpointVersionError, match="configuration changed"):
        ConceptStage.from_state(_stage_settings(changed), False, state)


def test_list_params_checkpoint_and_sign_like_the_config() -> None:
    window = [0.1, 0.2] * 60  # KSWIN's initial window, as a YAML list
    settings = _stage_settings({"kind": "kswin", "stream": "score", "params": {"window": window}})
    stage = ConceptStage(settings)
    stage.update(["a", "b"], np.arange(2.0), {"score": np.array([0.3, 0.4])})
    state = json.loads(json.dumps(stage.to_state()))
    restored = ConceptStage.from_state(settings, False, state)
    monitor = restored.monitors["kswin_score"]
    assert monitor is not None and list(monitor.params["window"]) == window
    assert restored.n_seen == 2
