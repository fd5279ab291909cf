"""The inference-side client against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftline.cli import main
from driftline.client import DeliveryError, LabelLogger, PredictionLogger
from driftline.config import ConfigError, load_config
from driftline.streams.reader import TopicReader

pytestmark = pytest.mark.service


def _topics(bootstrap: str, *names: str, partitions: int = 4) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it alive until the futures end
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for future in futures.values():
        future.result()


def test_keys_land_where_faust_and_java_put_them(kafka: Any, isolated_config: Any) -> None:
    """Our producer (librdkafka murmur2) and aiokafka, which Faust uses (Java's murmur2),
    put every key on the same partition, and a label on its prediction's partition."""
    config, _ = isolated_config
    suffix = uuid.uuid4().hex[:8]
    ours, theirs = f"client-{suffix}.ours", f"client-{suffix}.theirs"
    _topics(kafka.bootstrap_servers, ours, theirs, config.topics.labels)
    keys = [f"txn-{i}" for i in range(300)]
    with PredictionLogger(kafka.bootstrap_servers, ours) as logger:
        for key in keys:
            logger.log(
                prediction_id=key,
                model="m",
                model_version="1",
                features={"x": 1.0},
                prediction=1,
                timestamp=1.0,
            )
    with LabelLogger(kafka.bootstrap_servers, config.topics.labels) as labels:
        for key in keys:
            labels.log(prediction_id=key, label=0, timestamp=2.0)

    async def produce_with_aiokafka() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        await producer.start()
        try:
            for key in keys:
                await producer.send(theirs, key=key.encode(), value=b"{}")
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce_with_aiokafka())

    def placement(topic: str) -> dict[str, int]:
        reader = TopicReader(config, topic, start="beginning")
        try:
            return {m.key().decode(): m.partition() for m in reader.messages(timeout=20, idle=3)}
        finally:
            reader.close()

    assert placement(ours) == placement(theirs)
    assert placement(config.topics.labels) == placement(ours)
    assert len(set(placement(ours).values())) == 4


def test_batch_message_and_its_labels_share_a_partition(kafka: Any, isolated_config: Any) -> None:
    config, _ = isolated_config
    _topics(kafka.bootstrap_servers, config.topics.predictions, config.topics.labels)
    records = [
        {
            "prediction_id": f"b-{i}",
            "model": "m",
            "model_version": "1",
            "timestamp": 1.0,
            "features": {"x": float(i)},
            "prediction": 0,
        }
        for i in range(50)
    ]
    with PredictionLogger(kafka.bootstrap_servers, config.topics.predictions) as logger:
        logger.log_batch(records, key="request-7")
    with LabelLogger(kafka.bootstrap_servers, config.topics.labels) as labels:
        for record in records:
            labels.log(prediction_id=record["prediction_id"], label=1, key="request-7")
    reader = TopicReader(config, config.topics.predictions, start="beginning")
    (message,) = list(reader.messages(timeout=20, idle=3))
    reader.close()
    assert orjson.loads(message.value())["records"] == records
    reader = TopicReader(config, config.topics.labels, start="beginning")
    assert {m.partition() for m in reader.messages(timeout=20, idle=3)} == {message.partition()}
    reader.close()


def test_delivery_failures_reach_the_caller(kafka: Any) -> None:
    logger = PredictionLogger(
        kafka.bootstrap_servers,
        f"missing-{uuid.uuid4().hex[:8]}",
        settings={"message.timeout.ms": 3000},
    )
    logger.log(prediction_id="p1", model="m", model_version="1", features={}, prediction=1)
    with pytest.raises(DeliveryError) as error:
        logger.flush(timeout=20)
    assert error.value.failures[0][0] == "p1"
    assert "1 record(s) were not delivered" in str(error.value)


