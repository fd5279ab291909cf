"""Notification channels and the `driftline notify` process: where an alert is sent.

The process follows the alerts topic (drift events) and the metrics topic (window summaries),
asks `AlertPolicy` (policy.py) what to notify, and delivers each notification to its channels:
critical alerts to every configured channel including PagerDuty, warnings to every channel but
PagerDuty, resolutions to the channels that got the alert. A delivery is retried with backoff
(`notifications.delivery_attempts`); a delivery that still fails is recorded and retried on the
next pass, never dropped, and never stops the process. A permanent error (`PERMANENT_ERRORS`: the
SMTP server refused the login, credentials without TLS) is not retried: it is recorded and logged
as an error at once, since only a configuration change can fix it. Every outcome is logged and counted
(`driftline_notifications_total{channel,outcome}`).

A malformed message on either topic (not JSON, not an object, a field missing or of the wrong
type) is logged, counted (`driftline_notify_rejected_total{topic,reason}`), copied to the
dead-letter topic with the reason in its headers, and skipped: it never stops the process.

Channels use the standard library only (urllib, smtplib): few dependencies where a webhook is
one POST. Webhooks are signed over a timestamp and the body (`WebhookVerifier` checks both on the
receiving side); SMTP never sends a password without TLS.

One module of ~600 lines: the channels are small classes (one per destination) that share the
delivery loop, its retries and its metrics; the decisions (what to send) are in policy.py.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import orjson

from driftline.config import Config, NotificationsConfig
from driftline.sinks.policy import AlertPolicy, Notification, event_problem, summary_problem
from driftline.sinks.prometheus import NOTIFICATIONS, NOTIFY_REJECTED

log = logging.getLogger(__name__)

__all__ = [
    "Channel",
    "DeliveryOutcome",
    "EmailChannel",
    "Notifier",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "WebhookVerificationError",
    "WebhookVerifier",
    "channels_from_config",
    "run_notifier",
    "sign_webhook",
]


class Channel(Protocol):
    name: str
    pages: bool  # receives critical alerts only when True (a pager), else everything

    def send(self, notification: Notification) -> None:
        """Deliver or raise."""


def _post_json(
    url: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> bytes:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


@dataclass
class SlackChannel:
    """Slack incoming webhook: a message with the alert's title and details."""

    url: str
    name: str = "slack"
    pages: bool = False

    def send(self, notification: Notification) -> None:
        color = {"firing": "warning", "escalated": "danger", "resolved": "good"}[
            notification.action
        ]
        if notification.action == "firing" and notification.severity == "critical":
            color = "danger"
        _post_json(
            self.url,
            {
                "text": notification.title(),
                "attachments": [{"color": color, "text": notification.text()}],
            },
        )


