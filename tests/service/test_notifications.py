"""driftline's own channels against local servers: an HTTP receiver standing in for Slack,
PagerDuty and a webhook, and an SMTP server with STARTTLS and AUTH (aiosmtpd); then the whole
path worker -> alerts topic -> `driftline notify` -> receivers, timed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.sinks.notify import (
    EmailChannel,
    Notifier,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    WebhookVerificationError,
    WebhookVerifier,
    run_notifier,
)
from driftline.sinks.policy import AlertPolicy
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


class HTTPReceiver(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        self.requests: list[tuple[float, str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: HTTPReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((time.time(), self.path, dict(self.headers), body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(port: int) -> HTTPReceiver:
    server = HTTPReceiver(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def http() -> Iterator[HTTPReceiver]:
    server = serve(free_port())
    yield server
    server.shutdown()
    server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[float, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((time.time(), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, Mailbox, ssl.SSLContext]]:
    """SMTP on 127.0.0.1 with STARTTLS (a self-signed certificate) and AUTH required."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"driftline",
            b"s3cret",
        )
        # handled=False: aiosmtpd answers 535 itself (by default it assumes the authenticator
        # replied, sends nothing, and the client waits out its 10-s timeout)
        return AuthResult(success=ok, handled=False)

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield port, mailbox, ssl.create_default_context(cafile=str(cert))
    controller.stop()


def notifications() -> list[Any]:
    policy = AlertPolicy(escalate_after=2)
    base = {
        "type": "data_drift",
        "severity": "warning",
        "model": "fraud",
        "model_version": "1",
        "feature": "amount",
        "test": "ks_binned",
        "statistic": 0.31,
        "p_value": 1e-9,
        "threshold": 0.05,
    }
    out = policy.on_event(
        {**base, "event_id": "e1", "window_start": 0.0, "window_end": 60.0}, now=1
    )
    out += policy.on_event(
        {**base, "event_id": "e2", "window_start": 60.0, "window_end": 120.0}, now=2
    )
    out += policy.on_window(
        {"type": "window", "evaluation": {"model": "fraud", "model_version": "1"}}, set()
    )
    assert [n.action for n in out] == ["firing", "escalated", "resolved"]
    return out


def test_slack_webhook_and_pagerduty_receive_signed_deduplicated_messages(
    http: HTTPReceiver,
) -> None:
    url = f"http://127.0.0.1:{http.server_address[1]}"
    notifier = Notifier(
        [
            SlackChannel(f"{url}/slack"),
            WebhookChannel(f"{url}/hook", secret=b"k3y"),
            PagerDutyChannel("routing-1", f"{url}/pagerduty"),
        ],
        sleep=lambda _: None,
    )
    for notification in notifications():
        assert all(o.sent for o in notifier.deliver(notification))
    by_path: dict[str, list[tuple[dict[str, str], bytes]]] = {}
    for _, path, headers, body in http.requests:
        by_path.setdefault(path, []).append((headers, body))
    slack = [json.loads(b) for _, b in by_path["/slack"]]
    assert [m["text"].split("]")[0] for m in slack] == ["[WARNING", "[ESCALATED", "[RESOLVED"]
    verifier = WebhookVerifier(b"k3y")
    for headers, body in by_path["/hook"]:
        # signed over "<timestamp>.<body>", the timestamp in its own header
        signed = headers["X-Driftline-Timestamp"].encode() + b"." + body
        expected = "sha256=" + hmac.new(b"k3y", signed, hashlib.sha256).hexdigest()
        assert headers["X-Driftline-Signature"] == expected
        assert verifier.verify(body, headers)["alert_id"]
        with pytest.raises(WebhookVerificationError, match="replayed"):
            verifier.verify(body, headers)  # the same request again
    assert [json.loads(b)["action"] for _, b in by_path["/hook"]] == [
        "firing",
        "escalated",
        "resolved",
    ]
    pages = [json.loads(b) for _, b in by_path["/pagerduty"]]
    # the warning did not page; the escalation triggered, the resolution resolved, same dedup key
    assert [p["event_action"] for p in pages] == ["trigger", "resolve"]
    assert pages[0]["dedup_key"] == pages[1]["dedup_key"] and pages[0]["routing_key"] == "routing-1"
    assert pages[0]["payload"]["severity"] == "critical"