def test_loggers_follow_the_environment_like_the_worker(
    kafka: Any, isolated_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user who sets DRIFTLINE_TOPICS_PREDICTIONS (as documented) publishes into that topic
    with from_config() (or by handing the loaded config over)."""
    config, env = isolated_config
    _topics(kafka.bootstrap_servers, config.topics.predictions, config.topics.labels)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with (
        PredictionLogger.from_config() as configured,
        PredictionLogger(config=load_config()) as handed,
    ):
        assert handed.topic == configured.topic == config.topics.predictions
        for i, logger in enumerate((configured, handed)):
            logger.log(
                prediction_id=f"env-{i}",
                model="m",
                model_version="1",
                features={"x": 1.0},
                prediction=1,
            )
    with LabelLogger.from_config() as labels:
        assert labels.topic == config.topics.labels
        labels.log(prediction_id="env-0", label=1)

    def ids(topic: str) -> set[str]:
        reader = TopicReader(config, topic, start="beginning")
        try:
            return {orjson.loads(m.value())["prediction_id"] for m in reader.messages(20, idle=3)}
        finally:
            reader.close()

    assert ids(config.topics.predictions) == {"env-0", "env-1"}
    assert ids(config.topics.labels) == {"env-0"}


def test_the_constructor_reads_no_config_so_unrelated_env_does_not_break_it(
    kafka: Any, isolated_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inference service has its own DRIFTLINE_-looking variables (the reviewer's
    DRIFTLINE_APP_NAME): the explicit constructor must neither read nor validate them."""
    config, _ = isolated_config
    _topics(kafka.bootstrap_servers, config.topics.predictions)
    monkeypatch.setenv("DRIFTLINE_APP_NAME", "checkout")
    monkeypatch.setenv("DRIFTLINE_TOPICS_PREDICTIONS", "not.this.one")
    with PredictionLogger(kafka.bootstrap_servers, topic=config.topics.predictions) as logger:
        assert logger.topic == config.topics.predictions
        logger.log(prediction_id="x", model="m", model_version="1", features={}, prediction=1)
    assert LabelLogger(kafka.bootstrap_servers).topic == "driftline.labels"  # the default
    with pytest.raises(ConfigError, match="DRIFTLINE_APP_NAME"):
        PredictionLogger.from_config()  # the opt-in still validates the environment


def test_loggers_take_the_kafka_security_settings_of_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_USERNAME", "inference")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "hunter2")
    logger = LabelLogger.from_config(settings={"message.timeout.ms": 1000})
    assert logger.settings["security.protocol"] == "SASL_SSL"
    assert logger.settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert logger.settings["sasl.username"] == "inference"
    assert logger.settings["sasl.password"] == "***"  # never kept in clear on the object
    assert logger.settings["message.timeout.ms"] == 1000


# -- what the CLI says when Kafka is not as configured -----------------------------------


def test_missing_topic_is_one_line(
    kafka: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    topic = f"missing-{uuid.uuid4().hex[:8]}.alerts"
    monkeypatch.setenv("DRIFTLINE_TOPICS_ALERTS", topic)
    assert main(["alerts", "tail", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert f"topic {topic} does not exist" in err and "driftline topics create" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    assert topic not in admin.list_topics(timeout=10).topics  # the check did not create it


def test_worker_without_its_topics_says_how_to_create_them(
    kafka: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("DRIFTLINE_TOPICS_PREDICTIONS", f"{prefix}.predictions")
    monkeypatch.setenv("DRIFTLINE_TOPICS_LABELS", f"{prefix}.labels")
    assert main(["worker"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"driftline worker: topic {prefix}.predictions does not exist: "
        "run `driftline topics create`\n"
    )


def test_alerts_tail_prints_readable_lines(
    kafka: Any, isolated_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    config, env = isolated_config
    _topics(kafka.bootstrap_servers, config.topics.alerts, partitions=1)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    concept = {
        "schema_version": 1, "event_id": "c" * 32, "type": "concept_drift",
        "severity": "warning", "model": "fraud", "model_version": "3", "feature": None,
        "test": "adwin", "statistic": None, "p_value": None, "threshold": None,
        "window_start": None, "window_end": None, "detected_at": 1_767_225_900.25,
        "evidence": {"detector": "adwin", "stream": "error", "sample": 812,
                     "prediction_id": "p-812", "event_time": 1_767_225_890.0},
    }  # fmt: skip
    drift = {
        **concept, "event_id": "d" * 32, "type": "data_drift", "feature": "amount",
        "test": "psi", "statistic": 0.42, "p_value": None, "evidence": {},
        "window_start": 1_767_225_600.0, "window_end": 1_767_225_900.0,
    }  # fmt: skip
    with PredictionLogger(kafka.bootstrap_servers, config.topics.alerts) as producer:
        producer._send("fraud", concept)
        producer._send("fraud", drift)
    assert main(["alerts", "tail", "--from-beginning", "--timeout", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "2026-01-01T00:05:00Z WARNING  concept_drift fraud/3: adwin saw the error rate change"
        " at labelled prediction 812 (p-812, event time 2026-01-01T00:04:50Z) [" + "c" * 32 + "]",
        "2026-01-01T00:05:00Z WARNING  data_drift fraud/3 amount: psi=0.42, window"
        " 2026-01-01T00:00:00Z..2026-01-01T00:05:00Z [" + "d" * 32 + "]",
    ]


def test_notify_says_what_it_follows_at_start(
    kafka: Any,
    isolated_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, env = isolated_config
    _topics(kafka.bootstrap_servers, config.topics.alerts, config.topics.metrics)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIFTLINE_NOTIFICATIONS_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    with caplog.at_level("INFO", logger="driftline.notify"):
        assert main(["notify", "--timeout", "1"]) == 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "driftline.notify"]
    assert line == (
        f"notify: following {config.topics.alerts} and {config.topics.metrics} on "
        f"{kafka.bootstrap_servers}; channels: webhook"
    )
