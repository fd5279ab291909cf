"""The numeric sketch update gives the same counts and the same floats (bit for bit) as the
plain numpy formulation it replaced (`np.diff(..., prepend=0)`, `xs.mean()`), and reservoir
rows read back from JSON are the rows written."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftline.detectors.profile import NumericProfile
from driftline.detectors.sketch import (
    NumericSketch,
    _empty_numeric,
    _rows_from_json,
    _rows_with_none,
)


def _reference_update(sk: NumericSketch, values: np.ndarray) -> None:
    """The update as written before (kept here as the specification)."""
    finite = np.isfinite(values)
    n_b = int(finite.sum())
    bad = values.size - n_b
    if bad:
        nan = int(np.isnan(values).sum())
        sk.missing += nan
        sk.invalid += bad - nan
        x = values[finite]
    else:
        x = values
    if n_b == 0:
        return
    xs = np.sort(x)
    below = np.searchsorted(xs, np.concatenate(([sk.low], sk.cuts)), side="left")
    upto_high = int(np.searchsorted(xs, sk.high, side="right"))
    sk.counts[: len(below)] += np.diff(below, prepend=0)
    sk.counts[-2] += upto_high - int(below[-1])
    sk.counts[-1] += n_b - upto_high
    if sk.fine_counts is not None and sk.fine_cuts is not None:
        fine_below = np.searchsorted(xs, np.concatenate(([sk.low], sk.fine_cuts)), side="left")
        sk.fine_counts[: len(fine_below)] += np.diff(fine_below, prepend=0)
        sk.fine_counts[-2] += upto_high - int(fine_below[-1])
        sk.fine_counts[-1] += n_b - upto_high
    mean_b = float(xs.mean())
    d = xs - mean_b
    sk._combine(n_b, mean_b, float(d @ d), float(xs[0]), float(xs[-1]))


@pytest.mark.parametrize("kind", ["normal", "ties", "heavy", "few_distinct"])
def test_numeric_update_is_bitwise_the_reference(kind: str) -> None:
    rng = np.random.default_rng(5)
    reference = {
        "normal": rng.normal(size=5_000),
        "ties": np.round(rng.normal(size=5_000), 1),
        "heavy": rng.standard_cauchy(size=5_000),
        "few_distinct": rng.integers(0, 4, size=5_000).astype(float),
    }[kind]
    profile = NumericProfile.fit(reference)
    new, old = _empty_numeric(profile), _empty_numeric(profile)
    for size in (1, 2, 7, 60, 1024, 3000, 0):
        batch = rng.choice(reference, size=size) * rng.choice([1.0, 1.5]) + rng.choice([0.0, 0.3])
        if size > 5:
            batch[rng.random(size) < 0.2] = np.nan
            batch[:2] = [np.inf, -np.inf]
        new.update(batch.copy())
        _reference_update(old, batch.copy())
    assert new.counts.tolist() == old.counts.tolist()
    assert new.fine_counts is not None and old.fine_counts is not None
    assert new.fine_counts.tolist() == old.fine_counts.tolist()
    for field in ("n", "mean", "m2", "min", "max", "missing", "invalid"):
        assert getattr(new, field) == getattr(old, field), field
    assert new.to_dict() == old.to_dict()


def test_reservoir_rows_round_trip() -> None:
    rng = np.random.default_rng(2)
    for rows in (
        rng.normal(size=(300, 4)),
        np.where(rng.random((300, 4)) < 0.2, np.nan, rng.normal(size=(300, 4))),
        np.full((3, 2), np.nan),
        np.empty((0, 3)),
    ):
        back = _rows_from_json(_rows_with_none(rows)).reshape(-1, rows.shape[1])
        assert back.shape == rows.shape
        assert np.array_equal(back, rows, equal_nan=True)


def test_reservoir_rows_refused_by_numpy_go_value_by_value() -> None:
    assert _rows_from_json([[1, None], [True, "2.5"]]).tolist()[1] == [1.0, 2.5]
    assert math.isnan(_rows_from_json([[1, None], [True, "2.5"]])[0, 1])
    with pytest.raises(ValueError):
        _rows_from_json([[1.0, 2.0], [3.0]])  # ragged, as before
