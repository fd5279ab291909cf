"""One retraining run and its candidate, for :class:`~driftline.retrain.service.RetrainService`:
run the pipeline, store the artifact (SHA-256), build the reference profile, register the
candidate, then champion (first version), challenger with an A/B test, or retired."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftline.retrain.control import RoutingNotConfirmedError
from driftline.retrain.pipeline import (
    PipelineError,
    TrainingData,
    TrainingResult,
    build_profile,
    champion_holdout_accuracy,
    load_pipeline,
    store_artifact,
)
from driftline.retrain.policy import Policy
from driftline.router import RoutingDecision
from driftline.sinks import prometheus as metrics

if TYPE_CHECKING:
    from driftline.retrain.service import RetrainService

__all__ = ["TriggerOutcome", "after_training", "retrain"]

log = logging.getLogger("driftline.retrain.service")  # the logger of these lines before the split


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


def retrain(
    service: RetrainService,
    model: str,
    policy: Policy,
    kind: str,
    reason: str,
    event_id: str | None,
    since: datetime | None,
    run_id: str,
) -> TriggerOutcome:
    """Run the model's pipeline for a trigger that fired (the caller holds the model's lock):
    the run recorded from start to finish, a failure emitted as ``retraining_failed``, a
    success registered as a candidate and passed to :func:`after_training`."""
    champion = service.registry.with_status(model, "champion")
    champion_version = champion["model_version"] if champion else None
    service.registry.start_run(
        run_id=run_id,
        model=model,
        from_version=champion_version,
        policy=policy.name,
        trigger_kind=kind,
        reason=reason,
        event_id=event_id,
    )
    artifact_dir = Path(service.settings.artifact_dir)
    reference_dir = Path(service.config.worker.reference_dir)
    started = time.monotonic()
    try:
        pipeline = load_pipeline(service.settings.pipeline)
        data = TrainingData(
            store=service.store,
            model=model,
            champion_version=champion_version,
            since=since,
            holdout_fraction=service.settings.holdout_fraction,
            reference_dir=reference_dir,
        )
        result = pipeline(model, reason, data)
        if not isinstance(result, TrainingResult) or "accuracy" not in result.metrics:
            raise PipelineError(
                f"{service.settings.pipeline} returned {type(result).__name__}: expected a"
                " TrainingResult with metrics['accuracy'] on the held-out slice"
            )
        version = service.registry.next_version(model)
        path, digest = store_artifact(artifact_dir, model, version, result.artifact)
        profile_path = build_profile(result, model, version, reference_dir)
        _, holdout = data.split()
        champion_accuracy = champion_holdout_accuracy(holdout, champion_version)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error("retraining %s failed: %s", model, error)
        service.registry.finish_run(
            run_id, "failed", error=error, details={"traceback": traceback.format_exc()}
        )
        metrics.RETRAINING_RUNS.labels(model, "failed").inc()
        service.emit(
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
    service.registry.register(
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
    next_step = after_training(service, model, version, champion_version, offline)
    service.sync_mlflow(model, version)
    service.registry.finish_run(
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
    return TriggerOutcome(model, policy.name, True, reason, run_id, "succeeded", version, next_step)


def after_training(
    service: RetrainService, model: str, version: str, champion: str | None, offline: dict[str, Any]
) -> str:
    """Champion if the model has none; challenger with an A/B test if it beats the
    champion on the held-out slice; else retired."""
    if champion is None:
        service.registry.set_status(model, version, "champion", "first version of the model")
        publish_or_defer(service, RoutingDecision(model, version, updated_at=time.time()))
        return "champion"
    accuracy = float(offline["accuracy"])
    baseline = offline.get("champion_holdout_accuracy")
    needed = None if baseline is None else baseline + service.settings.min_offline_improvement
    if needed is not None and accuracy < needed:
        service.registry.set_status(
            model,
            version,
            "retired",
            f"offline: accuracy {accuracy:.4f} < champion {baseline:.4f}"
            f" + {service.settings.min_offline_improvement:g} on the held-out slice",
        )
        return "retired"
    if service.registry.with_status(model, "challenger") is not None:
        service.registry.set_status(model, version, "retired", "an A/B test is already running")
        return "retired"
    test_id = uuid.uuid4().hex
    share = service.settings.challenger_traffic_share
    with service.store.pool.connection() as conn, conn.transaction():
        service.registry.set_status(
            model,
            version,
            "challenger",
            f"offline: accuracy {accuracy:.4f} vs champion"
            f" {'n/a' if baseline is None else f'{baseline:.4f}'}; A/B test {test_id}",
            conn=conn,
        )
    service.registry.start_test(
        test_id=test_id, model=model, champion=champion, challenger=version, share=share
    )
    publish_or_defer(
        service, RoutingDecision(model, champion, version, share, test_id, time.time())
    )
    return "challenger"


def publish_or_defer(service: RetrainService, decision: RoutingDecision) -> None:
    """Publish a routing change; if the broker does not confirm it, the registry (already
    updated) has it republished at the next tick of `retrain serve`."""
    try:
        service.publish_routing(decision)
    except RoutingNotConfirmedError as exc:
        log.error("%s; republished at the next evaluation tick", exc)
