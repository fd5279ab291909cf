"""Retraining against the real Kafka and PostgreSQL: the training sample consumer, cooldown and
the in-flight lock with two processes, a failing pipeline, and the A/B evaluator's promote,
rollback and guardrail paths (each test in a PostgreSQL schema and on topics of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.retrain.pipeline import load_artifact, load_model
from driftline.retrain.registry import Registry
from driftline.retrain.sample import TrainingSampleSink, read_stratified, sampled
from driftline.retrain.service import RetrainService, ensure_control_topic
from driftline.router import ModelRouter
from driftline.simulate import simulate
from driftline.sinks.store import PostgresStore, rows_from_message
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.service.test_retrain_helpers import (
    ROOT,
    add_sample,
    config_of,
    retrain_env,
    schema_store,
)

pytestmark = pytest.mark.service

POLICIES = """
policies:
  - name: manual
    triggers: manual
    cooldown_seconds: {cooldown}
  - name: degradation
    triggers: concept_drift,performance_drop
    cooldown_seconds: 3600
    min_new_labels: {min_labels}
"""


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    with schema_store(postgres_url) as store:
        yield store


def _setup(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    *,
    pipeline: str = "tests.service.test_retrain_helpers:sklearn_train",
    cooldown: float = 0,
    min_labels: int = 0,
    **overrides: str,
) -> tuple[Config, dict[str, str]]:
    _, base = isolated_config
    (tmp_path / "policies.yaml").write_text(
        POLICIES.format(cooldown=cooldown, min_labels=min_labels)
    )
    env = retrain_env(base, tmp_path, RETRAINING_PIPELINE=pipeline, **overrides)
    config = config_of(env)
    ensure_topics(config)
    ensure_control_topic(config)
    return config, env


def _champion(
    service: RetrainService, store: PostgresStore, model: str, start_time: float | None = None
) -> str:
    """Train a first version on pre-drift data: it becomes the champion."""
    add_sample(store, 1500, model=model, version="1", seed=1, start_time=start_time)
    outcome = service.manual(model, "initial")
    assert outcome.status == "succeeded" and outcome.next_step == "champion", outcome
    assert outcome.version is not None
    return outcome.version


def test_training_sample_consumer_keeps_hash_chosen_predictions_and_fills_labels(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    config, _ = _setup(
        isolated_config,
        tmp_path,
        RETRAINING_SAMPLE_RATE="0.5",
        RETRAINING_SAMPLE_MAX_ROWS_PER_VERSION="400",
    )
    records, labels = simulate(1000, seed=3, model="fraud", model_version="1")
    producer = Producer(config.kafka.confluent_settings())
    # Half the labels arrive before their predictions, and one batch message, one bad message.
    for label in labels[:500]:
        producer.produce(
            config.topics.labels, key=label["prediction_id"], value=orjson.dumps(label)
        )
    producer.flush(30)
    for record in records[:900]:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    producer.produce(
        config.topics.predictions, key="b", value=orjson.dumps({"records": records[900:]})
    )
    producer.produce(config.topics.predictions, key="x", value=b"not json")
    for label in labels[500:]:
        producer.produce(
            config.topics.labels, key=label["prediction_id"], value=orjson.dumps(label)
        )
    producer.flush(30)

    sink = TrainingSampleSink(config, store)
    sink.start()
    try:
        deadline = time.monotonic() + 60
        handled = 0
        while handled < 1902 and time.monotonic() < deadline:
            handled += sink.step()  # messages written and committed
    finally:
        sink.close()
    expected = {r["prediction_id"] for r in records if sampled(r["prediction_id"], 0.5)}
    assert 400 < len(expected) < 600
    with store.pool.connection() as conn:
        rows = conn.execute(
            "SELECT prediction_id, label IS NOT NULL FROM training_samples"
        ).fetchall()
        pending = conn.execute("SELECT count(*) FROM training_pending_labels").fetchone()
    kept = {r[0] for r in rows}
    # Bounded: the newest 400 of the hash-chosen predictions, every one labelled.
    newest = sorted(expected, key=lambda pid: int(pid.rsplit("-", 1)[1]))[-400:]
    assert kept == set(newest)
    assert all(labelled for _, labelled in rows)
    # Labels whose prediction was trimmed before they came wait for the time-to-live.
    assert pending is not None and pending[0] <= len(expected) - 400
    stratified = read_stratified(store, "fraud", time_buckets=4, per_stratum=20)
    with store.pool.connection() as conn:
        positives = {
            r[0]
            for r in conn.execute(
                "SELECT prediction_id FROM training_samples WHERE label = '1'::jsonb"
            ).fetchall()
        }
    # At most 20 per (time bucket, label): the majority class is capped at 4 x 20, the rare
    # class (fewer than 20 per bucket) is kept whole.
    assert 0 < len(positives) < 80
    assert {r["prediction_id"] for r in stratified if r["label"] == 1} == positives
    assert sum(r["label"] == 0 for r in stratified) <= 80


def _run_manual(
    env: dict[str, str], schema: str, model: str, release: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftline",
            "retrain",
            "--model",
            model,
            "--reason",
            "test",
            "--schema",
            schema,
        ],
        env={**os.environ, **env, "RETRAIN_TEST_RELEASE": str(release)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def test_lock_and_cooldown_hold_with_two_processes(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    _, env = _setup(
        isolated_config,
        tmp_path,
        pipeline="tests.service.test_retrain_helpers:slow_train",
        cooldown=3600,
    )
    add_sample(store, 1500, model="credit", version="1", seed=2)
    assert store.schema is not None
    release = tmp_path / "release"
    # Two processes at once: whichever takes the lock trains, and its pipeline waits until the
    # other process has finished (suppressed by the lock, the only way it can end).
    first = [_run_manual(env, store.schema, "credit", release) for _ in range(2)]
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in first):
        assert time.monotonic() < deadline, "neither process finished"
        time.sleep(0.1)
    loser = next(p for p in first if p.poll() is not None)
    assert loser.returncode == 1
    assert "suppressed: lock" in (loser.communicate()[0] or b"").decode()
    release.touch()
    winner = next(p for p in first if p is not loser)
    out = winner.communicate(timeout=120)[0].decode()
    assert winner.returncode == 0 and "trained credit@2" in out, out
    # Two more at once, after it: neither trains. The policy's cooldown suppresses them; one of
    # the two may instead find the lock held by the other's evaluation (the rule checks the
    # lock first: `policy.evaluate`), so at least one names the cooldown.
    second = [_run_manual(env, store.schema, "credit", release) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in second]
    assert all("suppressed: " in out for out in outputs), outputs
    assert any("suppressed: cooldown" in out for out in outputs), outputs
    registry = Registry(store)
    evaluations = registry.evaluations("credit")
    reasons = sorted(e["reason"].split(":")[0] for e in evaluations)
    assert reasons in (
        ["cooldown", "cooldown", "lock", "manual"],
        ["cooldown", "lock", "lock", "manual"],
    )
    assert [e["fired"] for e in evaluations].count(True) == 1
    assert len(registry.runs("credit")) == 1
    assert [v["status"] for v in registry.versions("credit")] == ["champion"]


def test_failing_pipeline_records_alerts_and_keeps_the_champion(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    config, _ = _setup(isolated_config, tmp_path)
    service = RetrainService(config, store)
    champion = _champion(service, store, "fraud")
    reader = TopicReader(config, config.topics.alerts)
    try:
        failing = config_of(
            {
                **retrain_env({}, tmp_path),
                **_env_of(config),
                "DRIFTLINE_RETRAINING_PIPELINE": "tests.service.test_retrain_helpers:failing_train",
            }
        )
        outcome = RetrainService(failing, store).manual("fraud", "nightly")
        assert outcome.fired and outcome.status == "failed"
        assert outcome.error == "RuntimeError: feature store unreachable"
        events = [orjson.loads(m.value() or b"{}") for m in reader.messages(timeout=20, idle=1.5)]
    finally:
        reader.close()
    failed = [e for e in events if e["type"] == "retraining_failed"]
    assert len(failed) == 1 and failed[0]["severity"] == "critical"
    rows_from_message("alerts", orjson.dumps(failed[0]))  # the PostgreSQL sink accepts it
    assert failed[0]["evidence"]["error"] == "RuntimeError: feature store unreachable"
    registry = Registry(store)
    run = registry.runs("fraud")[0]
    assert run["status"] == "failed" and "feature store unreachable" in run["error"]
    assert registry.with_status("fraud", "champion")["model_version"] == champion  # type: ignore[index]
    assert len(registry.versions("fraud")) == 1


def _env_of(config: Config) -> dict[str, str]:
    """The settings a test changed, back as variables (to derive a second config)."""
    t = config.topics
    return {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
        "DRIFTLINE_TOPICS_PREDICTIONS": t.predictions,
        "DRIFTLINE_TOPICS_LABELS": t.labels,
        "DRIFTLINE_TOPICS_ALERTS": t.alerts,
        "DRIFTLINE_TOPICS_DLQ": t.dlq,
        "DRIFTLINE_TOPICS_METRICS": t.metrics,
        "DRIFTLINE_WORKER_APP_ID": config.worker.app_id,
        "DRIFTLINE_RETRAINING_CONTROL_TOPIC": config.retraining.control_topic,
        "DRIFTLINE_RETRAINING_ARTIFACT_DIR": config.retraining.artifact_dir,
        "DRIFTLINE_RETRAINING_POLICIES_FILE": config.retraining.policies_file,
        "DRIFTLINE_WORKER_REFERENCE_DIR": config.worker.reference_dir,
    }


def _challenger(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    store: PostgresStore,
    model: str,
    **overrides: str,
) -> tuple[RetrainService, Config, str, str]:
    """A champion trained before a concept drift, then a retraining on post-drift data: the
    candidate beats the champion on the held-out slice and becomes challenger."""
    config, _ = _setup(
        isolated_config, tmp_path, RETRAINING_AB_MIN_SAMPLES_PER_ARM="200", **overrides
    )
    service = RetrainService(config, store)
    # Both phases in the past: the A/B arms count by event time from the test's start, so the
    # rows the challenger was trained on must not count as live traffic of the champion.
    champion = _champion(service, store, model, start_time=time.time() - 30_000)
    onset = time.time() - 15_000  # post-drift rows after every pre-drift row
    add_sample(store, 1500, model=model, version=champion, seed=5, concept=True, start_time=onset)
    outcome = service.trigger(
        model,
        next(p for p in service.policies if p.name == "degradation"),
        "concept_drift",
        reason="concept_drift event",
        onset=onset,
    )
    assert outcome.status == "succeeded" and outcome.next_step == "challenger", outcome
    assert outcome.version is not None
    return service, config, champion, outcome.version


def test_challenger_gets_traffic_then_a_worse_one_is_rolled_back(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    service, config, champion, challenger = _challenger(isolated_config, tmp_path, store, "fraud")
    registry = Registry(store)
    row = registry.version("fraud", challenger)
    assert row is not None and row["status"] == "challenger" and row["parent_version"] == champion
    assert row["metrics"]["accuracy"] > row["metrics"]["champion_holdout_accuracy"] + 0.5
    # The artifact loads only with its checksum; the profile was written for the workers.
    model = load_model(Path(config.retraining.artifact_dir), row)
    assert hasattr(model, "predict_proba")
    with pytest.raises(Exception, match="does not match"):
        load_artifact(Path(config.retraining.artifact_dir), row["artifact_path"], "0" * 64)
    assert (Path(config.worker.reference_dir) / f"fraud@{challenger}.json").exists()
    # The router follows the control topic: about 20 % of ids go to the challenger.
    with ModelRouter(config.kafka.bootstrap_servers, config.retraining.control_topic) as router:
        decision = router.wait_for("fraud", lambda d: d.challenger == challenger, timeout=30)
        assert decision is not None and decision.challenger_share == 0.2
        share = sum(router.route("fraud", f"q{i}") == challenger for i in range(5000)) / 5000
        assert 0.18 < share < 0.22
        # Live outcomes: the challenger is worse than the champion -> rollback.
        add_sample(store, 2000, model="fraud", version=champion, seed=7, accuracy=0.92)
        add_sample(store, 500, model="fraud", version=challenger, seed=8, accuracy=0.80)
        results = service.evaluate_tests()
        assert results[0][1] == "rollback", results
        after = router.wait_for("fraud", lambda d: d.challenger is None, timeout=30)
        assert after is not None and after.champion == champion
    assert registry.version("fraud", challenger)["status"] == "rolled_back"  # type: ignore[index]
    test = registry.tests("fraud")[0]
    assert test["status"] == "rolled_back" and test["evidence"]["difference"] < 0


def test_guardrail_breach_rolls_back_at_once(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    service, config, champion, challenger = _challenger(isolated_config, tmp_path, store, "fraud")
    add_sample(store, 1000, model="fraud", version=champion, seed=7, latency_ms=20.0)
    # 120 predictions, more accurate, but slow: far below min_samples_per_arm labels.
    add_sample(store, 120, model="fraud", version=challenger, seed=8, accuracy=1.0, latency_ms=90.0)
    reader = TopicReader(config, config.topics.alerts)
    try:
        results = service.evaluate_tests()
        events = [orjson.loads(m.value() or b"{}") for m in reader.messages(timeout=20, idle=1.5)]
    finally:
        reader.close()
    assert results[0][1] == "rollback" and "guardrail: latency p99" in results[0][2]
    decision = [e for e in events if e["type"] == "ab_decision"]
    assert decision and decision[0]["severity"] == "critical"
    rows_from_message("alerts", orjson.dumps(decision[0]))  # the PostgreSQL sink accepts it
    assert decision[0]["evidence"]["decision"] == "rollback"


def test_better_challenger_is_promoted_and_ab_commands_show_it(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from driftline.cli import main

    service, config, champion, challenger = _challenger(isolated_config, tmp_path, store, "fraud")
    add_sample(store, 2000, model="fraud", version=champion, seed=7, accuracy=0.88)
    add_sample(store, 600, model="fraud", version=challenger, seed=8, accuracy=0.96)
    for key, value in _env_of(config).items():
        monkeypatch.setenv(key, value)
    schema = ["--schema", str(store.schema)]
    assert main(["ab", "status", "--model", "fraud", *schema]) == 0
    out = capsys.readouterr().out
    assert "running" in out and f"challenger {challenger}" in out
    from driftline.sinks.prometheus import REGISTRY

    def decisions() -> float:
        value = REGISTRY.get_sample_value(
            "model_ab_decisions_total", {"model_name": "fraud", "decision": "promote"}
        )
        return value or 0.0

    before = decisions()
    results = service.evaluate_tests()
    assert results[0][1] == "promote", results
    assert decisions() == before + 1
    assert REGISTRY.get_sample_value("model_ab_traffic_share", {"model_name": "fraud"}) == 0.0
    registry = Registry(store)
    assert registry.with_status("fraud", "champion")["model_version"] == challenger  # type: ignore[index]
    assert registry.version("fraud", champion)["status"] == "retired"  # type: ignore[index]
    assert main(["retrain", "history", "--model", "fraud", *schema]) == 0
    assert "challenger -> champion" in capsys.readouterr().out
    assert main(["ab", "stop", "--model", "fraud", *schema]) == 2
    assert capsys.readouterr().err.strip() == (
        "driftline ab stop: model 'fraud' has no running A/B test"
    )
    assert main(["ab", "status", "--model", "nosuch", *schema]) == 2
    assert capsys.readouterr().err.strip() == (
        "driftline ab status: model 'nosuch' is not in the registry"
    )


def test_schedule_fires_when_due_and_data_drift_waits_for_labels(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, store: PostgresStore
) -> None:
    config, _ = _setup(isolated_config, tmp_path)
    (tmp_path / "policies.yaml").write_text(
        "policies:\n"
        "  - name: weekly\n    triggers: schedule\n    every_days: 7\n    cooldown_seconds: 0\n"
        "  - name: drift\n    triggers: data_drift\n    min_new_labels: 5000\n"
    )
    service = RetrainService(config, store)
    add_sample(store, 600, model="fraud", version="1", seed=4)
    first = service.check_schedules(["fraud"])
    assert [(o.fired, o.next_step) for o in first] == [(True, "champion")]
    assert service.check_schedules(["fraud"]) == []  # retrained just now: not due for 7 days
    event = {"type": "data_drift", "model": "fraud", "event_id": "e1", "window_start": 0.0}
    (outcome,) = service.handle_event(event)
    assert not outcome.fired and outcome.reason.startswith("too few labels: 600")
    # Kept pending and looked at again (without recording each look) until labels arrive.
    assert [o.fired for o in service.retry_pending()] == [False]
    reasons = [e["reason"] for e in Registry(store).evaluations("fraud")]
    assert reasons == [
        "too few labels: 600 new labelled records < 5000",
        "schedule: policy weekly fired",
    ]
