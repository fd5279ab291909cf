"""Retraining without services: policies (loading, triggers, verdicts), routing, the training
sample's hash and class spellings, artifacts, and the scikit-learn example pipeline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from driftline.config import ConfigError, load_config
from driftline.retrain.pipeline import ArtifactError, load_artifact, store_artifact
from driftline.retrain.policy import (
    Policy,
    PolicyState,
    evaluate,
    load_policies,
    trigger_of_event,
)
from driftline.retrain.sample import hash_unit, normalise_class, sampled
from driftline.router import RoutingDecision, choose_version
from driftline.simulate import Drift, simulate

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_policies_file_is_valid() -> None:
    policies = load_policies(ROOT / "config" / "retraining_policies.yaml")
    assert [p.name for p in policies] == ["manual", "degradation", "drift", "weekly"]
    assert policies[1].trigger_set == {"concept_drift", "performance_drop"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "policies:\n  - name: a\n    triggers: concept\n",
            "policy 'a': triggers: unknown concept",
        ),
        (
            "policies:\n  - name: a\n    triggers: manual\n    cooldown: 5\n",
            "policies.yaml: policies[0].cooldown: unknown key, did you mean cooldown_seconds?",
        ),
        (
            "policies:\n  - name: a\n    triggers: manual\n    min_new_labels: many\n",
            "policies[0].min_new_labels: expected an integer, got 'many'",
        ),
        ("policies:\n  - triggers: manual\n", "policies[0].name: a value is required"),
        ("policies: 3\n", "expected `policies:` with a list"),
    ],
)
def test_bad_policies_fail_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_policies(path)
    assert message in str(info.value)


def test_retraining_config_is_validated() -> None:
    config = load_config(ROOT / "config" / "driftline.yaml", environ={})
    assert config.retraining.challenger_traffic_share == 0.2
    with pytest.raises(
        ConfigError,
        match=r"retraining.challenger_traffic_share \(from DRIFTLINE_RETRAINING_CHALLENGER_TRAFFIC_SHARE\): expected a number in \(0, 1\]",
    ):
        load_config(environ={"DRIFTLINE_RETRAINING_CHALLENGER_TRAFFIC_SHARE": "1.5"})
    with pytest.raises(
        ConfigError, match=r"retraining\.pipeline: expected package\.module:function"
    ):
        load_config(environ={"DRIFTLINE_RETRAINING_PIPELINE": "mymodule.train"})
    with pytest.raises(ConfigError, match=r"retraining\.mlflow_tracking_uri: required"):
        load_config(environ={"DRIFTLINE_RETRAINING_REGISTRY": "mlflow"})
    rates = load_config(environ={"DRIFTLINE_RETRAINING_SAMPLE_RATES": "fraud=1.0"}).retraining
    assert rates.sample_rate_for("fraud") == 1.0 and rates.sample_rate_for("credit") == 0.1


def test_triggers_of_worker_events() -> None:
    policy = Policy(name="p", triggers="data_drift", min_performance_drop=0.05)
    assert trigger_of_event({"type": "multivariate_drift"}, policy) == "data_drift"
    assert trigger_of_event({"type": "data_drift", "severity": "critical"}, policy) == (
        "critical_feature_drift"
    )
    assert trigger_of_event({"type": "data_quality_missing"}, policy) == "data_quality"
    assert trigger_of_event({"type": "latency"}, policy) is None
    drop = {"type": "estimated_performance_drop", "evidence": {"relative_drop": "lots"}}
    assert trigger_of_event(drop, policy) is None  # a malformed drop is no trigger


def test_cooldown_ends_exactly_after_its_duration() -> None:
    policy = Policy(name="p", triggers="manual", cooldown_seconds=60)
    state = PolicyState(last_fired_at=1000.0, new_labels=0, in_flight=False)
    assert not evaluate(policy, "manual", state, 1059.9).fire
    assert evaluate(policy, "manual", state, 1060.0).fire
    assert not evaluate(policy, "schedule", state, 5000.0).fire  # not a trigger of the policy


def test_router_is_deterministic_and_salted_by_test() -> None:
    a = RoutingDecision("fraud", "1", "2", 0.5, test_id="a")
    b = RoutingDecision("fraud", "1", "2", 0.5, test_id="b")
    ids = [f"txn-{i}" for i in range(2000)]
    first = [choose_version(a, i) for i in ids]
    assert first == [choose_version(a, i) for i in ids]
    # A new test reshuffles who is in the challenger arm (no arm is stuck with the same users).
    assert sum(x != choose_version(b, i) for x, i in zip(first, ids, strict=True)) > 800
    with pytest.raises(ValueError, match="challenger_share"):
        RoutingDecision.from_dict({"model": "m", "champion": "1", "challenger_share": 2})


def test_sample_hash_is_independent_of_the_router_hash() -> None:
    ids = [f"p{i}" for i in range(4000)]
    decision = RoutingDecision("fraud", "1", "2", 0.2, test_id="t")
    arm = [choose_version(decision, i) == "2" for i in ids]
    kept = [sampled(i, 0.5) for i in ids]
    in_challenger = sum(a and k for a, k in zip(arm, kept, strict=True)) / sum(arm)
    assert 0.44 < in_challenger < 0.56  # the sample keeps half of each arm
    assert 0 <= hash_unit("x", "s") < 1


def test_class_spellings_normalise() -> None:
    assert [normalise_class(v) for v in ("1.0", " 0 ", False, None, "N/A")] == [
        1,
        0,
        0,
        None,
        "N/A",
    ]


def test_artifact_checksum_and_path_checks(tmp_path: Path) -> None:
    path, digest = store_artifact(tmp_path, "fraud", "3", b"weights")
    assert digest == hashlib.sha256(b"weights").hexdigest()
    (tmp_path / path).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(tmp_path, path, digest)
    with pytest.raises(ArtifactError, match="not usable"):
        store_artifact(tmp_path, "..", "3", b"x")
    outside = tmp_path.parent / "evil.bin"
    outside.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        load_artifact(tmp_path, str(outside), hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ArtifactError, match="No such file"):
        load_artifact(tmp_path, "fraud/9/model.bin", digest)


def test_sklearn_pipeline_learns_the_post_drift_concept() -> None:
    from driftline.retrain.sklearn_pipeline import NotEnoughDataError, fit, predict

    before, before_labels = simulate(3000, seed=1)
    after, after_labels = simulate(3000, seed=2, schedule=[Drift("concept", 0.0)])

    def rows(
        records: list[dict[str, object]], labels: list[dict[str, object]]
    ) -> list[dict[str, object]]:
        return [
            {"features": r["features"], "label": x["label"]}
            for r, x in zip(records, labels, strict=True)
        ]

    old = fit(rows(before, before_labels))
    new = fit(rows(after[:2000], after_labels[:2000]))
    truth = [x["label"] for x in after_labels[2000:]]
    features = [r["features"] for r in after[2000:]]

    def accuracy(model: object) -> float:
        predicted, _ = predict(model, features)
        return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)

    assert accuracy(old) < 0.2 < 0.85 < accuracy(new)
    with pytest.raises(NotEnoughDataError, match="need 200 rows"):
        fit(rows(after[:50], after_labels[:50]))
