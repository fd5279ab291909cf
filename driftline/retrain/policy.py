"""Retraining policies: when a trigger may start a retraining. Pure: no I/O, no clock.

A policy names the triggers it reacts to and the conditions under which it fires::

    policies:
      - name: concept
        models: "*"                      # comma-separated model names, or * for every model
        triggers: concept_drift,performance_drop
        cooldown_seconds: 3600           # at most one firing per model and policy per hour
        min_new_labels: 1000             # labelled sample records since the last retraining
        min_performance_drop: 0.05       # relative accuracy drop a performance trigger needs

Trigger kinds (:data:`TRIGGER_KINDS`) and the alert events that raise them
(:func:`trigger_of_event`):

* ``data_drift``: a ``data_drift`` or ``multivariate_drift`` event (the worker publishes them
  only when the model-level verdict is "drifted");
* ``critical_feature_drift``: a ``data_drift`` event of a feature listed in the policy's
  ``critical_features``, or of severity ``critical`` (a feature marked critical in
  ``config/drift_thresholds.yaml``);
* ``data_quality``: an event whose type starts with ``data_quality``;
* ``concept_drift``: a ``concept_drift`` event, unless its evidence shows the error rate fell
  (``error_after < error_before``: the model got better, nothing to retrain for);
* ``performance_drop`` / ``estimated_performance_drop``: those events, when the relative drop in
  their evidence is above the policy's ``min_performance_drop`` (default 0.05: 5 %);
* ``schedule``: every ``every_days`` days since the last retraining (:func:`schedule_due`);
* ``manual``: ``driftline retrain --model M --reason ...``.

The rule (:func:`evaluate`), in order: a retraining of the model already in flight (the lock
is held elsewhere) -> suppressed; the policy fired for this model less than
``cooldown_seconds`` ago -> suppressed; fewer than ``min_new_labels`` new labelled records ->
suppressed; else fire. Every verdict, fired or suppressed, is recorded with its reason by the
shell (``driftline/retrain/service.py``: ``RetrainService.trigger``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftline.config import ConfigError

__all__ = [
    "TRIGGER_KINDS",
    "Policy",
    "PolicyState",
    "Verdict",
    "evaluate",
    "load_policies",
    "schedule_due",
    "trigger_of_event",
]

TRIGGER_KINDS = (
    "data_drift",
    "critical_feature_drift",
    "data_quality",
    "concept_drift",
    "performance_drop",
    "estimated_performance_drop",
    "schedule",
    "manual",
)


@dataclass(frozen=True)
class Policy:
    """One retraining policy (see the module docstring for the keys and their meaning)."""

    name: str
    triggers: str  # comma-separated TRIGGER_KINDS
    models: str = "*"
    cooldown_seconds: float = 3600.0
    min_new_labels: int = 0
    min_performance_drop: float = 0.05
    critical_features: str = ""  # comma-separated
    every_days: float = 7.0  # for the schedule trigger

    def __post_init__(self) -> None:
        unknown = [t for t in self.trigger_set if t not in TRIGGER_KINDS]
        if unknown or not self.trigger_set:
            raise ConfigError(
                f"policy {self.name!r}: triggers: unknown {', '.join(unknown) or '(none given)'};"
                f" expected some of {', '.join(TRIGGER_KINDS)}"
            )
        if self.cooldown_seconds < 0 or self.min_new_labels < 0 or self.every_days <= 0:
            raise ConfigError(
                f"policy {self.name!r}: cooldown_seconds and min_new_labels must be >= 0,"
                " every_days > 0"
            )
        if not 0 <= self.min_performance_drop < 1:
            raise ConfigError(f"policy {self.name!r}: min_performance_drop must be in [0, 1)")

    @property
    def trigger_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.triggers.split(",") if t.strip())

    def applies_to(self, model: str) -> bool:
        names = {m.strip() for m in self.models.split(",")}
        return "*" in names or model in names

    @property
    def critical_feature_set(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.critical_features.split(",") if f.strip())


DEFAULT_POLICIES = (
    Policy(name="manual", triggers="manual", cooldown_seconds=0.0),
    Policy(
        name="degradation",
        triggers="concept_drift,performance_drop",
        cooldown_seconds=3600.0,
        min_new_labels=1000,
    ),
)


def load_policies(path: str | Path | None) -> tuple[Policy, ...]:
    """The policies of a YAML file (``policies: [...]``), validated; the defaults (a manual
    policy without cooldown and a ``degradation`` policy) when ``path`` does not exist.

    >>> [p.name for p in load_policies("/nonexistent.yaml")]
    ['manual', 'degradation']
    """
    from driftline.keys import read

    if path is None or not Path(path).exists():
        return DEFAULT_POLICIES
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"policies file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("policies"), list):
        raise ConfigError(f"policies file {path}: expected `policies:` with a list of policies")
    try:
        policies = [
            read(Policy, item, f"policies[{i}]", error=ConfigError)
            for i, item in enumerate(raw["policies"])
        ]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ConfigError(f"policies file {path}: policy names must be unique, got {names}")
    return tuple(policies)


def _number(value: Any) -> float:
    """A JSON number as a float, NaN for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def trigger_of_event(event: Mapping[str, Any], policy: Policy) -> str | None:
    """The trigger kind an alert event raises for ``policy``, or None if it raises none.

    >>> p = Policy(name="p", triggers="performance_drop", critical_features="amount")
    >>> trigger_of_event({"type": "performance_drop", "evidence": {"relative_drop": 0.2}}, p)
    'performance_drop'
    >>> trigger_of_event({"type": "performance_drop", "evidence": {"relative_drop": 0.01}}, p)
    >>> trigger_of_event({"type": "data_drift", "feature": "amount", "severity": "warning"}, p)
    'critical_feature_drift'
    >>> better = {"error_before": 0.2, "error_after": 0.05}
    >>> trigger_of_event({"type": "concept_drift", "evidence": better}, p)
    >>> trigger_of_event({"type": "concept_drift", "evidence": {"error_before": 0.05}}, p)
    'concept_drift'
    """
    kind = event.get("type")
    evidence = event.get("evidence") or {}
    if kind in ("performance_drop", "estimated_performance_drop"):
        drop = evidence.get("relative_drop") if isinstance(evidence, Mapping) else None
        if isinstance(drop, int | float) and drop > policy.min_performance_drop:
            return str(kind)
        return None
    if kind == "concept_drift":
        before = evidence.get("error_before") if isinstance(evidence, Mapping) else None
        after = evidence.get("error_after") if isinstance(evidence, Mapping) else None
        if _number(after) < _number(before):  # the error fell: an improvement (NaN: False)
            return None
        return "concept_drift"
    if kind == "data_drift" and (
        event.get("feature") in policy.critical_feature_set or event.get("severity") == "critical"
    ):
        return "critical_feature_drift"
    if kind in ("data_drift", "multivariate_drift"):
        return "data_drift"
    if isinstance(kind, str) and kind.startswith("data_quality"):
        return "data_quality"
    return None


