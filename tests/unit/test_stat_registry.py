"""Conformance checks run over every registered statistical test (river's estimator_checks idea).

A test added to ``driftline.detectors.stats.registry.REGISTRY`` is checked here the moment it is
declared, for every scope it applies to: valid results, identical and same-distribution samples
do not drift, shifted ones do, deterministic, ties, NaN, tiny and empty inputs; its default
passes the thresholds validation and the window evaluation runs it. The docs table must be the
registry's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.typing import NDArray

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import WindowEvaluation, evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.stats import PCAReconstruction, TestResult
from driftline.detectors.stats.registry import (
    REGISTRY,
    FineHistograms,
    Scope,
    StatTest,
    TestInput,
    replace_table,
)
from driftline.detectors.thresholds import ModelThresholds, ThresholdsError, thresholds_from_dict

REPO = Path(__file__).resolve().parents[2]
MEMBERS = [(t, scope) for t in REGISTRY for scope in t.applies_to]
IDS = [f"{t.name}-{scope}" for t, scope in MEMBERS]
CATEGORIES = np.array(["a", "b", "c", "d", "e"], dtype=object)
P_CATEGORIES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])


# -- inputs as the window evaluation builds them, from raw reference and window data ---------


def _numeric_input(test: StatTest, ref: NDArray[np.float64], win: NDArray[np.float64]) -> TestInput:
    ref_ok, win_ok = ref[np.isfinite(ref)], win[np.isfinite(win)]
    cuts = (
        np.unique(np.quantile(ref_ok, np.linspace(0.0, 1.0, 11)[1:-1])) if ref_ok.size else ref_ok
    )

    def counts(x: NDArray[np.float64]) -> NDArray[np.float64]:
        idx = np.searchsorted(cuts, x, side="right")
        return np.bincount(idx, minlength=cuts.size + 1).astype(np.float64)

    both = np.concatenate([ref_ok, win_ok])
    low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, 41)
    fine = FineHistograms(np.histogram(ref_ok, edges)[0], np.histogram(win_ok, edges)[0], edges)
    return TestInput(
        reference_counts=counts(ref_ok),
        window_counts=counts(win_ok),
        reference_sample=ref,
        window_sample=win,
        reference_std=float(ref_ok.std()) if ref_ok.size else 1.0,
        fine=fine,
        verdict_test=test.name,  # the exact mode of each test
    )


def _categorical_input(ref: NDArray[np.object_], win: NDArray[np.object_]) -> TestInput:
    def counts(x: NDArray[np.object_]) -> dict[str, float]:
        keys, n = np.unique(x.astype(str), return_counts=True)
        return {str(k): float(c) for k, c in zip(keys, n, strict=True)}

    return TestInput(reference_counts=counts(ref), window_counts=counts(win))


def _multivariate_input(ref: NDArray[np.float64], win: NDArray[np.float64]) -> TestInput:
    ok = ref[np.isfinite(ref).all(axis=1)]
    mean = ok.mean(axis=0) if ok.shape[0] else np.zeros(ref.shape[1])
    std = ok.std(axis=0) if ok.shape[0] > 1 else np.ones(ref.shape[1])
    std = np.where(std > 0, std, 1.0)
    z_ref, z_win = (ref - mean) / std, (win - mean) / std
    z_ok = z_ref[np.isfinite(z_ref).all(axis=1)]
    pca = PCAReconstruction.fit(z_ok) if z_ok.shape[0] >= 10 else None  # as the profile does
    return TestInput(reference_sample=z_ref, window_sample=z_win, pca=pca, seed=0)


def _input(
    test: StatTest, scope: Scope, ref: NDArray[np.generic], win: NDArray[np.generic]
) -> TestInput:
    if scope == "numeric":
        return _numeric_input(test, ref.astype(np.float64), win.astype(np.float64))
    if scope == "categorical":
        return _categorical_input(ref.astype(object), win.astype(object))
    return _multivariate_input(ref.astype(np.float64), win.astype(np.float64))


def _draw(
    scope: Scope, rng: np.random.Generator, n: int, shift: bool = False
) -> NDArray[np.generic]:
    """``n`` values (rows) of the reference distribution, or of a clearly shifted one."""
    if scope == "numeric":
        return rng.normal(1.0 if shift else 0.0, 1.0, n)
    if scope == "categorical":
        p = P_CATEGORIES[::-1] if shift else P_CATEGORIES
        return CATEGORIES[rng.choice(CATEGORIES.size, n, p=p)]
    rows = rng.normal(size=(n, 3))
    if shift:  # mean shift and a new correlation: every multivariate test has its catch
        rows[:, 1] = 0.8 * rows[:, 0] + 0.6 * rows[:, 1]
        rows += 1.0
    return rows


def _run(
    test: StatTest, scope: Scope, ref: NDArray[np.generic], win: NDArray[np.generic]
) -> TestResult:
    result = test.run(_input(test, scope, ref, win), test.default)
    assert result is not None, "a test whose inputs are all present must return a result"
    _check_valid(test, result)
    return result


def _check_valid(test: StatTest, result: TestResult) -> None:
    assert result.test == test.name
    assert result.threshold == test.default
    assert math.isfinite(result.statistic)
    assert isinstance(result.drifted, bool)
    if test.kind == "p_value":
        assert result.p_value is not None and 0.0 <= result.p_value <= 1.0
        assert result.drifted == (result.p_value < test.default)
    else:
        assert result.p_value is None
        assert result.drifted == (result.statistic >= test.default)
    json.dumps(result.to_dict(), allow_nan=False)


# -- the checks ------------------------------------------------------------------------------


def test_declarations_are_complete() -> None:
    names = [t.name for t in REGISTRY]
    assert len(names) == len(set(names))
    for t in REGISTRY:
        assert t.name.isidentifier() and t.name == t.name.lower()
        assert t.kind in ("p_value", "effect")
        assert t.applies_to and set(t.applies_to) <= {"numeric", "categorical", "multivariate"}
        assert t.source.strip() and t.rule.strip() and t.function
        low_ok = 0.0 < t.default < 1.0 if t.kind == "p_value" else t.default > 0.0
        assert low_ok and math.isfinite(t.default)


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_identical_samples_do_not_drift(test: StatTest, scope: Scope) -> None:
    sample = _draw(scope, np.random.default_rng(1), 1_500)
    result = _run(test, scope, sample, sample.copy())
    assert not result.drifted


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_same_distribution_rarely_drifts(test: StatTest, scope: Scope) -> None:
    alarms = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        alarms += _run(test, scope, _draw(scope, rng, 1_500), _draw(scope, rng, 1_000)).drifted
    # p-value tests at alpha 0.05: 3 or more alarms in 10 has probability 1.2 %.
    assert alarms <= 2


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_shift_is_detected(test: StatTest, scope: Scope) -> None:
    rng = np.random.default_rng(2)
    result = _run(test, scope, _draw(scope, rng, 1_500), _draw(scope, rng, 1_000, shift=True))
    assert result.drifted


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_deterministic(test: StatTest, scope: Scope) -> None:
    def once() -> TestResult:
        rng = np.random.default_rng(3)
        return _run(test, scope, _draw(scope, rng, 800), _draw(scope, rng, 600, shift=True))

    assert once() == once()


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_ties(test: StatTest, scope: Scope) -> None:
    """Heavily tied data (few distinct values): valid results, identical samples do not drift."""
    rng = np.random.default_rng(4)
    if scope == "categorical":
        ref = CATEGORIES[np.minimum(rng.poisson(0.3, 1_500), 4)]  # one category dominates
    elif scope == "numeric":
        ref = rng.poisson(1.0, 1_500).astype(np.float64)
    else:
        ref = rng.poisson(1.0, (1_500, 3)).astype(np.float64)
    assert not _run(test, scope, ref, ref.copy()).drifted
    moved = ref[:700] if scope == "categorical" else ref[:700] + 1.0
    _run(test, scope, ref, moved)


@pytest.mark.parametrize(
    ("test", "scope"),
    [m for m in MEMBERS if m[1] != "categorical"],  # categories have no NaN (the sketch counts it)
    ids=[i for i, m in zip(IDS, MEMBERS, strict=True) if m[1] != "categorical"],
)
def test_non_finite_values_are_dropped(test: StatTest, scope: Scope) -> None:
    rng = np.random.default_rng(5)
    ref, win = _draw(scope, rng, 1_500), _draw(scope, rng, 1_000, shift=True)
    dirty_ref, dirty_win = ref.astype(np.float64), win.astype(np.float64)
    dirty_ref = np.insert(dirty_ref, [10, 500], np.nan, axis=0)
    dirty_win = np.insert(dirty_win, [3, 700], np.inf, axis=0)
    clean = _run(test, scope, ref, win)
    dirty = test.run(_input(test, scope, dirty_ref, dirty_win), test.default)
    assert dirty == clean


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
@pytest.mark.parametrize(("n_ref", "n_win"), [(0, 50), (50, 0), (0, 0), (1, 1), (2, 3), (12, 2)])
def test_tiny_and_empty_inputs(test: StatTest, scope: Scope, n_ref: int, n_win: int) -> None:
    rng = np.random.default_rng(6)
    ref, win = _draw(scope, rng, n_ref), _draw(scope, rng, n_win, shift=True)
    result = test.run(_input(test, scope, ref, win), test.default)
    if result is None:  # only when an input it needs is absent (no PCA fit on < 10 rows)
        assert scope == "multivariate" and n_ref < 10
        return
    _check_valid(test, result)
    if n_ref == 0 or n_win == 0:
        assert not result.drifted and result.statistic == 0.0
        assert result.p_value == (1.0 if test.kind == "p_value" else None)


@pytest.mark.parametrize("test", REGISTRY, ids=[t.name for t in REGISTRY])
def test_default_and_validation_come_from_the_registry(test: StatTest) -> None:
    assert ModelThresholds().tests[test.name] == test.default
    level = "models"
    body: dict[str, object] = {test.name: test.default}
    if set(test.applies_to) & {"numeric", "categorical"}:
        body = {"features": {"f": {test.name: test.default}}, **body}
    parsed = thresholds_from_dict({"drift_thresholds": {level: {"m": body}}}).for_model("m")
    assert parsed.tests[test.name] == test.default
    bad = 1.5 if test.kind == "p_value" else -1.0
    with pytest.raises(ThresholdsError, match=rf"drift_thresholds\.models\.m\.{test.name}: "):
        thresholds_from_dict({"drift_thresholds": {"models": {"m": {test.name: bad}}}})


@pytest.fixture(scope="module")
def evaluation() -> WindowEvaluation:
    rng = np.random.default_rng(7)

    def batch(n: int) -> RecordBatch:
        return RecordBatch(
            numeric={"x": rng.normal(size=n), "y": rng.normal(size=n)},
            categorical={"c": CATEGORIES[rng.choice(CATEGORIES.size, n, p=P_CATEGORIES)]},
            event_time=np.zeros(n),
            prediction=np.full(n, "ok", dtype=object),
        )

    profile = ReferenceProfile.from_batch(batch(5_000), model="m", model_version="1")
    sketch = WindowSketch.empty(profile, 0.0, 60.0)
    sketch.update(batch(1_000))
    return evaluate_window(profile, sketch, ModelThresholds())


@pytest.mark.parametrize(("test", "scope"), MEMBERS, ids=IDS)
def test_the_window_evaluation_runs_it(
    test: StatTest, scope: Scope, evaluation: WindowEvaluation
) -> None:
    if scope == "multivariate":
        assert evaluation.multivariate is not None
        result = evaluation.multivariate.tests[test.name]
    else:
        result = evaluation.features["x" if scope == "numeric" else "c"].tests[test.name]
    _check_valid(test, result)


def test_docs_table_is_the_registrys() -> None:
    doc = (REPO / "docs" / "DRIFT_DETECTION.md").read_text(encoding="utf-8")
    assert doc == replace_table(doc), (
        "run `driftline config tests --write docs/DRIFT_DETECTION.md` and commit"
    )


def test_shipped_thresholds_file_keeps_the_registry_defaults() -> None:
    shipped = yaml.safe_load((REPO / "config" / "drift_thresholds.yaml").read_text())
    defaults = shipped["drift_thresholds"]["defaults"]
    for t in REGISTRY:
        assert defaults.get(t.name, t.default) == t.default, t.name
