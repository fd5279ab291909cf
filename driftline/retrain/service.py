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

Split by concern: triggers and the policy verdicts here; one pipeline run in
:mod:`~driftline.retrain.training`; routing, the control topic and events out in
:mod:`~driftline.retrain.control`; the A/B looks in :mod:`~driftline.retrain.evaluator`; the
`retrain serve` loop in :mod:`~driftline.retrain.loop`. Their public names are importable from
here, as before.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from confluent_kafka import Producer

from driftline.config import Config
from driftline.retrain import training
from driftline.retrain.control import (
    RoutingNotConfirmedError,
    ensure_control_topic,
    publish_routing,
    routing_of,
)
from driftline.retrain.loop import handle_alert, serve
from driftline.retrain.pipeline import load_artifact
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
from driftline.retrain.training import TriggerOutcome
from driftline.router import RoutingDecision
from driftline.sinks import prometheus as metrics
from driftline.sinks.store import PostgresStore

__all__ = [
    "RetrainService",
    "RoutingNotConfirmedError",
    "TriggerOutcome",
    "ensure_control_topic",
    "handle_alert",
    "serve",
]

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    policy: Policy
    kind: str
    reason: str
    event_id: str | None
    onset: float | None
    expires: float


def _onset(event: dict[str, Any]) -> float | None:
    """Event time at which the change was seen: the window start, or for a per-sample
    detection the triggering prediction's event time."""
    if isinstance(event.get("window_start"), int | float):
        return float(event["window_start"])
    evidence = event.get("evidence")
    if isinstance(evidence, dict) and isinstance(evidence.get("event_time"), int | float):
        return float(evidence["event_time"])
    return None


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
        self.ab_settings = self.settings.ab_settings()

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
        publish_routing(self._producer, self.settings.control_topic, decisions, timeout)

    def current_routing(self, model: str) -> RoutingDecision | None:
        """The routing the registry says the model has: the running A/B test's split, else
        all traffic to the champion (None without a champion)."""
        return routing_of(self.registry, model)

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
            # The run itself (pipeline, artifact, candidate): driftline/retrain/training.py.
            return training.retrain(self, model, policy, kind, reason, event_id, since, run_id)

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

    # -- A/B tests (driftline/retrain/evaluator.py) ------------------------------------------

    def evaluate_tests(self) -> list[tuple[str, str, str]]:
        """One look at every running A/B test; returns (model, outcome, reason) of each."""
        from driftline.retrain import evaluator

        return evaluator.evaluate_tests(self)

    def stop(self, model: str, reason: str = "stopped by the user") -> bool:
        """End the model's running test: the champion keeps all traffic."""
        from driftline.retrain import evaluator

        return evaluator.stop(self, model, reason)