@dataclass(frozen=True)
class PolicyState:
    """What the shell read before asking: the policy's last firing for this model (epoch
    seconds, None if never), labelled sample records since the model's last retraining, and
    whether another retraining of the model holds the lock."""

    last_fired_at: float | None
    new_labels: int
    in_flight: bool


@dataclass(frozen=True)
class Verdict:
    fire: bool
    reason: str


def evaluate(policy: Policy, trigger: str, state: PolicyState, now: float) -> Verdict:
    """Fire or suppress, with the reason (rule in the module docstring).

    >>> p = Policy(name="p", triggers="concept_drift", cooldown_seconds=600, min_new_labels=100)
    >>> evaluate(p, "concept_drift", PolicyState(None, 500, in_flight=False), now=1000.0)
    Verdict(fire=True, reason='concept_drift: policy p fired')
    >>> evaluate(p, "concept_drift", PolicyState(None, 500, in_flight=True), 1000.0).reason
    'lock: a retraining of this model is already in flight'
    >>> evaluate(p, "concept_drift", PolicyState(900.0, 500, False), 1000.0).reason
    'cooldown: policy p fired 100 s ago (cooldown 600 s)'
    >>> evaluate(p, "concept_drift", PolicyState(None, 99, False), 1000.0).reason
    'too few labels: 99 new labelled records < 100'
    """
    if trigger not in policy.trigger_set:
        return Verdict(False, f"policy {policy.name} does not react to {trigger}")
    if state.in_flight:
        return Verdict(False, "lock: a retraining of this model is already in flight")
    if state.last_fired_at is not None and now - state.last_fired_at < policy.cooldown_seconds:
        return Verdict(
            False,
            f"cooldown: policy {policy.name} fired {now - state.last_fired_at:.0f} s ago"
            f" (cooldown {policy.cooldown_seconds:g} s)",
        )
    if state.new_labels < policy.min_new_labels:
        return Verdict(
            False,
            f"too few labels: {state.new_labels} new labelled records < {policy.min_new_labels}",
        )
    return Verdict(True, f"{trigger}: policy {policy.name} fired")


def schedule_due(policy: Policy, last_retrained_at: float | None, now: float) -> bool:
    """Whether a ``schedule`` policy is due: ``every_days`` since the last retraining (never
    retrained: due).

    >>> p = Policy(name="weekly", triggers="schedule", every_days=7)
    >>> schedule_due(p, None, 0.0), schedule_due(p, 0.0, 6 * 86400.0), schedule_due(p, 0.0, 7 * 86400.0)
    (True, False, True)
    """
    if "schedule" not in policy.trigger_set:
        return False
    return last_retrained_at is None or now - last_retrained_at >= policy.every_days * 86400.0


def matching(policies: Sequence[Policy], model: str) -> list[Policy]:
    """The policies that apply to ``model``, in file order."""
    return [p for p in policies if p.applies_to(model)]
