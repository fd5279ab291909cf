"""Fail fast, and say why, when driftline cannot connect to Kafka securely.

librdkafka retries a refused login or an untrusted certificate forever and only logs it; a
process would then sit silent. `check_kafka` connects once at start and turns the first such
error into one clear `KafkaConnectionError`.
"""

from __future__ import annotations

import re
import time

from confluent_kafka import KafkaError, Producer

from driftline.config import ConfigError, KafkaConfig

__all__ = ["KafkaConnectionError", "check_kafka"]


class KafkaConnectionError(ConfigError):
    """driftline cannot talk to the Kafka cluster; the message names the settings to check (a
    `ConfigError`, so the command line prints it in one line, without a traceback)."""


def check_kafka(kafka: KafkaConfig, timeout: float = 15.0) -> None:
    """Connect to the brokers and fetch metadata; raise `KafkaConnectionError` at once on an
    authentication or TLS failure, or when no broker answered within `timeout` seconds."""
    errors: list[KafkaError] = []
    producer = Producer({**kafka.confluent_settings(), "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        producer.poll(0.1)
        for error in errors:
            problem = _explain(error, kafka)
            if problem:
                raise KafkaConnectionError(problem)
        try:
            producer.list_topics(timeout=0.5)
            return
        except Exception:  # not there yet: keep polling for the reason
            continue
    reason = _without_state(errors[-1].str()) if errors else "no answer"
    raise KafkaConnectionError(
        f"cannot reach Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}) within "
        f"{timeout:g} s: {reason}; check kafka.bootstrap_servers "
        "(DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS) and that the broker is running"
    )


def _without_state(text: str) -> str:
    # librdkafka: "127.0.0.1:9999/bootstrap: Connect to ipv4#127.0.0.1:9999 failed: Connection
    # refused (after 0ms in state CONNECT)" -> "Connect to ... failed: Connection refused"
    text = re.sub(r"\s*\(after \d+ms in state \w+\)", "", text)
    return text.split(": ", 1)[1] if "/bootstrap: " in text else text


def _explain(error: KafkaError, kafka: KafkaConfig) -> str | None:
    text = error.str()
    where = kafka.bootstrap_servers
    if error.code() == KafkaError._AUTHENTICATION or "authentication" in text.lower():
        return (
            f"Kafka at {where} refused the login of '{kafka.sasl_username}' "
            f"({kafka.sasl_mechanism}): check kafka.sasl_username and kafka.sasl_password"
        )
    if "certificate verify failed" in text:
        return (
            f"the certificate of the Kafka broker at {where} is not trusted: set "
            "kafka.ssl_cafile to the CA that signed it"
        )
    if "alert" in text and ("certificate" in text or "unknown ca" in text):
        return (
            f"the Kafka broker at {where} rejected the client certificate: check "
            "kafka.ssl_certfile and kafka.ssl_keyfile (a certificate the broker's CA signed)"
        )
    if error.code() == KafkaError._SSL:
        return f"TLS with the Kafka broker at {where} failed: {text}"
    return None
