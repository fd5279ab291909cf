"""Secrets from files, TLS settings and webhook verification: no services needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.config import ConfigError, KafkaConfig, load_config
from driftline.sinks.notify import WebhookVerificationError, WebhookVerifier, sign_webhook


def test_every_secret_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    (tmp_path / "c.yaml").write_text(f"notifications:\n  smtp_password_file: {secret}\n")
    config = load_config(
        tmp_path / "c.yaml",
        environ={
            "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "DRIFTLINE_POSTGRES_URL_FILE": str(secret),
            "DRIFTLINE_NOTIFICATIONS_PAGERDUTY_ROUTING_KEY_FILE": str(secret),
        },
    )
    assert config.kafka.sasl_password and config.kafka.sasl_password.reveal() == "s3cret-value"
    assert config.postgres.url.reveal() == "s3cret-value"
    assert config.notifications.smtp_password
    assert config.notifications.smtp_password.reveal() == "s3cret-value"
    assert "s3cret" not in repr(config)
    with pytest.raises(ConfigError, match=r"kafka\.sasl_password_file .*cannot read"):
        load_config(environ={"DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nope")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(environ={"DRIFTLINE_POSTGRES_URL_FILE": str(tmp_path / "empty")})
    with pytest.raises(
        ConfigError, match=r"kafka\.ssl_cafile_file: unknown key, did you mean ssl_cafile\?"
    ):
        (tmp_path / "d.yaml").write_text("kafka:\n  ssl_cafile_file: x\n")  # not a secret
        load_config(tmp_path / "d.yaml")


def test_kafka_tls_settings_and_their_validation(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("")
    kafka = KafkaConfig(
        security_protocol="SSL", ssl_cafile=str(pem), ssl_certfile=str(pem), ssl_keyfile=str(pem)
    )
    settings = kafka.confluent_settings()
    assert settings["ssl.certificate.location"] == str(pem)
    assert settings["ssl.key.location"] == str(pem)
    with pytest.raises(ConfigError, match=r"kafka\.ssl_certfile: file .* does not exist"):
        KafkaConfig(ssl_certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"kafka\.ssl_keyfile: set kafka\.ssl_certfile"):
        KafkaConfig(ssl_keyfile=str(pem))
    with pytest.raises(ConfigError, match=r"sasl_username and kafka\.sasl_password: required"):
        KafkaConfig(security_protocol="SASL_SSL")


def test_postgres_sslmode_defaults(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    url = "postgresql://u:p@db:5432/x"
    plain = load_config(environ={"DRIFTLINE_POSTGRES_URL": url}).postgres
    assert plain.dsn() == url  # libpq's default applies
    verified = load_config(
        environ={"DRIFTLINE_POSTGRES_URL": url, "DRIFTLINE_POSTGRES_SSLROOTCERT": str(ca)}
    ).postgres
    assert "sslmode=verify-full" in verified.dsn() and f"sslrootcert={ca}" in verified.dsn()
    in_url = load_config(
        environ={
            "DRIFTLINE_POSTGRES_URL": url + "?sslmode=require",
            "DRIFTLINE_POSTGRES_SSLROOTCERT": str(ca),
        }
    ).postgres
    assert "sslmode=require" in in_url.dsn() and "verify-full" not in in_url.dsn()


def test_webhook_verifier_rejects_forged_stale_and_replayed_requests() -> None:
    now = 1_700_000_000
    verifier = WebhookVerifier(b"k", tolerance_seconds=300, clock=lambda: now)
    body = b'{"alert_id": "a"}'

    def headers(timestamp: int, secret: bytes = b"k", signed: bytes = body) -> dict[str, str]:
        return {
            "x-driftline-timestamp": str(timestamp),
            "X-Driftline-Signature": sign_webhook(secret, timestamp, signed),
        }

    assert verifier.verify(body, headers(now - 10)) == {"alert_id": "a"}
    cases = [
        (headers(now - 10), "replayed"),
        (headers(now, secret=b"other"), "bad signature"),
        (headers(now, signed=b'{"alert_id": "b"}'), "bad signature"),  # body altered
        ({**headers(now), "x-driftline-timestamp": str(now + 1)}, "bad signature"),  # new stamp
        (headers(now - 301), "stale"),
        (headers(now + 301), "stale"),
        ({}, "unsigned"),
        ({"X-Driftline-Timestamp": "soon", "X-Driftline-Signature": "sha256=00"}, "malformed"),
    ]
    for given, reason in cases:
        with pytest.raises(WebhookVerificationError, match=reason):
            verifier.verify(body, given)