SIGNATURE_HEADER = "X-Driftline-Signature"
TIMESTAMP_HEADER = "X-Driftline-Timestamp"


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value: HMAC-SHA256 over `<timestamp>.<body>`, so a captured request
    cannot be replayed later with a fresh timestamp.

    >>> sign_webhook(b"k", 1700000000, b"{}")[:15]
    'sha256=c6ef4734'
    """
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass
class WebhookChannel:
    """Generic webhook: the alert as JSON. With a secret, signed: `X-Driftline-Timestamp` (Unix
    seconds) and `X-Driftline-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`;
    receivers check both with `WebhookVerifier` (docs/SECURITY.md)."""

    url: str
    secret: bytes | None = None
    name: str = "webhook"
    pages: bool = False
    clock: Callable[[], float] = time.time

    def send(self, notification: Notification) -> None:
        body = orjson.dumps(payload(notification))
        headers = {}
        if self.secret:
            timestamp = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign_webhook(self.secret, timestamp, body)
        _post_json(self.url, body, headers)


class WebhookVerificationError(ValueError):
    """The request is not a fresh, authentic driftline webhook: reject it (HTTP 401)."""


@dataclass
class WebhookVerifier:
    """For the receiver of driftline's webhooks: accepts a request only if its signature matches
    the shared secret, its timestamp is within `tolerance_seconds` of the receiver's clock, and
    the same signature was not accepted before (a replay inside the tolerance).

    >>> verifier = WebhookVerifier(b"k", clock=lambda: 1700000010)
    >>> body = b'{"alert_id": "a1"}'
    >>> headers = {"X-Driftline-Timestamp": "1700000000",
    ...            "X-Driftline-Signature": sign_webhook(b"k", 1700000000, body)}
    >>> verifier.verify(body, headers)["alert_id"]
    'a1'
    >>> verifier.verify(body, headers)
    Traceback (most recent call last):
    ...
    driftline.sinks.notify.WebhookVerificationError: replayed request (signature already accepted)
    """

    secret: bytes
    tolerance_seconds: float = 300.0
    clock: Callable[[], float] = time.time
    _seen: dict[str, float] = field(default_factory=dict)

    def verify(self, body: bytes, headers: Any) -> dict[str, Any]:
        """Check a request (raw body bytes, headers: any case-insensitive or plain mapping) and
        return the decoded alert; raise `WebhookVerificationError` saying why not."""
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        signature = lowered.get(SIGNATURE_HEADER.lower())
        stamp = lowered.get(TIMESTAMP_HEADER.lower())
        if not signature or not stamp:
            raise WebhookVerificationError("unsigned request (signature or timestamp missing)")
        try:
            timestamp = int(stamp)
        except ValueError:
            raise WebhookVerificationError("malformed timestamp") from None
        if not hmac.compare_digest(signature, sign_webhook(self.secret, timestamp, body)):
            raise WebhookVerificationError("bad signature (wrong secret or altered request)")
        now = self.clock()
        if abs(now - timestamp) > self.tolerance_seconds:
            raise WebhookVerificationError(
                f"stale request: timestamp {timestamp} is more than "
                f"{self.tolerance_seconds:g} s from now"
            )
        for seen, at in list(self._seen.items()):  # forget what is too old to pass anyway
            if now - at > self.tolerance_seconds:
                del self._seen[seen]
        if signature in self._seen:
            raise WebhookVerificationError("replayed request (signature already accepted)")
        self._seen[signature] = timestamp
        decoded: dict[str, Any] = orjson.loads(body)
        return decoded


@dataclass
class PagerDutyChannel:
    """PagerDuty Events API v2: trigger on firing/escalation, resolve on resolution, with the
    alert id as dedup key so PagerDuty keeps one incident per alert."""

    routing_key: str
    url: str = "https://events.pagerduty.com/v2/enqueue"
    name: str = "pagerduty"
    pages: bool = True

    def send(self, notification: Notification) -> None:
        alert = notification.alert
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "resolve" if notification.action == "resolved" else "trigger",
            "dedup_key": alert.alert_id,
        }
        if notification.action != "resolved":
            body["payload"] = {
                "summary": notification.title(),
                "source": f"driftline/{alert.model}",
                "severity": "critical" if alert.severity == "critical" else "warning",
                "custom_details": payload(notification),
            }
        _post_json(self.url, body)


class InsecureSMTPError(RuntimeError):
    """Refused to send SMTP credentials over a connection without TLS."""


@dataclass
class EmailChannel:
    """E-mail over SMTP: implicit TLS on port 465, else STARTTLS (required, never skipped when the
    server does not offer it) unless `starttls` is off; credentials are never sent without TLS."""

    host: str
    port: int
    sender: str
    recipients: list[str]
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool | None = None  # SMTPS; None: on port 465
    name: str = "email"
    pages: bool = False

    def send(self, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = notification.title()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(
            notification.text()
            + "\n\n"
            + orjson.dumps(payload(notification), option=orjson.OPT_INDENT_2).decode()
        )
        context = self.tls_context or ssl.create_default_context()
        implicit_tls = self.port == 465 if self.implicit_tls is None else self.implicit_tls
        if self.username and self.password and not (implicit_tls or self.starttls):
            raise InsecureSMTPError(
                f"refusing to log in to {self.host}:{self.port} without TLS: enable "
                "notifications.smtp_starttls or use implicit TLS (port 465)"
            )
        smtp = (
            smtplib.SMTP_SSL(self.host, self.port, timeout=10, context=context)
            if implicit_tls
            else smtplib.SMTP(self.host, self.port, timeout=10)
        )
        with smtp:
            if self.starttls and not implicit_tls:
                smtp.starttls(context=context)  # raises if the server does not offer it
            if self.username and self.password:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


def payload(notification: Notification) -> dict[str, Any]:
    alert = notification.alert
    return {
        "alert_id": alert.alert_id,
        "action": notification.action,
        "severity": alert.severity,
        "model": alert.model,
        "model_version": alert.model_version,
        "type": alert.type,
        "subject": alert.subject,
        "windows": alert.windows,
        "opened_at": alert.opened_at,
        "event": alert.last_event,
    }


def channels_from_config(config: NotificationsConfig) -> list[Channel]:
    channels: list[Channel] = []
    if config.slack_webhook_url:
        channels.append(SlackChannel(config.slack_webhook_url.reveal()))
    if config.webhook_url:
        secret = config.webhook_secret.reveal().encode() if config.webhook_secret else None
        channels.append(WebhookChannel(config.webhook_url.reveal(), secret))
    if config.pagerduty_routing_key:
        channels.append(
            PagerDutyChannel(config.pagerduty_routing_key.reveal(), config.pagerduty_url)
        )
    if config.smtp_host and config.email_from and config.email_to:
        channels.append(
            EmailChannel(
                config.smtp_host,
                config.smtp_port,
                config.email_from,
                [to.strip() for to in config.email_to.split(",") if to.strip()],
                config.smtp_username,
                config.smtp_password.reveal() if config.smtp_password else None,
                config.smtp_starttls,
            )
        )
    return channels


# Errors that retrying cannot fix (a configuration mistake): one attempt, no retry on later passes.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (smtplib.SMTPAuthenticationError, InsecureSMTPError)


@dataclass(frozen=True)
class DeliveryOutcome:
    alert_id: str
    action: str
    channel: str
    sent: bool
    attempts: int
    error: str | None
    at: float


@dataclass
class Notifier:
    """Delivers notifications to channels with retries; keeps what failed for the next pass."""

    channels: Sequence[Channel]
    attempts: int = 3
    backoff_seconds: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    pending: list[tuple[Notification, Channel]] = field(default_factory=list)
    max_pending: int = 10_000
    history: Callable[[Notification, DeliveryOutcome], None] | None = None  # e.g. PostgreSQL

    def route(self, notification: Notification) -> list[Channel]:
        critical = notification.severity == "critical"
        return [c for c in self.channels if not c.pages or critical]

    def deliver(self, notification: Notification) -> list[DeliveryOutcome]:
        return [self._deliver(notification, channel) for channel in self.route(notification)]

    def retry_pending(self) -> list[DeliveryOutcome]:
        pending, self.pending = self.pending, []
        return [self._deliver(notification, channel) for notification, channel in pending]

    def _deliver(self, notification: Notification, channel: Channel) -> DeliveryOutcome:
        error = None
        permanent = False
        attempt = 0
        while attempt < self.attempts and not permanent:
            attempt += 1
            try:
                channel.send(notification)
                outcome = DeliveryOutcome(
                    notification.alert.alert_id,
                    notification.action,
                    channel.name,
                    True,
                    attempt,
                    None,
                    self.clock(),
                )
                break
            except Exception as exc:  # a channel must never stop the notifier
                error = f"{type(exc).__name__}: {exc}"
                permanent = isinstance(exc, PERMANENT_ERRORS)
                if attempt < self.attempts and not permanent:
                    self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        else:
            outcome = DeliveryOutcome(
                notification.alert.alert_id,
                notification.action,
                channel.name,
                False,
                attempt,
                error,
                self.clock(),
            )
            if permanent:
                log.error(
                    "%s to %s failed permanently, not retried (check the channel's settings): %s",
                    notification.title(),
                    channel.name,
                    error,
                )
            else:
                if len(self.pending) < self.max_pending:
                    self.pending.append((notification, channel))
                log.warning(
                    "%s to %s failed after %d attempts: %s",
                    notification.title(),
                    channel.name,
                    attempt,
                    error,
                )
        NOTIFICATIONS.labels(channel.name, "sent" if outcome.sent else "failed").inc()
        if self.history is not None:
            try:
                self.history(notification, outcome)
            except Exception as exc:  # the history is a record, not a reason to stop notifying
                log.warning(
                    "could not record %s in the alert history: %s", notification.title(), exc
                )
        self.outcomes.append(outcome)
        del self.outcomes[:-1000]
        return outcome


def run_notifier(
    config: Config, timeout: float = float("inf"), stop: Callable[[], bool] | None = None
) -> int:
    """`driftline notify`: follow the alerts and metrics topics and notify, until `timeout`
    seconds passed or `stop()` says so."""
    from confluent_kafka import Producer

    from driftline.security import check_kafka
    from driftline.streams.reader import TopicReader

    check_kafka(config.kafka)
    channels = channels_from_config(config.notifications)
    log.info(
        "driftline notify: channels %s; following %s and %s",
        ", ".join(c.name for c in channels) or "none",
        config.topics.alerts,
        config.topics.metrics,
    )
    if not channels:
        log.warning("no notification channel is configured (notifications.* in the config)")
    settings = config.notifications
    policy = AlertPolicy(settings.escalate_after_windows, settings.max_per_hour_per_model)
    store = _history_store(config)
    notifier = Notifier(
        channels, attempts=settings.delivery_attempts, history=store and _recorder(store)
    )
    # A consumer group per topic: after a restart the notifier resumes where it stopped.
    alerts = TopicReader(config, config.topics.alerts, group=f"{config.worker.app_id}-notify")
    summaries = TopicReader(
        config, config.topics.metrics, group=f"{config.worker.app_id}-notify-windows"
    )
    dead_letters = Producer({**config.kafka.confluent_settings(), "log_level": 3})

    def reject(message: Any, reason: str) -> None:
        topic = message.topic()
        log.warning(
            "skipping malformed message %s[%s]@%s: %s",
            topic,
            message.partition(),
            message.offset(),
            reason,
        )
        NOTIFY_REJECTED.labels(topic, reason).inc()  # reasons are a fixed set of messages
        dead_letters.produce(
            config.topics.dlq,
            key=message.key(),
            value=message.value() or b"",
            headers={
                "driftline.reason.kind": b"malformed_"
                + (b"event" if topic == config.topics.alerts else b"summary"),
                "driftline.reason": reason.encode(),
                "driftline.source.topic": topic.encode(),
                "driftline.source.partition": str(message.partition()).encode(),
                "driftline.source.offset": str(message.offset()).encode(),
                "driftline.consumer": b"notify",
            },
        )
        dead_letters.poll(0)

    seen: dict[str, str] = {}  # event_id -> policy key
    waiting: list[tuple[float, dict[str, Any]]] = []  # summaries whose events have not arrived
    deadline = time.monotonic() + timeout
    last_retry = time.monotonic()
    try:
        while time.monotonic() < deadline and not (stop and stop()):
            for message in _read(alerts, timeout=0.5):
                event, problem = _decode(message.value(), event_problem)
                if problem is not None:
                    reject(message, problem)
                    continue
                seen[event["event_id"]] = AlertPolicy.key(event)
                for notification in policy.on_event(event, time.time()):
                    notifier.deliver(notification)
            for message in _read(summaries, timeout=0.2):
                summary, problem = _decode(message.value(), summary_problem, _NOTIFY_TYPES)
                if problem is not None:
                    reject(message, problem)
                elif summary is not None:
                    waiting.append((time.monotonic(), summary))
            still = []
            for arrived, summary in waiting:
                ids = summary.get("event_ids") or []
                if all(i in seen for i in ids) or time.monotonic() - arrived > 30:
                    for notification in policy.on_window(
                        summary, {seen[i] for i in ids if i in seen}
                    ):
                        notifier.deliver(notification)
                else:
                    still.append((arrived, summary))
            waiting = still
            if notifier.pending and time.monotonic() - last_retry > 30:
                last_retry = time.monotonic()
                notifier.retry_pending()
            if len(seen) > 100_000:
                seen.clear()
    except KeyboardInterrupt:
        pass
    finally:
        alerts.close()
        summaries.close()
        dead_letters.flush(10)
        if store is not None:
            store.close()
    return 0


def _read(reader: Any, timeout: float) -> Iterator[Any]:
    """The reader's messages; an error the consumer reports (a broker restarting, a leader
    moving) is logged, not fatal: librdkafka recovers by itself."""
    try:
        yield from reader.messages(timeout=timeout)
    except RuntimeError as exc:
        log.warning("%s; the consumer keeps retrying", exc)
        time.sleep(1)


_NOTIFY_TYPES = (
    "window",
    "performance_window",
)  # other record types on the metrics topic: not ours


def _decode(
    value: bytes | None,
    problem_of: Callable[[Any], str | None],
    types: tuple[str, ...] | None = None,
) -> tuple[Any, str | None]:
    """The decoded message and None, or (None, why it is malformed); (None, None) for a record
    type this process does not handle."""
    try:
        decoded = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None, "invalid JSON"
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    if types is not None and isinstance(kind, str) and kind not in types:
        return None, None
    return decoded, problem_of(decoded)


def _history_store(config: Config) -> Any:
    """The PostgreSQL store for the alert history, or None (notifying never waits for it)."""
    from driftline.sinks.store import PostgresStore

    store = PostgresStore(config.postgres.dsn())
    try:
        store.upgrade()
    except Exception as exc:
        log.warning("alert history disabled: PostgreSQL is not usable (%s)", exc)
        store.close()
        return None
    return store


def _recorder(store: Any) -> Callable[[Notification, DeliveryOutcome], None]:
    from datetime import UTC, datetime

    def record(notification: Notification, outcome: DeliveryOutcome) -> None:
        alert = notification.alert
        store.record_alert(
            {
                "alert_id": alert.alert_id,
                "channel": outcome.channel,
                "action": notification.action,
                "event_id": alert.last_event.get("event_id"),
                "status": "sent" if outcome.sent else "failed",
                "attempts": outcome.attempts,
                "last_error": outcome.error,
                "sent_at": datetime.fromtimestamp(outcome.at, UTC) if outcome.sent else None,
                "model": alert.model,
                "model_version": alert.model_version,
                "type": alert.type,
                "subject": alert.subject,
                "severity": alert.severity,
                "title": notification.title(),
            }
        )

    return record
