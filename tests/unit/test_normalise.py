"""One typing on both sides (issue 11): CSV strings when the profile is built, JSON or Python
values when live records are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.normalise import category_column, category_value, infer_type
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds


def _csv(tmp_path: Path, rng: np.random.Generator, n: int) -> Path:
    path = tmp_path / "reference.csv"
    flag = rng.random(n) < 0.3
    amount = rng.lognormal(3.0, 1.0, n)
    country = rng.choice(["FR", "DE", "US"], n)
    lines = ["amount,is_night,country,code"]
    for i in range(n):
        amount_cell = "" if i % 5 == 0 else f"{amount[i]:.2f}"  # 20 % missing
        lines.append(f"{amount_cell},{'true' if flag[i] else 'false'},{country[i]},{i % 3}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _records(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    flag = rng.random(n) < 0.3
    amount = rng.lognormal(3.0, 1.0, n)
    country = rng.choice(["FR", "DE", "US"], n)
    return [
        {
            "timestamp": 0.0,
            "features": {
                # a Python client: real booleans, numbers sent as strings, NaN for missing
                "amount": float("nan") if i % 5 == 0 else str(round(float(amount[i]), 2)),
                "is_night": bool(flag[i]),
                "country": str(country[i]),
                "code": i % 3,
            },
        }
        for i in range(n)
    ]


def test_csv_reference_and_python_client_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.from_csv(_csv(tmp_path, rng, 20_000), model="m", model_version="1")
    assert profile.feature_types == {
        "amount": "numeric",
        "is_night": "boolean",
        "country": "categorical",
        "code": "numeric",
    }
    assert sorted(profile.categorical["is_night"].counts) == ["false", "true"]
    for _ in range(3):
        sketch = WindowSketch.empty(profile, 0.0, 60.0)
        sketch.update(RecordBatch.from_records(_records(rng, 5_000), profile.feature_types))
        evaluation = evaluate_window(profile, sketch, ModelThresholds())
        assert not evaluation.drifted, evaluation.reasons
        assert evaluation.features["is_night"].unseen == {}
        assert evaluation.features["amount"].invalid == 0
        assert evaluation.summary.missing_rate["amount"] == 0.2


def test_zero_one_flag_against_a_boolean_reference_and_back() -> None:
    rng = np.random.default_rng(1)
    flags = rng.random(10_000) < 0.4
    as_bool = ReferenceProfile.from_columns({"f": flags}, model="m", model_version="1")
    assert as_bool.feature_types == {"f": "boolean"}
    live = [{"timestamp": 0.0, "features": {"f": int(v)}} for v in rng.random(2_000) < 0.4]
    sketch = WindowSketch.empty(as_bool, 0.0, 60.0)
    sketch.update(RecordBatch.from_records(live, as_bool.feature_types))
    assert not evaluate_window(as_bool, sketch, ModelThresholds()).drifted
    as_int = ReferenceProfile.from_columns({"f": flags.astype(int)}, model="m", model_version="1")
    assert as_int.feature_types == {"f": "numeric"}
    live = [{"timestamp": 0.0, "features": {"f": "true" if v else False}} for v in flags[:2_000]]
    batch = RecordBatch.from_records(live, as_int.feature_types)
    assert set(batch.numeric["f"].tolist()) == {0.0, 1.0}


def test_nan_and_null_strings_are_missing_never_a_category() -> None:
    values = np.array(["a", float("nan"), None, "NaN", "null", " ", "b"], dtype=object)
    assert category_column(values.tolist()).tolist() == ["a", None, None, None, None, None, "b"]
    profile = ReferenceProfile.from_columns({"c": values}, model="m", model_version="1")
    assert profile.feature_types == {"c": "categorical"}
    assert set(profile.categorical["c"].counts) == {"a", "b"}
    assert profile.categorical["c"].missing == 5


def test_numeric_strings_in_the_reference_are_numbers() -> None:
    records = [{"timestamp": 0.0, "features": {"x": f"{v:.3f}"}} for v in range(1_000)]
    profile = ReferenceProfile.from_records(records, model="m", model_version="1")
    assert profile.feature_types == {"x": "numeric"}
    assert infer_type(["1", 2.5, None, "nan"]) == "numeric"
    assert category_value(3.0) == category_value(3) == category_value("3") == "3"


def test_reference_build_type_options(tmp_path: Path, capsys: object) -> None:

    from driftline.cli import main

    csv = tmp_path / "ref.csv"
    csv.write_text("id,amount,flag,zip\n1,10.5,true,75001\n2,,false,10115\n3,7.25,True,75001\n")
    out = tmp_path / "ref.json"
    args = ["reference", "build", "--csv", str(csv), "--model", "m", "--model-version", "1"]
    assert (
        main([*args, "--out", str(out), "--id-column", "id", "--feature-type", "zip=categorical"])
        == 0
    )
    profile = ReferenceProfile.load(out)
    assert profile.feature_types == {"amount": "numeric", "flag": "boolean", "zip": "categorical"}
    assert "flag    boolean" in capsys.readouterr().out  # type: ignore[attr-defined]
    try:  # a one-line error, whether the CLI returns a status or exits with the message
        status: object = main([*args, "--out", str(out), "--feature-type", "zip=text"])
        message = capsys.readouterr().err  # type: ignore[attr-defined]
    except SystemExit as exc:
        status, message = exc.code, str(exc.code)
    assert status not in (0, None) and "zip=text" in message


def test_csv_labels_and_predictions_give_a_baseline_with_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    lines = ["x,prediction,label"]
    for _ in range(2_000):
        label = int(rng.random() < 0.1)
        prediction = label if rng.random() < 0.9 else 1 - label
        lines.append(f"{rng.normal():.3f},{prediction},{label}")
    path = tmp_path / "ref.csv"
    path.write_text("\n".join(lines) + "\n")
    profile = ReferenceProfile.from_csv(
        path, model="m", model_version="1", prediction_column="prediction", label_column="label"
    )
    assert profile.performance is not None
    assert profile.performance["precision"] is not None
    assert profile.performance["recall"] is not None
    assert 0.85 < (profile.performance["accuracy"] or 0) < 0.95
