"""ReferenceProfile and RecordBatch: hand-computed bins, type inference, JSON round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from driftline.detectors.batch import RecordBatch, parse_timestamp
from driftline.detectors.profile import (
    OTHER,
    NumericProfile,
    ProfileFormatError,
    ReferenceProfile,
    bin_counts,
    bin_index,
)


def _records() -> list[dict[str, object]]:
    return [
        {
            "prediction_id": "a",
            "model": "m",
            "model_version": "1",
            "timestamp": 0.0,
            "features": {"x": 1.0, "c": "u"},
            "prediction": "yes",
            "score": 0.9,
            "latency_ms": 10.0,
        },
        {
            "prediction_id": "b",
            "model": "m",
            "model_version": "1",
            "timestamp": "1970-01-01T00:00:01+00:00",
            "features": {"x": None, "c": None},
            "prediction": "no",
            "probabilities": {"yes": 0.2, "no": 0.8},
            "error": "Boom: bad",
        },
        {
            "prediction_id": "c",
            "model": "m",
            "model_version": "1",
            "timestamp": 2,
            "features": {"x": "abc", "c": 3},
            "prediction": 1,
            "attributions": {"x": -0.5},
        },
        {
            "prediction_id": "d",
            "model": "m",
            "model_version": "1",
            "timestamp": "bad",
            "features": {"x": math.inf},
            "prediction": "yes",
        },
    ]


def test_record_batch_columns() -> None:
    batch = RecordBatch.from_records(_records(), {"x": "numeric", "c": "categorical"})
    assert len(batch) == 4
    x = batch.numeric["x"]
    assert x[0] == 1.0 and math.isnan(x[1]) and x[2] == math.inf and x[3] == math.inf
    assert batch.categorical["c"].tolist() == ["u", None, "3", None]
    assert batch.event_time[:3].tolist() == [0.0, 1.0, 2.0] and math.isnan(batch.event_time[3])
    assert batch.score is not None
    assert batch.score[:2].tolist() == [0.9, 0.8] and math.isnan(batch.score[2])
    assert batch.latency_seconds[0] == pytest.approx(0.01) and math.isnan(batch.latency_seconds[1])
    assert batch.error.tolist() == [None, "Boom: bad", None, None]
    assert batch.attributions is not None and batch.attributions["x"][2] == -0.5
    sub = batch.take(np.array([2, 0]))
    assert sub.prediction.tolist() == [1, "yes"]


def test_parse_timestamp_naive_is_utc() -> None:
    assert parse_timestamp("1970-01-02T00:00:00") == 86400.0
    assert math.isnan(parse_timestamp("nope"))


def test_bins_hand_computed() -> None:
    x = np.arange(1.0, 11.0)  # 1..10, 10 distinct values
    prof = NumericProfile.fit(x, bins=4)  # quantiles at 25/50/75 %: 3.25, 5.5, 7.75
    assert prof.cuts.tolist() == [3.25, 5.5, 7.75]
    assert (prof.low, prof.high) == (1.0, 10.0)
    assert prof.counts.tolist() == [0, 3, 2, 2, 3, 0]
    assert prof.mean == 5.5 and prof.variance == pytest.approx(8.25)
    w = np.array([0.0, 3.25, 11.0, 10.0])
    assert bin_index(w, prof.cuts, prof.low, prof.high).tolist() == [0, 2, 5, 4]
    assert bin_counts(w, prof.cuts, prof.low, prof.high).tolist() == [1, 0, 1, 0, 1, 1]


def test_bin_counts_matches_bin_index() -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=5000), 1)
    prof = NumericProfile.fit(x[:1000], bins=20)
    expected = np.bincount(bin_index(x, prof.cuts, prof.low, prof.high), minlength=len(prof.counts))
    assert bin_counts(x, prof.cuts, prof.low, prof.high).tolist() == expected.tolist()


def test_discrete_and_constant_features() -> None:
    discrete = NumericProfile.fit(np.array([0.0, 0, 0, 1, 1, 2, 3, 3]), bins=20)
    assert discrete.cuts.tolist() == [0.5, 1.5, 2.5]  # one bin per distinct value
    assert discrete.counts.tolist() == [0, 3, 2, 1, 2, 0]
    constant = NumericProfile.fit(np.full(10, 7.0))
    assert constant.cuts.size == 0 and constant.counts.tolist() == [0, 10, 0]
    empty = NumericProfile.fit(np.array([np.nan, np.inf]))
    assert (empty.count, empty.missing, empty.invalid) == (0, 1, 1)


def test_profile_from_columns_types_caps_and_sample() -> None:
    rng = np.random.default_rng(0)
    cats = np.array([f"v{i}" for i in rng.integers(0, 10, 3000)], dtype=object)
    profile = ReferenceProfile.from_columns(
        {"x": rng.normal(size=3000), "y": rng.integers(0, 5, 3000), "c": cats},
        model="m",
        model_version="2",
        max_categories=4,
        sample_size=100,
        feature_types={"y": "categorical"},
    )
    assert profile.feature_types == {"x": "numeric", "y": "categorical", "c": "categorical"}
    counts = profile.categorical["c"].counts
    assert len(counts) == 5 and OTHER in counts and sum(counts.values()) == 3000
    assert profile.sample.shape == (100, 1) and profile.sample_columns == ["x"]
    assert profile.pca is None  # fewer than two numeric features


def test_profile_json_round_trip_and_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    x[:10] = np.nan
    profile = ReferenceProfile.from_columns(
        {"x": x, "z": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)},
        model="m",
        model_version="1",
        prediction=rng.choice(["p", "q"], 2000),
        score=rng.random(2000),
        labels=rng.choice(["p", "q"], 2000),
        sample_size=500,
    )
    assert profile.pca is not None
    assert profile.performance is not None and 0.3 < (profile.performance["accuracy"] or 0) < 0.7
    path = tmp_path / "profile.json"
    profile.save(path)
    again = ReferenceProfile.load(path)
    assert again.to_dict() == profile.to_dict()
    assert again.fingerprint == profile.fingerprint
    assert np.isnan(again.sample).sum() == np.isnan(profile.sample).sum()
    data = json.loads(path.read_text())
    data["format_version"] = 99
    with pytest.raises(ProfileFormatError, match="format_version 99"):
        ReferenceProfile.from_dict(data)


def test_profile_from_records_and_csv(tmp_path: Path) -> None:
    profile = ReferenceProfile.from_records(_records(), model="m", model_version="1")
    assert profile.feature_types == {"c": "categorical", "x": "categorical"}  # "abc" present
    good = [r for r in _records() if isinstance((r["features"] or {}).get("x"), float | None)]
    assert ReferenceProfile.from_records(good, model="m", model_version="1").feature_types["x"] == (
        "numeric"
    )
    csv_path = tmp_path / "ref.csv"
    csv_path.write_text("amount,country,pred,label\n1.5,FR,1,1\n,DE,0,1\n3,FR,1,0\n")
    csv_profile = ReferenceProfile.from_csv(
        csv_path, model="m", model_version="1", prediction_column="pred", label_column="label"
    )
    assert csv_profile.feature_types == {"amount": "numeric", "country": "categorical"}
    amount = csv_profile.numeric["amount"]
    assert (amount.count, amount.missing, amount.mean) == (2, 1, 2.25)
    assert csv_profile.class_counts == {"1": 2, "0": 1}
