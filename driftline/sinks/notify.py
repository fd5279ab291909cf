"""Notification channels and the `driftline notify` process: where an alert is sent.

The process follows the alerts topic (drift events) and the metrics topic (window summaries),
asks `AlertPolicy` (policy.py) what to notify, and delivers each notification to its channels:
critical alerts to every configured channel including PagerDuty, warnings to every channel but
PagerDuty, resolutions to the channels that got the alert. A delivery is retried with backoff
(`notifications.delivery_attempts`); a delivery that still fails is recorded and retried on the
next pass, never dropped, and never stops the process. Every outcome is logged and counted
(`driftline_notifications_total{channel,outcome}`).

Channels use the standard library only (urllib, smtplib): few dependencies where a webhook is
one POST.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from driftline.config import Config, NotificationsConfig
from driftline.sinks.policy import AlertPolicy, Notification
from driftline.sinks.prometheus import REGISTRY

log = logging.getLogger(__name__)

__all__ = [
    "Channel",
    "DeliveryOutcome",
    "EmailChannel",
    "Notifier",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "channels_from_config",
    "run_notifier",
]

NOTIFICATIONS = Counter(
    "driftline_notifications",
    "Notifications by channel and outcome (sent, failed: retried later).",
    ["channel", "outcome"],
    registry=REGISTRY,
)


class Channel(Protocol):
    name: str
    pages: bool  # receives critical alerts only when True (a pager), else everything

    def send(self, notification: Notification) -> None:
        """Deliver or raise."""


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    data = orjson.dumps(body)
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


@dataclass
class WebhookChannel:
    """Generic webhook: the alert as JSON, signed with HMAC-SHA256 over the body
    (`X-Driftline-Signature: sha256=<hex>`) when a secret is configured."""

    url: str
    secret: bytes | None = None
    name: str = "webhook"
    pages: bool = False

    def send(self, notification: Notification) -> None:
        body = payload(notification)
        headers = {}
        if self.secret:
            digest = hmac.new(self.secret, orjson.dumps(body), hashlib.sha256).hexdigest()
            headers["X-Driftline-Signature"] = f"sha256={digest}"
        _post_json(self.url, body, headers)


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


@dataclass
class EmailChannel:
    """E-mail over SMTP, with STARTTLS and login when configured."""

    host: str
    port: int
    sender: str
    recipients: list[str]
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    tls_context: ssl.SSLContext | None = None
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
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            if self.starttls:
                smtp.starttls(context=self.tls_context or ssl.create_default_context())
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
        for attempt in range(1, self.attempts + 1):
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
                if attempt < self.attempts:
                    self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        else:
            outcome = DeliveryOutcome(
                notification.alert.alert_id,
                notification.action,
                channel.name,
                False,
                self.attempts,
                error,
                self.clock(),
            )
            if len(self.pending) < self.max_pending:
                self.pending.append((notification, channel))
            log.warning(
                "%s to %s failed after %d attempts: %s",
                notification.title(),
                channel.name,
                self.attempts,
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


def run_notifier(config: Config, timeout: float = float("inf")) -> int:
    """`driftline notify`: follow the alerts and metrics topics and notify."""
    from driftline.streams.reader import TopicReader

    channels = channels_from_config(config.notifications)
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
    seen: dict[str, str] = {}  # event_id -> policy key
    waiting: list[tuple[float, dict[str, Any]]] = []  # summaries whose events have not arrived
    deadline = time.monotonic() + timeout
    last_retry = time.monotonic()
    try:
        while time.monotonic() < deadline:
            for message in alerts.messages(timeout=0.5):
                event = orjson.loads(message.value() or b"{}")
                seen[event["event_id"]] = AlertPolicy.key(event)
                for notification in policy.on_event(event, time.time()):
                    notifier.deliver(notification)
            for message in summaries.messages(timeout=0.2):
                waiting.append((time.monotonic(), orjson.loads(message.value() or b"{}")))
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
        if store is not None:
            store.close()
    return 0


def _history_store(config: Config) -> Any:
    """The PostgreSQL store for the alert history, or None (notifying never waits for it)."""
    from driftline.sinks.store import PostgresStore

    store = PostgresStore(config.postgres.url.reveal())
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
