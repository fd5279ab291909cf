"""The retraining service (`driftline retrain serve`): triggers, the pipeline runner and the
A/B evaluator. The imperative shell around the pure decisions of
:mod:`driftline.retrain.policy` and :mod:`driftline.detectors.abtest`.

Flow: an alert event (or ``driftline retrain --model M``, or a due schedule) -> for each policy
of the model that reacts to it, under the model's retraining lock: read the policy's state,
:func:`~driftline.retrain.policy.evaluate`, record the verdict -> if it fires: run the
pipeline, store the artifact (SHA-256), build and write the reference profile, register the
candidate -> compare with the champion on the held-out slice -> challenger with an A/B test
(routing published on the model-control topic) or retired -> every ``evaluate_interval_seconds``
:func:`~driftline.detectors.abtest.decide` on each running test -> promote / rollback /
inconclusive, recorded with evidence, published as an event on the alerts topic, exported to
Prometheus, and the routing updated.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client import Counter

from driftline.config import Config
from driftline.detectors.abtest import ABSettings
from driftline.retrain.pipeline import (
    PipelineError,
    TrainingData,
    TrainingResult,
    build_profile,
    champion_holdout_accuracy,
    load_artifact,
    load_pipeline,
    store_artifact,
)
from driftline.retrain.policy import (
    Policy,
    PolicyState,
    evaluate,
    load_policies,
    matching,
    schedule_due,
    trigger_of_event,
)
from driftline.retrain.registry import Registry, RegistryError
from driftline.router import RoutingDecision
from driftline.sinks import prometheus as metrics
from driftline.sinks.store import PostgresStore

__all__ = [
    "RetrainService",
    "RoutingNotConfirmedError",
    "TriggerOutcome",
    "ensure_control_topic",
    "serve",
]

log = logging.getLogger(__name__)


@dataclass
class TriggerOutcome:
    """What one trigger did: fired or not, why, and the run's result if it ran."""

    model: str
    policy: str
    fired: bool
    reason: str
    run_id: str | None = None
    status: str | None = None  # succeeded | failed
    version: str | None = None
    next_step: str | None = None  # challenger | champion | retired
    error: str | None = None


@dataclass
class _Pending:
    policy: Policy
    kind: str
    reason: str
    event_id: str | None
    onset: float | None
    expires: float


