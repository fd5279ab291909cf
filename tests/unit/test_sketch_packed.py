"""The reservoir in checkpoints and partials: base64 float64 bytes (exact, NaN kept), and the
list format written before still restores to the same sketch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch, _floats_from_json, _packed_floats
from driftline.detectors.thresholds import ModelThresholds

LEGACY = Path(__file__).parent / "data" / "sketch_reservoir_as_lists.json"


def _evaluated(profile: ReferenceProfile, sketch: WindowSketch) -> bytes:
    return orjson.dumps(evaluate_window(profile, sketch, ModelThresholds()).to_dict())


def _legacy_sketch() -> tuple[ReferenceProfile, WindowSketch]:
    """The sketch `data/sketch_reservoir_as_lists.json` holds, built again (it was written by
    `WindowSketch.to_dict` of main at d24d187, the reservoir as JSON lists with None for NaN)."""
    rng = np.random.default_rng(42)

    def columns(n: int) -> dict[str, np.ndarray]:
        out = {}
        for name in ("a", "b", "c"):
            x = rng.standard_normal(n)
            x[rng.random(n) < 0.2] = np.nan
            out[name] = x
        return out

    profile = ReferenceProfile.from_columns(columns(500), model="m", model_version="1", bins=5)
    sketch = WindowSketch.empty(profile, 0.0, 60.0, seed=3, reservoir_size=16)
    sketch.update(
        RecordBatch(
            numeric=columns(40),
            categorical={},
            event_time=rng.uniform(0, 60, 40),
            prediction=np.array(["0", "1"], dtype=object)[rng.integers(0, 2, 40)],
        )
    )
    return profile, sketch


def test_a_sketch_written_as_lists_restores_to_the_same_sketch() -> None:
    profile, built = _legacy_sketch()
    saved = json.loads(LEGACY.read_text())
    assert isinstance(saved["reservoir_rows"], list) and any(
        None in row for row in saved["reservoir_rows"]
    )
    old = WindowSketch.from_dict(saved)
    assert np.array_equal(old.reservoir_rows, built.reservoir_rows, equal_nan=True)
    assert old.reservoir_keys.tolist() == built.reservoir_keys.tolist()
    assert old.to_dict() == built.to_dict()  # written again in the packed format
    assert _evaluated(profile, old) == _evaluated(profile, built)
    # and it still merges and updates like the sketch it was
    assert old.merge(built).to_dict() == built.merge(built).to_dict()


@pytest.mark.parametrize(
    "values",
    [
        np.array([[1.0, np.nan], [-0.0, np.inf], [-np.inf, 5e-324]]),
        np.empty((0, 4)),
        np.arange(5.0),
        np.full((3, 2), np.nan),
    ],
)
def test_packed_floats_are_exact(values: np.ndarray) -> None:
    saved = orjson.loads(orjson.dumps(_packed_floats(values)))
    back = _floats_from_json(saved)
    assert back.shape == values.shape and back.dtype == np.float64
    assert back.tobytes() == values.tobytes()  # bit for bit: -0.0 and NaN kept
    back[...] = 1.0  # writable: the sketch updates its reservoir in place


def test_full_reservoir_round_trips_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    names = [f"f{j}" for j in range(20)]
    profile = ReferenceProfile.from_columns(
        {n: rng.standard_normal(2_000) for n in names}, model="m", model_version="1"
    )
    sketch = WindowSketch.empty(profile, 0.0, 60.0, seed=1)
    columns = {n: rng.standard_normal(6_000) for n in names}
    for x in columns.values():
        x[rng.random(6_000) < 0.2] = np.nan
    sketch.update(
        RecordBatch(
            numeric=columns,
            categorical={},
            event_time=np.zeros(6_000),
            prediction=np.full(6_000, "1", dtype=object),
        )
    )
    assert sketch.reservoir_rows.shape == (2_000, 20)
    value = orjson.dumps(sketch.to_dict())
    again = WindowSketch.from_dict(orjson.loads(value))
    assert again.reservoir_rows.tobytes() == sketch.reservoir_rows.tobytes()
    assert again.reservoir_keys.tobytes() == sketch.reservoir_keys.tobytes()
    assert orjson.dumps(again.to_dict()) == value
    assert _evaluated(profile, again) == _evaluated(profile, sketch)


@pytest.mark.parametrize(
    "damage",
    [
        {"dtype": "<f4"},
        {"shape": [3, 3]},
        {"base64": "not base64!"},
    ],
)
def test_a_damaged_packed_reservoir_is_a_clear_error(damage: dict[str, object]) -> None:
    _, sketch = _legacy_sketch()
    d = sketch.to_dict()
    d["reservoir_rows"] = {**d["reservoir_rows"], **damage}
    with pytest.raises(ValueError, match="packed array"):
        WindowSketch.from_dict(d)
