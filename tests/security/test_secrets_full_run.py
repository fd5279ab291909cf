"""A full run with every connection authenticated and encrypted, then a search for the secrets.

Worker (a process) over SASL_SSL/SCRAM-SHA-512 to the private broker, `driftline notify` (a
process) over SASL_SSL with a signed webhook and its alert history in the private PostgreSQL
over TLS (sslmode verify-full, from a CA in the config); secrets passed as files (`*_file`).
Afterwards no log, no message on any topic of the run (keys, values, headers: DLQ included)
and no `driftline config show` contains any secret it was given."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.sinks.notify import WebhookVerifier
from driftline.streams.topics import ensure_topics
from tests.conftest import TlsFiles, build_reference, worker_env
from tests.security.test_kafka_tls import scram_env
from tests.service.test_notifications import serve

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


def _all_messages(bootstrap: str, prefix: str) -> list[Any]:
    """Every message of every topic whose name starts with `prefix` (internal ones included)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"audit-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    topics = [t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix)]
    consumer.subscribe(topics)
    messages: list[Any] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 4:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
            idle_since = time.monotonic()
    consumer.close()
    return messages


def start_groups_at_the_beginning(config: Any) -> None:
    """Commit offset 0 for the notifier's consumer groups (they start at the end otherwise)."""
    from confluent_kafka import TopicPartition

    app_id = config.worker.app_id
    for group, topic in (
        (f"{app_id}-notify", config.topics.alerts),
        (f"{app_id}-notify-windows", config.topics.metrics),
    ):
        committer = Consumer({**config.kafka.confluent_settings(), "group.id": group})
        partitions = committer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = [TopicPartition(topic, p, 0) for p in partitions]
        committer.commit(offsets=offsets, asynchronous=False)
        committer.close()


def test_secrets_never_appear_in_logs_topics_or_config_show(
    private_kafka: Any, private_postgres: Any, tls_files: TlsFiles, tmp_path: Path
) -> None:
    prefix = f"sec-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()

    def phase(name: str) -> None:
        print(f"{time.monotonic() - t0:6.1f} s  {name}")

    references = tmp_path / "references"
    build_reference(references)
    http = serve(0)
    webhook_token = secrets.token_urlsafe(16)
    webhook_secret = "whsec-" + secrets.token_urlsafe(16)
    files = tmp_path / "secrets"
    files.mkdir()
    (files / "webhook_url").write_text(
        f"http://127.0.0.1:{http.server_address[1]}/hook/{webhook_token}\n"
    )
    (files / "webhook_secret").write_text(webhook_secret)
    (files / "postgres_url").write_text(private_postgres.url())
    env = worker_env(private_kafka.sasl_bootstrap, prefix, references) | scram_env(
        private_kafka, tls_files, tmp_path
    )
    env |= {
        "DRIFTLINE_NOTIFICATIONS_WEBHOOK_URL_FILE": str(files / "webhook_url"),
        "DRIFTLINE_NOTIFICATIONS_WEBHOOK_SECRET_FILE": str(files / "webhook_secret"),
        "DRIFTLINE_POSTGRES_URL_FILE": str(files / "postgres_url"),
        "DRIFTLINE_POSTGRES_SSLROOTCERT": str(tls_files.ca),  # sslmode verify-full by default
    }
    the_secrets = {
        "kafka password": private_kafka.scram_users["driftline"],
        "webhook secret": webhook_secret,
        "webhook url": webhook_token,
        "postgres password": private_postgres.password,
    }
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    assert config.postgres.tls_settings()["sslmode"] == "verify-full"
    ensure_topics(config)
    start_groups_at_the_beginning(config)  # instead of waiting for the notifier to join
    run_env = {**os.environ, **env}
    notify_log = tmp_path / "notify.log"
    with open(notify_log, "wb") as out:
        notifier = subprocess.Popen(
            [sys.executable, "-m", "driftline", "-v", "notify", "--timeout", "150"],
            env=run_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    phase("started worker and notifier")
    try:
        # 90 s of event time, all of it drifted: the window [0, 60) closes with drift events.
        stream, _ = simulate(
            9_000, seed=5, start_time=1_767_225_600.0, rate_per_second=100.0,
            schedule=[Drift("abrupt", 0, magnitude=1.0)],
        )  # fmt: skip
        producer = Producer(config.kafka.confluent_settings())
        for record in stream:
            producer.produce(
                config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
            )
            producer.poll(0)
        producer.produce(config.topics.predictions, key=b"bad", value=b"{not json")  # to the DLQ
        assert producer.flush(30) == 0
        phase("produced")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not http.requests:
            assert notifier.poll() is None, notify_log.read_text()[-3000:]
            time.sleep(0.5)
        phase("first webhook")
        time.sleep(2)
    finally:
        stop_worker_processes([worker])
        phase("worker stopped")
        notifier.send_signal(signal.SIGINT)
        notifier.wait(30)
        phase("notifier stopped")
        http.shutdown()
    worker_log = (tmp_path / "worker.log").read_text()
    assert http.requests, (
        f"no webhook arrived\n{notify_log.read_text()[-3000:]}\n{worker_log[-3000:]}"
    )
    verifier = WebhookVerifier(webhook_secret.encode())
    for _, _, headers, body in http.requests:
        assert verifier.verify(body, headers)["action"] in ("firing", "escalated", "resolved")
    # The alert history went to PostgreSQL over verified TLS.
    with psycopg.connect(config.postgres.dsn(), connect_timeout=10) as conn:
        assert conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] >= 1  # type: ignore[index]

    shown = subprocess.run(
        [sys.executable, "-m", "driftline", "config", "show"],
        env=run_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    phase("config show")
    messages = _all_messages(private_kafka.bootstrap, prefix)
    phase("read every topic")
    assert any(m.topic() == config.topics.dlq for m in messages), (
        "the DLQ should hold the bad record"
    )
    assert any(m.topic() == config.topics.alerts for m in messages), "drift events expected"
    texts = {
        "worker log": worker_log,
        "notify log": notify_log.read_text(),
        "config show": shown,
        "webhook requests": "\n".join(f"{h} {b!r}" for _, _, h, b in http.requests),
    }
    by_topic: dict[str, list[bytes]] = {}
    for message in messages:
        parts = by_topic.setdefault(f"topic {message.topic()}", [])
        parts += [message.key() or b"", message.value() or b""]
        parts += [value or b"" for _, value in message.headers() or []]
    texts |= {
        where: b"\n".join(parts).decode(errors="replace") for where, parts in by_topic.items()
    }
    leaks = [
        (name, where)
        for name, value in the_secrets.items()
        for where, text in texts.items()
        if value in text
    ]
    assert not leaks, leaks
    print(
        f"searched {len(messages)} messages on {len({m.topic() for m in messages})} topics, "
        f"{len(worker_log)} + {len(texts['notify log'])} bytes of logs: no secret found"
    )