def ensure_control_topic(config: Config, timeout: float = 30.0) -> bool:
    """Create the compacted model-control topic if it is missing; True if it was created."""
    admin = AdminClient(config.kafka.confluent_settings())
    name = config.retraining.control_topic
    if name in admin.list_topics(timeout=timeout).topics:
        return False
    topic = NewTopic(
        name,
        num_partitions=1,
        replication_factor=config.topics.replication_factor,
        config={"cleanup.policy": "compact"},
    )
    for future in admin.create_topics([topic], operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            return False
    return True


def _onset(event: dict[str, Any]) -> float | None:
    """Event time at which the change was seen: the window start, or for a per-sample
    detection the triggering prediction's event time."""
    if isinstance(event.get("window_start"), int | float):
        return float(event["window_start"])
    evidence = event.get("evidence")
    if isinstance(evidence, dict) and isinstance(evidence.get("event_time"), int | float):
        return float(evidence["event_time"])
    return None


ALERT_FAILURES = Counter(
    "driftline_retrain_alert_failures",
    "Attempts of `retrain serve` to handle an alert that failed (retried; never skipped).",
    registry=metrics.REGISTRY,
)


class RoutingNotConfirmedError(RuntimeError):
    """The broker did not acknowledge a routing change (the registry already records it:
    `RetrainService.republish_routing` publishes it again)."""


class RetrainService:
    def __init__(
        self,
        config: Config,
        store: PostgresStore,
        *,
        policies: tuple[Policy, ...] | None = None,
        pending_ttl_seconds: float = 3600.0,
    ) -> None:
        self.config = config
        self.settings = config.retraining
        self.store = store
        self.registry = Registry(store)
        self.policies = (
            policies if policies is not None else load_policies(self.settings.policies_file)
        )
        self.pending_ttl_seconds = pending_ttl_seconds
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._producer = Producer(
            {**config.kafka.confluent_settings(), "acks": "all", "enable.idempotence": True}
        )
        self.mlflow: Any = None
        if self.settings.registry == "mlflow":
            from driftline.retrain.mlflow_registry import MlflowRegistry

            assert self.settings.mlflow_tracking_uri is not None  # checked by the config
            self.mlflow = MlflowRegistry(self.settings.mlflow_tracking_uri)
        self.ab_settings = ABSettings(
            alpha=self.settings.ab_alpha,
            mde=self.settings.ab_min_detectable_effect,
            min_samples_per_arm=self.settings.ab_min_samples_per_arm,
            max_duration_seconds=self.settings.ab_max_duration_seconds,
            max_error_rate_increase=self.settings.ab_max_error_rate_increase,
            max_latency_p99_ratio=self.settings.ab_max_latency_p99_ratio,
            min_guardrail_samples=self.settings.ab_min_guardrail_samples,
        )

    def close(self) -> None:
        self._producer.flush(30)

    # -- output ------------------------------------------------------------------------------

    def sync_mlflow(self, model: str, version: str) -> bool | None:
        """Mirror one version's registry row into MLflow (``registry: mlflow``); None when
        MLflow is not configured. The artifact is uploaded only after its checksum matched."""
        if self.mlflow is None:
            return None
        row = self.registry.version(model, version)
        if row is None:
            return False
        artifact: Path | None = None
        if row.get("artifact_path") and row.get("artifact_sha256"):
            artifact_dir = Path(self.settings.artifact_dir)
            load_artifact(artifact_dir, row["artifact_path"], row["artifact_sha256"])
            artifact = artifact_dir / row["artifact_path"]
        return bool(self.mlflow.sync(row, artifact))

    def emit(
        self,
        type_: str,
        severity: Literal["warning", "critical"],
        model: str,
        version: str,
        evidence: dict[str, Any],
        *,
        identity: str,
        test: str | None = None,
        statistic: float | None = None,
        p_value: float | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        """An event on the alerts topic, shaped like the worker's drift events (same
        fields; ``type`` is ``retraining_failed`` or ``ab_decision``)."""
        event_id = hashlib.sha256(
            "\x1f".join([model, version, type_, identity]).encode()
        ).hexdigest()[:32]
        event = {
            "schema_version": 1,
            "event_id": event_id,
            "type": type_,
            "severity": severity,
            "model": model,
            "model_version": version,
            "feature": None,
            "test": test,
            "statistic": statistic,
            "p_value": p_value,
            "threshold": threshold,
            "window_start": None,
            "window_end": None,
            "detected_at": time.time(),
            "evidence": evidence,
        }
        self._producer.produce(
            self.config.topics.alerts, key=model, value=orjson.dumps(event, default=str)
        )
        self._producer.flush(30)
        return event

    def publish_routing(self, *decisions: RoutingDecision, timeout: float = 30.0) -> None:
        """Publish routing decisions on the model-control topic and wait for the broker's
        acknowledgement of every one; RoutingNotConfirmedError otherwise.

        The registry is the source of truth: a change it records whose publication failed is
        published again by `republish_routing` (every evaluation tick of `retrain serve` and
        at its start; the topic is compacted, so republishing is idempotent)."""
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(str(err.str()))

        for decision in decisions:
            while True:
                try:
                    self._producer.produce(
                        self.settings.control_topic,
                        key=decision.model,
                        value=orjson.dumps(decision.to_dict()),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        remaining = self._producer.flush(timeout)
        if remaining or failures:
            models = ", ".join(sorted({d.model for d in decisions}))
            why = failures[0] if failures else f"no acknowledgement within {timeout:g} s"
            raise RoutingNotConfirmedError(
                f"the broker did not confirm the routing of {models} on"
                f" {self.settings.control_topic}: {why}"
            )
        for decision in decisions:
            metrics.AB_TRAFFIC_SHARE.labels(decision.model).set(
                decision.challenger_share if decision.challenger else 0.0
            )

    def current_routing(self, model: str) -> RoutingDecision | None:
        """The routing the registry says the model has: the running A/B test's split, else
        all traffic to the champion (None without a champion)."""
        for test in self.registry.running_tests():
            if test["model"] == model:
                return RoutingDecision(
                    model,
                    str(test["champion_version"]),
                    str(test["challenger_version"]),
                    float(test["traffic_share"]),
                    str(test["test_id"]),
                    time.time(),
                )
        champion = self.registry.with_status(model, "champion")
        if champion is None:
            return None
        return RoutingDecision(model, str(champion["model_version"]), updated_at=time.time())

    def republish_routing(self) -> int:
        """Publish the registry's routing of every model again (confirmed); returns how many.
        Repairs a routing change whose publication failed after the registry recorded it."""
        decisions = [
            decision
            for model in self.registry.models()
            if (decision := self.current_routing(model)) is not None
        ]
        if decisions:
            self.publish_routing(*decisions)
        return len(decisions)

    # -- triggers ----------------------------------------------------------------------------

    def handle_event(self, event: dict[str, Any]) -> list[TriggerOutcome]:
        """Evaluate the policies of the event's model that react to it."""
        model = event.get("model")
        if not isinstance(model, str) or event.get("type") in ("ab_decision", "retraining_failed"):
            return []
        outcomes = []
        for policy in matching(self.policies, model):
            kind = trigger_of_event(event, policy)
            if kind is None or kind not in policy.trigger_set:
                continue
            outcome = self.trigger(
                model,
                policy,
                kind,
                reason=f"{event.get('type')} event {event.get('event_id')}",
                event_id=event.get("event_id"),
                onset=_onset(event),
            )
            outcomes.append(outcome)
            if outcome.fired:
                break  # one retraining per event
        return outcomes

    def manual(self, model: str, reason: str) -> TriggerOutcome:
        """`driftline retrain --model M --reason ...`: the first policy of the model that
        reacts to manual triggers."""
        for policy in matching(self.policies, model):
            if "manual" in policy.trigger_set:
                return self.trigger(model, policy, "manual", reason=f"manual: {reason}")
        raise RegistryError(f"no retraining policy reacts to manual triggers for model {model!r}")

    def check_schedules(self, models: list[str]) -> list[TriggerOutcome]:
        """Fire the due ``schedule`` policies of ``models``."""
        outcomes = []
        for model in models:
            last = self.registry.last_retrained_at(model)
            for policy in matching(self.policies, model):
                if schedule_due(policy, last.timestamp() if last else None, time.time()):
                    outcomes.append(self.trigger(model, policy, "schedule", reason="schedule: due"))
        return outcomes

    def trigger(
        self,
        model: str,
        policy: Policy,
        kind: str,
        *,
        reason: str,
        event_id: str | None = None,
        onset: float | None = None,
        record_suppressed: bool = True,
    ) -> TriggerOutcome:
        """Evaluate one policy for one trigger under the model's lock; run the retraining if
        it fires (still holding the lock). Every verdict is recorded with its reason."""
        since = None if onset is None else datetime.fromtimestamp(onset, UTC)
        with self.registry.retraining_lock(model) as taken:
            last = self.registry.last_fired_at(model, policy.name)
            state = PolicyState(
                last_fired_at=last.timestamp() if last else None,
                new_labels=self.registry.new_labels(model, since) if taken else 0,
                in_flight=not taken,
            )
            verdict = evaluate(policy, kind, state, time.time())
            run_id = uuid.uuid4().hex if verdict.fire else None
            details = {"new_labels": state.new_labels, "onset": onset, "trigger_reason": reason}
            key = (model, policy.name)
            if verdict.fire or record_suppressed:
                self.registry.record_evaluation(
                    model=model,
                    policy=policy.name,
                    trigger_kind=kind,
                    fired=verdict.fire,
                    reason=verdict.reason,
                    event_id=event_id,
                    run_id=run_id,
                    details=details,
                )
                metrics.RETRAINING_EVALUATIONS.labels(
                    model, "fired" if verdict.fire else "suppressed"
                ).inc()
            log.info("%s/%s %s: %s", model, policy.name, kind, verdict.reason)
            if not verdict.fire:
                if verdict.reason.startswith("too few labels") and kind not in ("manual",):
                    # Labels come later than the alert: look again at every tick, for a while.
                    self._pending.setdefault(
                        key,
                        _Pending(
                            policy,
                            kind,
                            reason,
                            event_id,
                            onset,
                            time.time() + self.pending_ttl_seconds,
                        ),
                    )
                return TriggerOutcome(model, policy.name, False, verdict.reason)
            self._pending.pop(key, None)
            assert run_id is not None
            return self._retrain(model, policy, kind, reason, event_id, since, run_id)

    def retry_pending(self) -> list[TriggerOutcome]:
        """Re-evaluate triggers that were suppressed for too few labels (until they expire);
        only a firing is recorded again."""
        outcomes = []
        for key, pending in list(self._pending.items()):
            if time.time() > pending.expires:
                del self._pending[key]
                continue
            outcome = self.trigger(
                key[0],
                pending.policy,
                pending.kind,
                reason=pending.reason,
                event_id=pending.event_id,
                onset=pending.onset,
                record_suppressed=False,
            )
            if outcome.fired or not outcome.reason.startswith("too few labels"):
                self._pending.pop(key, None)
            outcomes.append(outcome)
        return outcomes

    # -- the pipeline run --------------------------------------------------------------------

    def _retrain(
        self,
        model: str,
        policy: Policy,
        kind: str,
        reason: str,
        event_id: str | None,
        since: datetime | None,
        run_id: str,
    ) -> TriggerOutcome:
        champion = self.registry.with_status(model, "champion")
        champion_version = champion["model_version"] if champion else None
        self.registry.start_run(
            run_id=run_id,
            model=model,
            from_version=champion_version,
            policy=policy.name,
            trigger_kind=kind,
            reason=reason,
            event_id=event_id,
        )
        artifact_dir = Path(self.settings.artifact_dir)
        reference_dir = Path(self.config.worker.reference_dir)
        started = time.monotonic()
        try:
            pipeline = load_pipeline(self.settings.pipeline)
            data = TrainingData(
                store=self.store,
                model=model,
                champion_version=champion_version,
                since=since,
                holdout_fraction=self.settings.holdout_fraction,
                reference_dir=reference_dir,
            )
            result = pipeline(model, reason, data)
            if not isinstance(result, TrainingResult) or "accuracy" not in result.metrics:
                raise PipelineError(
                    f"{self.settings.pipeline} returned {type(result).__name__}: expected a"
                    " TrainingResult with metrics['accuracy'] on the held-out slice"
                )
            version = self.registry.next_version(model)
            path, digest = store_artifact(artifact_dir, model, version, result.artifact)
            profile_path = build_profile(result, model, version, reference_dir)
            _, holdout = data.split()
            champion_accuracy = champion_holdout_accuracy(holdout, champion_version)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("retraining %s failed: %s", model, error)
            self.registry.finish_run(
                run_id, "failed", error=error, details={"traceback": traceback.format_exc()}
            )
            metrics.RETRAINING_RUNS.labels(model, "failed").inc()
            self.emit(
                "retraining_failed",
                "critical",
                model,
                champion_version or "unregistered",  # the sinks need a non-empty version
                {"run_id": run_id, "error": error, "policy": policy.name, "reason": reason},
                identity=run_id,
            )
            return TriggerOutcome(model, policy.name, True, reason, run_id, "failed", error=error)
        offline = {
            **result.metrics,
            "champion_holdout_accuracy": champion_accuracy,
            "training_seconds": round(time.monotonic() - started, 3),
        }
        self.registry.register(
            model=model,
            version=version,
            status="candidate",
            parent=champion_version,
            metrics=offline,
            artifact_path=path,
            artifact_sha256=digest,
            run_id=run_id,
            reason=f"trained by run {run_id} ({reason})",
        )
        next_step = self._after_training(model, version, champion_version, offline)
        self.sync_mlflow(model, version)
        self.registry.finish_run(
            run_id,
            "succeeded",
            to_version=version,
            details={
                "metrics": offline,
                "next_step": next_step,
                "artifact_sha256": digest,
                "reference_profile": str(profile_path),
                **result.details,
            },
        )
        metrics.RETRAINING_RUNS.labels(model, "succeeded").inc()
        return TriggerOutcome(
            model, policy.name, True, reason, run_id, "succeeded", version, next_step
        )

    def _after_training(
        self, model: str, version: str, champion: str | None, offline: dict[str, Any]
    ) -> str:
        """Champion if the model has none; challenger with an A/B test if it beats the
        champion on the held-out slice; else retired."""
        if champion is None:
            self.registry.set_status(model, version, "champion", "first version of the model")
            self._publish_or_defer(RoutingDecision(model, version, updated_at=time.time()))
            return "champion"
        accuracy = float(offline["accuracy"])
        baseline = offline.get("champion_holdout_accuracy")
        needed = None if baseline is None else baseline + self.settings.min_offline_improvement
        if needed is not None and accuracy < needed:
            self.registry.set_status(
                model,
                version,
                "retired",
                f"offline: accuracy {accuracy:.4f} < champion {baseline:.4f}"
                f" + {self.settings.min_offline_improvement:g} on the held-out slice",
            )
            return "retired"
        if self.registry.with_status(model, "challenger") is not None:
            self.registry.set_status(model, version, "retired", "an A/B test is already running")
            return "retired"
        test_id = uuid.uuid4().hex
        share = self.settings.challenger_traffic_share
        with self.store.pool.connection() as conn, conn.transaction():
            self.registry.set_status(
                model,
                version,
                "challenger",
                f"offline: accuracy {accuracy:.4f} vs champion"
                f" {'n/a' if baseline is None else f'{baseline:.4f}'}; A/B test {test_id}",
                conn=conn,
            )
        self.registry.start_test(
            test_id=test_id, model=model, champion=champion, challenger=version, share=share
        )
        self._publish_or_defer(
            RoutingDecision(model, champion, version, share, test_id, time.time())
        )
        return "challenger"

    def _publish_or_defer(self, decision: RoutingDecision) -> None:
        try:
            self.publish_routing(decision)
        except RoutingNotConfirmedError as exc:
            log.error("%s; republished at the next evaluation tick", exc)

    # -- A/B tests (driftline/retrain/evaluator.py) ------------------------------------------

    def evaluate_tests(self) -> list[tuple[str, str, str]]:
        """One look at every running A/B test; returns (model, outcome, reason) of each."""
        from driftline.retrain import evaluator

        return evaluator.evaluate_tests(self)

    def stop(self, model: str, reason: str = "stopped by the user") -> bool:
        """End the model's running test: the champion keeps all traffic."""
        from driftline.retrain import evaluator

        return evaluator.stop(self, model, reason)


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
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        log.warning("alerts topic: a message that is not JSON, skipped")
        return True
    if not isinstance(event, dict):
        log.warning("alerts topic: a message that is not a JSON object, skipped")
        return True
    delay = first_delay
    while not stop.is_set():
        try:
            service.handle_event(event)
            return True
        except Exception:
            ALERT_FAILURES.inc()
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
