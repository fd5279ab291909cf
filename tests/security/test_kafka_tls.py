"""Kafka over SASL_SSL (SCRAM-SHA-512) and mutual TLS, on a private broker of this session
(`private_kafka`: deploy/local/kafka.sh with a TLS+SCRAM listener and an mTLS listener, users
created at format time, certificates from a throwaway CA). The client library, a confluent
consumer, the worker process and `driftline notify` run against it; a wrong password or an
untrusted certificate fails within seconds with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer

from driftline.client import LabelLogger, PredictionLogger
from driftline.config import Config, load_config
from driftline.security import KafkaConnectionError, check_kafka
from driftline.streams.topics import ensure_topics
from tests.conftest import TlsFiles

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


def topics_env(prefix: str) -> dict[str, str]:
    names = ("predictions", "labels", "alerts", "dlq", "metrics")
    env = {f"DRIFTLINE_TOPICS_{n.upper()}": f"{prefix}.{n}" for n in names}
    return env | {"DRIFTLINE_WORKER_APP_ID": prefix}


def scram_env(
    broker: Any, tls: TlsFiles, tmp_path: Path, password: str | None = None
) -> dict[str, str]:
    """SASL_SSL settings; the password read from a file (`*_file`), as a mounted secret."""
    secret = tmp_path / ("kafka-password" if password is None else "kafka-password-given")
    secret.write_text((password or broker.scram_users["driftline"]) + "\n")
    return {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.sasl_bootstrap,
        "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTLINE_KAFKA_SASL_USERNAME": "driftline",
        "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "DRIFTLINE_KAFKA_SSL_CAFILE": str(tls.ca),
    }


def mtls_env(
    broker: Any, tls: TlsFiles, cert: Path | None = None, key: Path | None = None
) -> dict[str, str]:
    return {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.mtls_bootstrap,
        "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "DRIFTLINE_KAFKA_SSL_CAFILE": str(tls.ca),
        "DRIFTLINE_KAFKA_SSL_CERTFILE": str(cert or tls.client_cert),
        "DRIFTLINE_KAFKA_SSL_KEYFILE": str(key or tls.client_key),
    }


def config_of(env: dict[str, str]) -> Config:
    return load_config(ROOT / "config" / "driftline.yaml", environ=env)


def read_all(config: Config, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_client_logs_over_scram_and_a_consumer_reads_over_mtls(
    private_kafka: Any, tls_files: TlsFiles, tmp_path: Path
) -> None:
    prefix = f"sec-{uuid.uuid4().hex[:8]}"
    scram = config_of(scram_env(private_kafka, tls_files, tmp_path) | topics_env(prefix))
    mtls = config_of(mtls_env(private_kafka, tls_files) | topics_env(prefix))
    check_kafka(scram.kafka)
    check_kafka(mtls.kafka)
    assert ensure_topics(scram)  # the admin client over SASL_SSL too
    settings = scram.kafka.confluent_settings()
    with PredictionLogger(
        scram.kafka.bootstrap_servers, scram.topics.predictions, settings=settings
    ) as logger:
        for i in range(200):
            logger.log(
                prediction_id=f"p{i}", model="fraud", model_version="1",
                features={"amount": float(i)}, prediction=i % 2, score=0.5,
            )  # fmt: skip
    with LabelLogger(
        scram.kafka.bootstrap_servers, scram.topics.labels, settings=settings
    ) as labels:
        labels.log(prediction_id="p1", label=1)
    predictions = read_all(mtls, mtls.topics.predictions, 200)
    assert sorted(m.key() for m in predictions) == sorted(f"p{i}".encode() for i in range(200))
    assert orjson.loads(read_all(mtls, mtls.topics.labels, 1)[0].value())["label"] == 1


def test_wrong_password_and_untrusted_certificates_fail_fast(
    private_kafka: Any, tls_files: TlsFiles, tmp_path: Path
) -> None:
    cases = [
        (scram_env(private_kafka, tls_files, tmp_path, password="wrong"), "refused the login of 'driftline'.*kafka.sasl_password"),
        # a broker certificate signed by a CA we do not trust
        (scram_env(private_kafka, tls_files, tmp_path) | {"DRIFTLINE_KAFKA_SSL_CAFILE": str(tls_files.rogue_ca)}, "not trusted.*kafka.ssl_cafile"),
        # a client certificate the broker's CA did not sign
        (mtls_env(private_kafka, tls_files, tls_files.rogue_client_cert, tls_files.rogue_client_key), "rejected the client certificate.*kafka.ssl_certfile"),
        # no client certificate at all on the mTLS listener
        ({k: v for k, v in mtls_env(private_kafka, tls_files).items() if "CERTFILE" not in k and "KEYFILE" not in k}, "rejected the client certificate"),
    ]  # fmt: skip
    for env, message in cases:
        started = time.monotonic()
        with pytest.raises(KafkaConnectionError, match=message):
            check_kafka(config_of(env).kafka, timeout=20)
        assert time.monotonic() - started < 10, message
    # The command line: one line naming the setting, no traceback, non-zero exit, in seconds.
    env = scram_env(private_kafka, tls_files, tmp_path, password="wrong") | topics_env("sec-cli")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "driftline", "notify", "--timeout", "5"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "refused the login of 'driftline'" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "wrong" not in result.stderr  # the password is never echoed
    print(f"driftline notify with a wrong password exited in {elapsed:.1f} s")


def test_python_clients_use_ssl_context_for_mutual_tls(
    private_kafka: Any, tls_files: TlsFiles
) -> None:
    """`KafkaConfig.ssl_context()` is what aiokafka (the Faust worker's transport) needs for mTLS:
    with it a producer is accepted on the mTLS listener; without the client certificate it is
    not."""
    import asyncio
    import ssl

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError as AIOKafkaConnectionError

    prefix = f"sec-{uuid.uuid4().hex[:8]}"
    mtls = config_of(mtls_env(private_kafka, tls_files) | topics_env(prefix))
    ensure_topics(mtls)

    async def send(context: ssl.SSLContext | None) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=mtls.kafka.bootstrap_servers,
            security_protocol="SSL",
            ssl_context=context,
            request_timeout_ms=5000,
        )
        try:
            await producer.start()
            await producer.send_and_wait(mtls.topics.predictions, b"{}", key=b"k")
        finally:
            await producer.stop()

    asyncio.run(send(mtls.kafka.ssl_context()))
    assert read_all(mtls, mtls.topics.predictions, 1)[0].key() == b"k"
    without_certificate = ssl.create_default_context(cafile=str(tls_files.ca))
    with pytest.raises((AIOKafkaConnectionError, ssl.SSLError, ConnectionError, OSError)):
        asyncio.run(asyncio.wait_for(send(without_certificate), 20))
