"""`driftline retrain serve`: the loop that follows the alerts topic, hands each event to
:class:`~driftline.retrain.service.RetrainService` (retried until handled, offset committed
after), and every tick republishes the routing, retries pending triggers, looks at the A/B tests
and fires due schedules."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Literal

from confluent_kafka import Consumer

from driftline.config import Config
from driftline.retrain.control import ensure_control_topic
from driftline.sinks import prometheus as metrics
from driftline.sinks.store import PostgresStore
from driftline.streams.reader import decode_object

if TYPE_CHECKING:
    from driftline.retrain.service import RetrainService

__all__ = ["handle_alert", "serve"]

log = logging.getLogger("driftline.retrain.service")  # the logger of these lines before the split


def handle_alert(
    service: RetrainService,
    value: bytes | None,
    stop: threading.Event,
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
) -> bool:
    """Handle one message of the alerts topic; True when it is done (handled, or skipped as
    malformed) and its offset may be committed, False when ``stop`` was set first.

    An error while handling a valid event (PostgreSQL down, the broker unreachable) is retried
    with backoff, counted in `driftline_retrain_alert_failures_total` and logged each time: the
    offset never moves past an event whose trigger was not evaluated, so no trigger is lost.
    While it retries, nothing else runs in `retrain serve` (one thread: the A/B looks wait too).
    """
    try:
        event = decode_object(value)
    except ValueError as exc:
        log.warning("alerts topic: a message skipped: %s", exc)
        return True
    delay = first_delay
    while not stop.is_set():
        try:
            service.handle_event(event)
            return True
        except Exception:
            metrics.RETRAIN_ALERT_FAILURES.inc()
            log.exception(
                "handling alert %s failed; retrying in %.1f s (its offset is not committed)",
                event.get("event_id"),
                delay,
            )
            if stop.wait(delay):
                break
            delay = min(delay * 2, max_delay)
    return False


def serve(
    config: Config,
    *,
    schema: str | None = None,
    stop: threading.Event | None = None,
    metrics_port: int | None = None,
    start: Literal["latest", "earliest"] = "latest",
    tick_seconds: float | None = None,
) -> int:
    """`driftline retrain serve`: follow the alerts topic (consumer group
    ``<worker.app_id>-retrain``), run triggers, look at A/B tests every
    ``retraining.evaluate_interval_seconds``; until SIGTERM/SIGINT or ``stop``."""
    if stop is None:
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    if metrics_port:
        metrics.serve(metrics_port)
    tick = tick_seconds or config.retraining.evaluate_interval_seconds
    ensure_control_topic(config)
    from driftline.retrain.service import RetrainService  # it imports this module

    with PostgresStore(config.postgres.dsn(), schema=schema) as store:
        store.upgrade()
        service = RetrainService(config, store)
        consumer = Consumer(
            {
                **config.kafka.confluent_settings(),
                "group.id": f"{config.worker.app_id}-retrain",
                "enable.auto.commit": False,
                "auto.offset.reset": start,
                "max.poll.interval.ms": 3_600_000,  # a training run may take long
            }
        )
        consumer.subscribe([config.topics.alerts])
        next_tick = 0.0
        try:
            while not stop.is_set():
                for message in consumer.consume(100, timeout=0.5):
                    if message.error() is not None:
                        continue
                    if not handle_alert(service, message.value(), stop):
                        break  # stopping: not committed, redelivered after the restart
                    consumer.commit(message=message, asynchronous=False)
                if stop.is_set():
                    break
                if time.monotonic() >= next_tick:
                    try:
                        # The registry is the source of truth for routing: republishing it
                        # repairs a change whose publication failed (idempotent: compacted).
                        service.republish_routing()
                    except Exception:
                        log.exception("republishing the routing failed")
                    try:
                        service.retry_pending()
                        service.evaluate_tests()
                        named = {
                            m.strip()
                            for p in service.policies
                            for m in p.models.split(",")
                            if m.strip() != "*"
                        }
                        service.check_schedules(sorted(named | set(service.registry.models())))
                    except Exception:
                        log.exception("evaluation tick failed")
                    next_tick = time.monotonic() + tick
        finally:
            consumer.close()
            service.close()
    return 0
