"""Read-only retrain commands do not migrate; routing changes are confirmed by the broker or
republished; `retrain serve` does not commit past an alert it could not handle. On the real
Kafka and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from driftline.cli import main
from driftline.config import Config
from driftline.retrain.policy import Policy
from driftline.retrain.registry import Registry
from driftline.retrain.service import RetrainService, handle_alert
from driftline.sinks import prometheus as metrics
from driftline.sinks.store import PostgresStore
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.service.test_retrain_helpers import add_sample, config_of, retrain_env, schema_store

pytestmark = pytest.mark.service


@pytest.fixture
def empty_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A schema with no driftline tables (as before `driftline db upgrade`)."""
    store = PostgresStore(postgres_url, schema=f"rt_empty_{uuid.uuid4().hex[:8]}")
    try:
        store.create_schema()
        yield postgres_url, str(store.schema)
    finally:
        store.drop_schema()
        store.close()


def _tables(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "argv",
    [
        ["retrain", "history", "--model", "fraud"],
        ["ab", "status", "--model", "fraud"],
        ["ab", "stop", "--model", "fraud"],
    ],
    ids=["retrain-history", "ab-status", "ab-stop"],
)
def test_read_only_commands_never_migrate_and_say_how_to_create_the_tables(
    argv: list[str],
    empty_schema: tuple[str, str],
    isolated_config: tuple[Any, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, schema = empty_schema
    _, env = isolated_config
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    code = main([*argv, "--schema", schema])
    err = capsys.readouterr().err
    assert code != 0
    assert "run `driftline db upgrade` first" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _tables(url, schema) == []  # no DDL ran: not even schema_migrations


# -- routing changes are confirmed, or republished from the registry --------------------------


def _retrain_config(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path
) -> tuple[Config, dict[str, str]]:
    _, base = isolated_config
    (tmp_path / "policies.yaml").write_text("policies: []\n")
    env = retrain_env(base, tmp_path)
    config = config_of(env)
    ensure_topics(config)
    return config, env


SET = AlterConfigOpType.SET


def _routing(config: Config) -> list[dict[str, Any]]:
    reader = TopicReader(config, config.retraining.control_topic, start="beginning")
    try:
        return [orjson.loads(m.value()) for m in reader.messages(20, idle=3)]
    finally:
        reader.close()


def test_ab_stop_says_when_the_broker_refuses_the_routing_and_serve_republishes_it(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, env = _retrain_config(isolated_config, tmp_path)
    admin = AdminClient(config.kafka.confluent_settings())
    topic = config.retraining.control_topic
    # A control topic whose broker refuses the record (too large): a delivery error.
    small = {"cleanup.policy": "compact", "max.message.bytes": "64"}
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=small)]).values():
        future.result()
    with schema_store(postgres_url) as store:
        registry = Registry(store)
        registry.register(model="fraud", version="1", status="champion")
        registry.register(model="fraud", version="2", status="challenger")
        registry.start_test(test_id="t-1", model="fraud", champion="1", challenger="2", share=0.2)
        for name, value in {**env, "DRIFTLINE_POSTGRES_URL": postgres_url}.items():
            monkeypatch.setenv(name, value)
        code = main(["ab", "stop", "--model", "fraud", "--schema", str(store.schema)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
        assert "the broker did not confirm the routing of fraud" in err
        assert "republishes" in err
        assert registry.running_tests() == []  # the registry says stopped
        assert _routing(config) == []  # and no router heard of it

        # The broker accepts again: `retrain serve`'s tick republishes the registry's routing.
        entry = ConfigEntry("max.message.bytes", "1048588", incremental_operation=SET)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        service = RetrainService(config, store)
        try:
            assert service.republish_routing() == 1
        finally:
            service.close()
    routing = _routing(config)
    assert [(r["model"], r["champion"], r["challenger"]) for r in routing] == [("fraud", "1", None)]


# -- retrain serve does not commit past an alert it could not handle ---------------------------


def test_an_alert_that_fails_is_retried_and_not_committed_until_stopped(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL unreachable while an alert is handled (the store's pool closed here, as in an
    outage): before, the alert was committed and its trigger lost; now it is retried with
    backoff, counted, and `handle_alert` reports it not done, so serve does not commit it."""
    config, _ = _retrain_config(isolated_config, tmp_path)
    with schema_store(postgres_url) as store:
        policies = (Policy(name="drift", triggers="concept_drift", cooldown_seconds=0),)
        outage = PostgresStore(postgres_url, schema=store.schema)
        service = RetrainService(config, outage, policies=policies)
        outage.close()  # every query now fails
        event = {"event_id": "e" * 32, "type": "concept_drift", "model": "fraud"}
        stop = threading.Event()
        timer = threading.Timer(2.5, stop.set)
        before = _failures()
        timer.start()
        try:
            done = handle_alert(service, orjson.dumps(event), stop, first_delay=0.2)
        finally:
            timer.cancel()
            service.close()
    assert done is False  # not committed: redelivered after the restart
    assert _failures() - before >= 3  # retried with backoff, each attempt counted
    assert handle_alert(service, b"not json", threading.Event()) is True  # malformed: skipped


def _failures() -> float:
    value = metrics.REGISTRY.get_sample_value("driftline_retrain_alert_failures_total")
    return float(value or 0.0)


# -- A/B arms by event time -------------------------------------------------------------------


def test_ab_arms_count_predictions_by_event_time_not_by_insertion_time(postgres_url: str) -> None:
    """A training-sample sink that lags (or replays after a restart) inserts predictions served
    before the test after it started: they are not the test's traffic."""
    with schema_store(postgres_url) as store:
        registry = Registry(store)
        registry.register(model="fraud", version="1", status="champion")
        registry.register(model="fraud", version="2", status="challenger")
        registry.start_test(test_id="t-1", model="fraud", champion="1", challenger="2", share=0.2)
        started = registry.running_tests()[0]["started_at"]
        add_sample(store, 300, model="fraud", version="1", start_time=time.time() - 50_000)
        assert registry.arm_stats("fraud", "1", started).n == 0  # served before the test
        add_sample(store, 200, model="fraud", version="1", start_time=time.time() + 1)
        assert registry.arm_stats("fraud", "1", started).n == 200
