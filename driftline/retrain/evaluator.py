"""The A/B evaluator: one look at every running test, and the consequences of a decision.

The decision itself is pure (:func:`driftline.detectors.abtest.decide`); here the arms' counts
are read from the training sample, and a decision updates the test, the registry and the
routing (model-control topic), is published on the alerts topic (``ab_decision``), exported to
Prometheus, and mirrored into MLflow when configured. Called by
:class:`driftline.retrain.service.RetrainService` (``evaluate_tests``, ``stop``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from driftline.detectors.abtest import decide
from driftline.retrain.service import RoutingNotConfirmedError
from driftline.router import RoutingDecision
from driftline.sinks import prometheus as metrics

if TYPE_CHECKING:
    from driftline.retrain.service import RetrainService

__all__ = ["evaluate_tests", "stop"]

log = logging.getLogger(__name__)

_OUTCOME_STATUS = {
    "promote": "promoted",
    "rollback": "rolled_back",
    "inconclusive": "inconclusive",
    "stopped": "stopped",
}


def evaluate_tests(service: RetrainService) -> list[tuple[str, str, str]]:
    """One look at every running A/B test; returns (model, outcome, reason) of each."""
    results: list[tuple[str, str, str]] = []
    for test in service.registry.running_tests():
        model = test["model"]
        champion = service.registry.arm_stats(model, test["champion_version"], test["started_at"])
        challenger = service.registry.arm_stats(
            model, test["challenger_version"], test["started_at"]
        )
        decision = decide(
            champion,
            challenger,
            float(test["elapsed_seconds"]),
            service.ab_settings,
            previous_p_value=float(test["p_value"]),
        )
        metrics.AB_P_VALUE.labels(model).set(decision.p_value)
        metrics.AB_TRAFFIC_SHARE.labels(model).set(float(test["traffic_share"]))
        if decision.outcome == "continue":
            service.registry.look(
                test["test_id"], decision.p_value, decision.reason, decision.evidence
            )
        else:
            # Logged by _conclude; the next tick republishes the registry's routing.
            with contextlib.suppress(RoutingNotConfirmedError):
                _conclude(
                    service,
                    test,
                    decision.outcome,
                    decision.reason,
                    decision.evidence,
                    decision.p_value,
                )
        results.append((model, decision.outcome, decision.reason))
    return results


def stop(service: RetrainService, model: str, reason: str = "stopped by the user") -> bool:
    """End the model's running test: the champion keeps all traffic."""
    for test in service.registry.running_tests():
        if test["model"] == model:
            _conclude(service, test, "stopped", reason, dict(test["evidence"] or {}), None)
            return True
    return False


def _conclude(
    service: RetrainService,
    test: dict[str, Any],
    outcome: str,
    reason: str,
    evidence: dict[str, Any],
    p_value: float | None,
) -> None:
    model = test["model"]
    champion, challenger = test["champion_version"], test["challenger_version"]
    if not service.registry.finish_test(
        test["test_id"], _OUTCOME_STATUS[outcome], reason, evidence
    ):
        return  # another process concluded it first
    if outcome == "promote":
        service.registry.promote(model, challenger, f"A/B test {test['test_id']}: {reason}")
        serving = challenger
    else:
        status = "rolled_back" if outcome == "rollback" else "retired"
        service.registry.set_status(
            model, challenger, status, f"A/B test {test['test_id']}: {reason}"
        )
        serving = champion
    # The registry already records the decision: if the broker does not confirm the routing,
    # the rest still happens (event, metrics) and `retrain serve` republishes the registry's
    # routing at its next tick; the caller (`ab stop`) learns it from the exception.
    unconfirmed: Exception | None = None
    try:
        service.publish_routing(RoutingDecision(model, serving, updated_at=time.time()))
    except RoutingNotConfirmedError as exc:
        log.error("%s; republished at the next evaluation tick", exc)
        unconfirmed = exc
    for version in (champion, challenger):
        service.sync_mlflow(model, version)
    metrics.AB_DECISIONS.labels(model, outcome).inc()
    guardrail = "guardrail" in evidence
    service.emit(
        "ab_decision",
        "critical" if guardrail else "warning",
        model,
        challenger,
        {
            "decision": outcome,
            "reason": reason,
            "test_id": test["test_id"],
            "champion": champion,
            "challenger": challenger,
            "serving": serving,
            **evidence,
        },
        identity=test["test_id"],
        test="msprt",
        statistic=evidence.get("difference"),
        p_value=p_value,
        threshold=service.ab_settings.alpha,
    )
    log.info("A/B test %s of %s: %s (%s)", test["test_id"], model, outcome, reason)
    if unconfirmed is not None:
        raise unconfirmed
