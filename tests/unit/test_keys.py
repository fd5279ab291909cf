"""The one typed key reader (driftline/keys.py), by property: over generated dataclass-shaped
mappings, an unknown key is always refused naming its full path, a valid mapping round-trips
into the dataclass, and a value of the wrong type is always refused naming the key. Then the
same properties over the real schemas (config sections, thresholds, importance, concept drift)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.config import Config, ConfigError, LabelsConfig, WorkerConfig, load_config
from driftline.detectors.concept.settings import (
    ConceptConfigError,
    ConceptSettings,
    concept_config_from_dict,
)
from driftline.detectors.importance import ImportanceThresholds
from driftline.detectors.thresholds import (
    ModelThresholds,
    ThresholdsError,
    thresholds_from_dict,
)
from driftline.keys import Bound, EnvText, SettingsError, key, read

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Inner:
    rate: float = key(0.5, gt=0, le=1)
    on: bool = True


@dataclass(frozen=True)
class Toy:
    count: int = key(3, ge=1)
    share: float = key(0.1, ge=0, lt=1)
    name: str = "toy"
    mode: Literal["fast", "slow"] = "fast"
    band: tuple[float, float] = key((0.2, 0.4), ge=0, le=1)
    limit: float | None = None
    inner: Inner = field(default_factory=Inner)
    per_model: dict[str, Inner] = key(factory=dict, base="inner")


NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


def toy_values() -> st.SearchStrategy[dict[str, Any]]:
    inner = st.fixed_dictionaries(
        {},
        optional={
            "rate": st.floats(0, 1, exclude_min=True),
            "on": st.booleans(),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "count": st.integers(1, 10**9),
            "share": st.floats(0, 1, exclude_max=True),
            "name": st.text(min_size=1, max_size=20),
            "mode": st.sampled_from(["fast", "slow"]),
            "band": st.tuples(st.floats(0, 1), st.floats(0, 1)).map(list),
            "limit": st.none() | st.floats(-1e6, 1e6),
            "inner": inner,
            "per_model": st.dictionaries(NAMES, inner, max_size=3),
        },
    )


@FAST
@given(toy_values())
def test_a_valid_mapping_round_trips(raw: dict[str, Any]) -> None:
    toy = read(Toy, raw, "toy")
    for name, value in raw.items():
        got = getattr(toy, name)
        if name == "band":
            assert got == tuple(value)
        elif name == "inner":
            assert dataclasses.asdict(got) == {**dataclasses.asdict(Inner()), **value}
        elif name == "per_model":  # each model starts from the sibling `inner`
            for model, over in value.items():
                assert dataclasses.asdict(got[model]) == {**dataclasses.asdict(toy.inner), **over}
        else:
            assert got == value
    again = read(Toy, dataclasses.asdict(toy), "toy")  # what it read, written back, reads the same
    assert again == toy


@FAST
@given(toy_values(), NAMES, st.sampled_from(["", "inner", "per_model.fraud"]))
def test_an_unknown_key_is_refused_naming_its_path(
    raw: dict[str, Any], unknown: str, where: str
) -> None:
    allowed = {f.name for f in dataclasses.fields(Inner if where else Toy)}
    if unknown in allowed:
        return
    body: dict[str, Any] = dict(raw)
    if where == "":
        body[unknown] = 1
    elif where == "inner":
        body["inner"] = {**(body.get("inner") or {}), unknown: 1}
    else:
        body["per_model"] = {"fraud": {unknown: 1}}
    with pytest.raises(SettingsError) as info:
        read(Toy, body, "toy")
    path = ".".join(p for p in ("toy", where, unknown) if p)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown key")
    assert all(name in message for name in allowed), "the allowed keys are listed"


WRONG = {
    "count": st.sampled_from([True, 1.5, "3", None, [], 0, -1]),
    "share": st.sampled_from([True, "0.1", None, {}, 1.0, -0.1, math.nan, math.inf]),
    "name": st.sampled_from([1, "", None, ["a"]]),
    "mode": st.sampled_from(["medium", 1, True, None]),
    "band": st.sampled_from([[0.1], "0.1,0.2", [0.1, 2.0], [0.1, "x"], None]),
    "inner": st.sampled_from([3, "x", [1]]),
    "per_model": st.sampled_from([3, ["fraud"], {"fraud": 3}]),
}


@FAST
@given(toy_values(), st.sampled_from(sorted(WRONG)), st.data())
def test_a_wrong_type_or_value_is_refused_naming_the_key(
    raw: dict[str, Any], name: str, data: st.DataObject
) -> None:
    bad = data.draw(WRONG[name])
    with pytest.raises(SettingsError) as info:
        read(Toy, {**raw, name: bad}, "toy")
    message = str(info.value)
    assert message.startswith(f"toy.{name}"), message
    assert "expected" in message or "a value is required" in message


def test_environment_text_is_parsed_by_type_and_names_the_variable() -> None:
    def env(text: str) -> EnvText:
        return EnvText(text, "X")

    toy = read(Toy, {"count": env("7"), "share": env("0.5"), "mode": env("slow")}, "toy")
    assert (toy.count, toy.share, toy.mode) == (7, 0.5, "slow")
    assert read(Toy, {"limit": env("")}, "toy").limit is None
    assert read(Inner, {"on": env("no")}).on is False
    with pytest.raises(SettingsError, match=r"^toy\.count \(from X\): expected an integer >= 1"):
        read(Toy, {"count": env("7.5")}, "toy")


def test_bound_text_and_rule() -> None:
    assert str(Bound(ge=0, lt=1)) == "in [0, 1)" and str(Bound(le=5)) == "<= 5"
    assert Bound(ge=0, lt=1).holds(0.0) and not Bound(ge=0, lt=1).holds(1.0)


def test_the_callers_error_class_is_raised() -> None:
    with pytest.raises(ThresholdsError):
        read(Toy, {"count": 0}, error=ThresholdsError)
    for cls in (ConfigError, ThresholdsError, ConceptConfigError):
        assert issubclass(cls, SettingsError) and issubclass(cls, ValueError)


# -- the real schemas ----------------------------------------------------------------------


SCHEMAS: list[tuple[type[Any], str, type[SettingsError]]] = [
    (WorkerConfig, "worker", ConfigError),
    (LabelsConfig, "labels", ConfigError),
    (ModelThresholds, "drift_thresholds.defaults", ThresholdsError),
    (ImportanceThresholds, "x.importance", SettingsError),
    (ConceptSettings, "concept_drift.defaults", ConceptConfigError),
]


@FAST
@given(st.sampled_from(SCHEMAS), NAMES)
def test_real_schemas_refuse_unknown_keys(schema: Any, unknown: str) -> None:
    cls, path, error = schema
    names = {f.name for f in dataclasses.fields(cls)} | set(ModelThresholds().tests)
    if unknown in names:
        return
    if cls is ModelThresholds:
        section: Any = {"drift_thresholds": {"defaults": {unknown: 1}}}
        reader: Any = thresholds_from_dict
    elif cls is ConceptSettings:
        section, reader = {"defaults": {unknown: 1}}, concept_config_from_dict
    else:
        section, reader = {unknown: 1}, lambda raw: read(cls, raw, path, error=error)
    with pytest.raises(error, match=rf"^{path}\.{unknown}: unknown key"):
        reader(section)


def _wrong_for(hint: Any) -> list[Any]:
    if hint is bool:
        return ["yes", 1]
    if hint is int:
        return ["many", True, 1.5]
    if hint is float:
        return ["high", True, math.nan]
    return []


@pytest.mark.parametrize(("cls", "path", "error"), SCHEMAS[:4])
def test_real_schemas_refuse_every_wrong_type(
    cls: type[Any], path: str, error: type[SettingsError]
) -> None:
    """Every scalar key of the real schemas, given each wrong type, fails naming the key."""
    import typing

    hints = typing.get_type_hints(cls)
    checked = 0
    for f in dataclasses.fields(cls):
        for bad in _wrong_for(hints[f.name]):
            with pytest.raises(error) as info:
                if cls is ModelThresholds:
                    thresholds_from_dict({"drift_thresholds": {"defaults": {f.name: bad}}})
                else:
                    read(cls, {f.name: bad}, path, error=error)
            assert str(info.value).startswith(f"{path}.{f.name}: expected"), str(info.value)
            checked += 1
    assert checked >= 10


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "min_samples": st.integers(1, 10**6),
            "drift_share": st.floats(0, 1),
            "ks": st.floats(0, 1, exclude_min=True, exclude_max=True),
            "psi": st.floats(1e-6, 10),
            "correction": st.sampled_from(["holm", "bh", "bonferroni"]),
            "multivariate": st.booleans(),
            "importance": st.fixed_dictionaries({"top_k": st.integers(1, 50)}),
        },
    ),
    st.dictionaries(
        NAMES,
        st.fixed_dictionaries({}, optional={"output_alpha": st.floats(0.001, 0.5)}),
        max_size=3,
    ),
)
def test_thresholds_round_trip_and_models_start_from_the_defaults(
    defaults: dict[str, Any], models: dict[str, Mapping[str, Any]]
) -> None:
    t = thresholds_from_dict({"drift_thresholds": {"defaults": defaults, "models": models}})
    for name, value in defaults.items():
        if name in ("ks", "psi"):
            assert t.defaults.tests[name] == value
        elif name == "importance":
            assert t.defaults.importance.top_k == value["top_k"]
        else:
            assert getattr(t.defaults, name) == value
    for model, over in models.items():
        expected = dataclasses.replace(t.defaults, **over)
        assert t.for_model(model) == expected


def test_config_file_errors_name_the_file(tmp_path: Any) -> None:
    path = tmp_path / "driftline.yaml"
    path.write_text("labels:\n  max_accuracy_drop: 1.5\n")
    with pytest.raises(
        ConfigError,
        match=r"driftline\.yaml: labels\.max_accuracy_drop: expected a number in \(0, 1\), got 1\.5",
    ):
        load_config(path, environ={})
    assert load_config(None, environ={}) == Config()
