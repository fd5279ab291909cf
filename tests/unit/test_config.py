from __future__ import annotations

from pathlib import Path

import pytest

from driftline.config import ConfigError, Secret, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "driftline.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_matches_defaults() -> None:
    shipped = load_config(ROOT / "config" / "driftline.yaml", environ={})
    assert shipped == load_config(None, environ={})


def test_environment_overrides_every_connection_setting(tmp_path: Path) -> None:
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093",
        "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTLINE_KAFKA_SASL_USERNAME": "svc",
        "DRIFTLINE_KAFKA_SASL_PASSWORD": "hunter2",
        "DRIFTLINE_POSTGRES_URL": "postgresql://u:pw@db:5432/x",
        "DRIFTLINE_TOPICS_PREDICTIONS": "ml.preds",
        "DRIFTLINE_WORKER_METRICS_PORT": "9200",
        "DRIFTLINE_WORKER_BATCH_TIMEOUT_SECONDS": "0.25",
    }
    config = load_config(write(tmp_path, "kafka:\n  bootstrap_servers: ignored:1\n"), environ=env)
    assert config.kafka.bootstrap_servers == "broker-1:9093,broker-2:9093"
    assert config.kafka.confluent_settings()["sasl.password"] == "hunter2"
    assert config.kafka.confluent_settings()["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config.postgres.url.reveal() == "postgresql://u:pw@db:5432/x"
    assert config.topics.predictions == "ml.preds"
    assert config.worker.metrics_port == 9200
    assert config.worker.batch_timeout_seconds == 0.25


def test_secrets_never_show_in_repr() -> None:
    config = load_config(
        None,
        environ={
            "DRIFTLINE_KAFKA_SASL_PASSWORD": "hunter2",
            "DRIFTLINE_POSTGRES_URL": "postgresql://a:b@c/d",
        },
    )
    text = repr(config) + str(config)
    assert "hunter2" not in text and "a:b@" not in text
    assert repr(Secret("x")) == "Secret('***')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kafka:\n  bootstrap_server: x\n",
            "driftline.yaml: kafka.bootstrap_server: unknown key, did you mean bootstrap_servers?",
        ),
        (
            "kafkaa: {}\n",
            "driftline.yaml: kafkaa: unknown key, did you mean kafka? (allowed: kafka,",
        ),
        (
            "topics:\n  partitions: high\n",
            "topics.partitions: expected an integer >= 1, got 'high'",
        ),
        ("topics:\n  partitions: 0\n", "topics.partitions: expected an integer >= 1, got 0"),
        (
            "kafka:\n  security_protocol: TLS\n",
            "kafka.security_protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'",
        ),
        ("postgres:\n  url:\n", "postgres.url: a value is required"),
        (
            "worker:\n  batch_timeout_seconds: fast\n",
            "worker.batch_timeout_seconds: expected a number > 0, got 'fast'",
        ),
        (
            "worker:\n  session_timeout_seconds: 2\n",
            "worker.session_timeout_seconds: expected a number >= 6, got 2",
        ),
        ("worker: 3\n", "worker: expected a mapping, got 3"),
        ("- a list\n", "expected a mapping at the top level"),
        ("kafka: [\n", "is not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    assert message in str(error.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"worker.metrics_port \(from DRIFTLINE_WORKER_METRICS_PORT\)"
    ):
        load_config(None, environ={"DRIFTLINE_WORKER_METRICS_PORT": "abc"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})