def test_email_goes_through_starttls_and_auth(smtp: tuple[int, Mailbox, ssl.SSLContext]) -> None:
    port, mailbox, client_context = smtp
    channel = EmailChannel(
        "localhost",
        port,
        "driftline@example.org",
        ["oncall@example.org"],
        "driftline",
        "s3cret",
        starttls=True,
        tls_context=client_context,
    )
    notifier = Notifier([channel], sleep=lambda _: None)
    assert notifier.deliver(notifications()[0])[0].sent
    message = message_from_bytes(mailbox.messages[0][1])
    assert message["Subject"] == "[WARNING] data drift on fraud/1: amount"
    assert message["To"] == "oncall@example.org"
    wrong = EmailChannel(
        "localhost",
        port,
        "driftline@example.org",
        ["x@example.org"],
        "driftline",
        "wrong",
        starttls=True,
        tls_context=client_context,
    )
    waits: list[float] = []
    refused = Notifier([wrong], attempts=3, sleep=waits.append)
    outcome = refused.deliver(notifications()[0])[0]
    assert not outcome.sent and len(mailbox.messages) == 1  # refused, recorded
    assert outcome.error and outcome.error.startswith("SMTPAuthenticationError: (535")
    # a refused login is permanent: one attempt, no backoff, not kept for the next pass
    assert outcome.attempts == 1 and waits == [] and refused.pending == []


def test_failed_deliveries_are_retried_recorded_and_kept_until_they_go() -> None:
    port = free_port()  # nothing listens yet
    waits: list[float] = []
    notifier = Notifier(
        [WebhookChannel(f"http://127.0.0.1:{port}/hook")], attempts=3, sleep=waits.append
    )
    (outcome,) = notifier.deliver(notifications()[0])
    assert not outcome.sent and outcome.attempts == 3 and "URLError" in (outcome.error or "")
    assert waits == [0.5, 1.0] and len(notifier.pending) == 1
    server = serve(port)
    try:
        (retried,) = notifier.retry_pending()
        assert retried.sent and notifier.pending == [] and len(server.requests) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_window_close_to_slack_and_email_latency(
    kafka: Any,
    http: HTTPReceiver,
    smtp: tuple[int, Mailbox, ssl.SSLContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Worker -> alerts topic -> `driftline notify` -> Slack and e-mail receivers."""
    smtp_port, mailbox, client_context = smtp
    suffix = uuid.uuid4().hex[:8]
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(
        kafka.bootstrap_servers,
        f"notify-{suffix}",
        references,
        NOTIFICATIONS_SLACK_WEBHOOK_URL=f"http://127.0.0.1:{http.server_address[1]}/slack",
        NOTIFICATIONS_SMTP_HOST="localhost",
        NOTIFICATIONS_SMTP_PORT=str(smtp_port),
        NOTIFICATIONS_SMTP_USERNAME="driftline",
        NOTIFICATIONS_SMTP_PASSWORD="s3cret",
        NOTIFICATIONS_EMAIL_FROM="driftline@example.org",
        NOTIFICATIONS_EMAIL_TO="oncall@example.org",
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ={**os.environ, **env})
    ensure_topics(config)
    started_iso = datetime.now(UTC).isoformat()  # the format orjson gives created_at
    # The e-mail channel must trust the test's self-signed certificate.
    monkeypatch.setattr(
        "driftline.sinks.notify.ssl.create_default_context", lambda *a, **k: client_context
    )
    stop_notifier = threading.Event()
    notifier = threading.Thread(
        target=run_notifier,
        args=(config,),
        kwargs={"timeout": 120, "stop": stop_notifier.is_set},
        daemon=True,
    )
    notifier.start()

    def stop_the_notifier() -> None:  # its consumers and producer close as it returns
        stop_notifier.set()
        notifier.join(30)

    request.addfinalizer(stop_the_notifier)
    time.sleep(6)  # the notifier's new consumer groups start at the end of the topics
    stream, _ = simulate(
        42_000,
        seed=8,
        start_time=1_767_225_600.0,
        rate_per_second=100.0,
        schedule=[Drift("abrupt", 180, magnitude=1.0)],
    )
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)

    def slack_titles() -> list[str]:
        return [
            json.loads(body)["text"] for _, path, _, body in list(http.requests) if path == "/slack"
        ]

    try:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and not (
            any(t.startswith("[ESCALATED] data drift on fraud/1: amount") for t in slack_titles())
            and len(mailbox.messages) >= 2
        ):
            time.sleep(0.5)
    finally:
        stop_worker_processes([worker])
    titles = slack_titles()
    assert titles[0] == "[WARNING] data drift on fraud/1: amount", titles
    assert "[ESCALATED] data drift on fraud/1: amount" in titles, titles  # third drifted window
    subjects = [message_from_bytes(raw)["Subject"] for _, raw in mailbox.messages]
    assert subjects[0] == titles[0], subjects
    # Latency of every firing/escalation: the worker's detection time (window close) of the
    # event that caused it to the moment each receiver got it.
    detected = {e["event_id"]: e["detected_at"] for e in _events(config)}

    def event_id(text: str) -> str:
        return text.rsplit("event ", 1)[-1].split()[0].strip(";") if "event " in text else ""

    latencies = {"slack": [], "email": []}
    for at, path, _, body in http.requests:
        text = json.loads(body)["attachments"][0]["text"]
        if path == "/slack" and "[RESOLVED]" not in text and event_id(text) in detected:
            latencies["slack"].append(at - detected[event_id(text)])
    for at, raw in mailbox.messages:
        body = message_from_bytes(raw).get_payload(decode=True).decode()
        if "[RESOLVED]" not in body and event_id(body.splitlines()[0]) in detected:
            latencies["email"].append(at - detected[event_id(body.splitlines()[0])])
    for channel, values in latencies.items():
        values.sort()
        print(
            f"window close -> {channel}: n={len(values)} max {values[-1]:.2f} s, "
            f"p50 {values[len(values) // 2]:.2f} s"
        )
    assert all(values and 0 <= values[-1] < 5 for values in latencies.values()), latencies
    # The history: every delivery recorded in PostgreSQL, and `driftline alerts list` shows it.
    notifier.join(timeout=0)  # still running: the history is written as it sends
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftline",
            "alerts",
            "list",
            "--since",
            "10m",
            "--model",
            "fraud",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    recent = [r for r in rows if r["created_at"] >= started_iso]
    sent = {(r["channel"], r["action"], r["title"]) for r in recent if r["status"] == "sent"}
    assert ("slack", "firing", "[WARNING] data drift on fraud/1: amount") in sent, recent
    assert ("email", "firing", "[WARNING] data drift on fraud/1: amount") in sent, recent
    assert ("slack", "escalated", "[ESCALATED] data drift on fraud/1: amount") in sent, recent
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftline",
            "alerts",
            "list",
            "--since",
            "10m",
            "--severity",
            "critical",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout
    assert "[ESCALATED] data drift on fraud/1: amount" in text and "[WARNING]" not in text


def _events(config: Any) -> list[dict[str, Any]]:
    from driftline.streams.reader import TopicReader

    reader = TopicReader(config, config.topics.alerts, start="beginning")
    try:
        return [orjson.loads(m.value() or b"{}") for m in reader.messages(timeout=15, idle=3)]
    finally:
        reader.close()


def test_notify_skips_counts_and_dead_letters_malformed_messages(
    isolated_config: tuple[Any, dict[str, str]], http: HTTPReceiver
) -> None:
    """Garbage on the alerts and metrics topics: each malformed message is skipped, counted and
    copied to the DLQ with its reason; valid ones around it are still notified."""
    from confluent_kafka import Consumer, TopicPartition

    from driftline.sinks.prometheus import NOTIFY_REJECTED as REJECTED

    _, env = isolated_config
    env = env | {
        "DRIFTLINE_NOTIFICATIONS_WEBHOOK_URL": f"http://127.0.0.1:{http.server_address[1]}/hook"
    }
    config = load_config(ROOT / "config" / "driftline.yaml", environ={**os.environ, **env})
    ensure_topics(config)
    valid = {
        "event_id": "e-valid", "model": "fraud", "model_version": "1", "type": "data_drift",
        "severity": "warning", "feature": "amount", "test": "psi", "statistic": 0.4,
        "p_value": 0.001, "threshold": 0.2, "window_start": 0.0, "window_end": 60.0,
    }  # fmt: skip
    bad_events = [
        b"{not json",
        b"[1, 2]",
        b'"just a string"',
        orjson.dumps({"event_id": "e1"}),
        orjson.dumps({**valid, "event_id": "e2", "severity": "extreme"}),
        orjson.dumps({**valid, "event_id": "e3", "statistic": "high"}),
        orjson.dumps({**valid, "event_id": "e4", "window_end": None}),
        orjson.dumps({**valid, "event_id": 5}),
        b"",
    ]
    bad_summaries = [b"null", orjson.dumps({"type": "window", "evaluation": 5})]
    producer = Producer(config.kafka.confluent_settings())
    for value in bad_events:
        producer.produce(config.topics.alerts, key=b"fraud", value=value)
    producer.produce(config.topics.alerts, key=b"fraud", value=orjson.dumps(valid))
    for value in bad_summaries:
        producer.produce(config.topics.metrics, key=b"fraud", value=value)
    # another record type on the metrics topic is not the notifier's business: ignored, not DLQ
    producer.produce(config.topics.metrics, key=b"fraud", value=b'{"type": "retraining_run"}')
    resolving = {"type": "window", "evaluation": {"model": "fraud", "model_version": "1"},
                 "window_end": 120.0, "event_ids": []}  # fmt: skip
    assert producer.flush(30) == 0
    # The notifier's groups start at the beginning of these fresh topics.
    app_id = config.worker.app_id
    for group, topic in (
        (f"{app_id}-notify", config.topics.alerts),
        (f"{app_id}-notify-windows", config.topics.metrics),
    ):
        committer = Consumer({**config.kafka.confluent_settings(), "group.id": group})
        partitions = committer.list_topics(topic, timeout=10).topics[topic].partitions
        committer.commit(
            offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False
        )
        committer.close()  # fmt: skip

    def rejected(topic: str) -> float:
        return sum(
            s.value
            for metric in REJECTED.collect()
            for s in metric.samples
            if s.name.endswith("_total") and s.labels["topic"] == topic
        )

    def actions() -> list[str]:
        return [json.loads(body)["action"] for _, _, _, body in list(http.requests)]

    stop = threading.Event()
    returned: list[int] = []
    notifier = threading.Thread(
        target=lambda: returned.append(run_notifier(config, timeout=60, stop=stop.is_set))
    )
    notifier.start()
    try:
        deadline = time.monotonic() + 30
        while "firing" not in actions() and time.monotonic() < deadline:
            time.sleep(0.2)
        # The window after the event, without it: the alert resolves (sent only now, so that
        # the summary cannot overtake the event on its way through the two topics).
        producer.produce(config.topics.metrics, key=b"fraud", value=orjson.dumps(resolving))
        assert producer.flush(30) == 0
        while "resolved" not in actions() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        notifier.join(30)
    assert returned == [0]  # returned normally: no malformed message killed it
    assert actions() == ["firing", "resolved"], actions()
    assert rejected(config.topics.alerts) == len(bad_events)
    assert rejected(config.topics.metrics) == len(bad_summaries)
    from driftline.streams.reader import TopicReader

    dlq = TopicReader(config, config.topics.dlq, start="beginning")
    try:
        dead = list(dlq.messages(timeout=15, idle=3))
    finally:
        dlq.close()
    assert sorted(m.value() for m in dead) == sorted(bad_events + bad_summaries)
    reasons = {m.value(): dict(m.headers() or [])["driftline.reason"].decode() for m in dead}
    assert reasons[b"{not json"] == "invalid JSON"
    assert reasons[orjson.dumps({"event_id": "e1"})] == "missing field model"
    assert reasons[orjson.dumps({**valid, "event_id": "e2", "severity": "extreme"})] == (
        "severity is not warning or critical"
    )
    headers = dict(dead[0].headers() or [])
    assert headers["driftline.consumer"] == b"notify"
    assert headers["driftline.source.topic"] in (
        config.topics.alerts.encode(),
        config.topics.metrics.encode(),
    )


def test_smtp_never_sends_credentials_without_tls(
    smtp: tuple[int, Mailbox, ssl.SSLContext], tmp_path: Path
) -> None:
    from driftline.config import ConfigError
    from driftline.sinks.notify import InsecureSMTPError

    port, mailbox, client_context = smtp
    cleartext = EmailChannel(
        "localhost", port, "driftline@example.org", ["oncall@example.org"], "driftline",
        "s3cret", starttls=False, tls_context=client_context,
    )  # fmt: skip
    with pytest.raises(InsecureSMTPError, match="without TLS"):
        cleartext.send(notifications()[0])
    assert mailbox.messages == []
    # ... and the configuration says so at start.
    with pytest.raises(ConfigError, match="smtp_starttls"):
        load_config(
            environ={
                "DRIFTLINE_NOTIFICATIONS_SMTP_HOST": "mail.example.org",
                "DRIFTLINE_NOTIFICATIONS_SMTP_STARTTLS": "false",
                "DRIFTLINE_NOTIFICATIONS_SMTP_PASSWORD": "s3cret",
                "DRIFTLINE_NOTIFICATIONS_EMAIL_FROM": "a@example.org",
                "DRIFTLINE_NOTIFICATIONS_EMAIL_TO": "b@example.org",
            }
        )
    # Implicit TLS (SMTPS, what port 465 means) with login.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context.load_cert_chain(cert, key)
    smtps_box, smtps_port = Mailbox(), free_port()

    def authenticate(*args: Any) -> AuthResult:
        data = args[-1]
        return AuthResult(success=isinstance(data, LoginPassword) and data.password == b"pw")

    controller = Controller(
        smtps_box, hostname="127.0.0.1", port=smtps_port, ssl_context=server_context,
        authenticator=authenticate, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        implicit = EmailChannel(
            "localhost", smtps_port, "driftline@example.org", ["oncall@example.org"],
            "driftline", "pw", starttls=False, implicit_tls=True,
            tls_context=ssl.create_default_context(cafile=str(cert)),
        )  # fmt: skip
        implicit.send(notifications()[0])
    finally:
        controller.stop()
    assert len(smtps_box.messages) == 1
