"""Drift events: the public output on the alerts topic (schema: config/schemas/drift_event.schema.json).

Pure functions from an evaluation to events. `event_id` is a hash of what identifies the finding
(model, version, type, window, feature, test), not of when it was found, so a window evaluated
twice (a replay after a crash, a second worker) yields the same id and consumers can deduplicate.

Longer than ~400 lines: one pure function per event type, each with its rule and doctest;
they share `drift_event` and the window fields, so they stay in one module.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Literal

import orjson

from driftline.detectors.evaluate import WindowEvaluation
from driftline.detectors.thresholds import ModelThresholds

if TYPE_CHECKING:  # only read here: importing the concept package would load river
    from driftline.detectors.concept import Detection

__all__ = [
    "SCHEMA_VERSION",
    "EventType",
    "concept_event",
    "drift_event",
    "drop_severity",
    "estimated_performance_drop_event",
    "importance_event",
    "latest_time",
    "operational_event",
    "output_event",
    "performance_drop_event",
    "quality_events",
    "service_events",
    "suppress_combined",
    "window_events",
]

SCHEMA_VERSION = 1
EventType = Literal[
    "data_drift",
    "multivariate_drift",
    "concept_drift",
    "performance_drop",
    "estimated_performance_drop",
    "error_rate",
    "latency",
    "feature_importance_shift",
    "importance_drift",
    "output_drift",
    "data_quality",
    "operational",
]
Severity = Literal["warning", "critical"]


def drift_event(
    *,
    type: EventType,
    severity: Severity,
    model: str,
    model_version: str,
    window_start: float | None,
    window_end: float | None,
    detected_at: float,
    feature: str | None = None,
    test: str | None = None,
    statistic: float | None = None,
    p_value: float | None = None,
    threshold: float | None = None,
    evidence: dict[str, Any] | None = None,
    identity: str = "",
) -> dict[str, Any]:
    """One drift event. `identity` adds to the id what else makes the finding unique
    (e.g. the sample index of a concept-drift detection)."""
    parts = [
        model,
        model_version,
        type,
        f"{window_start}",
        f"{window_end}",
        feature or "",
        test or "",
        identity,
    ]
    event_id = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "type": type,
        "severity": severity,
        "model": model,
        "model_version": model_version,
        "feature": feature,
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "threshold": threshold,
        "window_start": window_start,
        "window_end": window_end,
        "detected_at": detected_at,
        "evidence": evidence or {},
    }


_PLAUSIBLE_EPOCH = (1e8, 1e11)  # 1973..5138 in seconds: not a count, an offset or a size


def latest_time(saved: Any) -> float | None:
    """The latest plausible epoch time (seconds) held in a checkpoint under a key naming a time
    (``*time*``, ``*watermark*``, ``window_end``; the values of a ``*watermarks`` mapping), or
    None: a deterministic time for a finding about that checkpoint, whatever its (old) shape.

    >>> latest_time({"max_event_time": 1.7e9, "open": [{"window_end": 1.8e9, "n": 5e9}]})
    1800000000.0
    >>> latest_time({"source_watermarks": {"0": 1.75e9}}), latest_time([1.9e9]), latest_time(None)
    (1750000000.0, None, None)
    """
    found: list[float] = []

    def walk(value: Any, timed: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                name = str(key).lower()
                named = "time" in name or "watermark" in name or name == "window_end"
                walk(item, named or (timed and name.isdigit()))
        elif isinstance(value, list):
            for item in value:
                walk(item, False)
        elif (
            timed
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and _PLAUSIBLE_EPOCH[0] <= value <= _PLAUSIBLE_EPOCH[1]
        ):
            found.append(float(value))

    walk(saved, False)
    return max(found) if found else None


def operational_event(
    check: str, key: str, detail: dict[str, Any], detected_at: float, model: str = ""
) -> dict[str, Any]:
    """A finding about driftline itself, not about a model (type ``operational``; `model` is
    the model concerned or empty, `model_version` empty), e.g. a checkpoint that could not be
    restored. `key` identifies it (say the checkpoint key and a hash of its content): the same
    finding after a restart has the same id, and the same ``evidence.event_time`` (the latest
    time the checkpoint names, see :func:`latest_time`), which the sinks key it by.

    >>> e = operational_event("checkpoint_dropped", "s1/3#ab", {"stage": "stage1"}, 10.0)
    >>> e["type"], e["test"], e["model"], e["window_start"], e["evidence"]["stage"]
    ('operational', 'checkpoint_dropped', '', None, 'stage1')
    """
    if check == "checkpoint_dropped":  # the same dropped checkpoint: the same id and time
        checkpoint = detail.pop("checkpoint", None)
        saved = orjson.dumps(checkpoint, default=str)
        key = f"{key}#{hashlib.sha256(saved).hexdigest()[:16]}"
        latest = latest_time(checkpoint)
        if latest is not None:
            detail = {**detail, "event_time": latest}
    return drift_event(
        type="operational",
        severity="warning",
        model=model,
        model_version="",
        window_start=None,
        window_end=None,
        detected_at=detected_at,
        test=check,
        evidence=detail,
        identity=key,
    )


def _window_fields(evaluation: WindowEvaluation, detected_at: float) -> dict[str, Any]:
    """What every event of one window says about where it comes from."""
    return {
        "model": evaluation.model,
        "model_version": evaluation.model_version,
        "window_start": evaluation.window_start,
        "window_end": evaluation.window_end,
        "detected_at": detected_at,
    }


def window_events(evaluation: WindowEvaluation, detected_at: float) -> list[dict[str, Any]]:
    """The events of one evaluated window: one per drifted feature, one for multivariate drift,
    one ``output_drift`` when the model's outputs drifted, one ``importance_drift`` when its
    feature importances moved, one ``data_quality`` per finding.

    Nothing when the model-level verdict is "no drift" (false-alarm control happens there),
    except ``data_quality`` events of new features, which are reported without a drift.
    """
    events = []
    if any(reason not in ("output", "data_quality") for reason in evaluation.reasons):
        events += _data_events(evaluation, detected_at)
    output = output_event(evaluation, detected_at)
    if output is not None:
        events.append(output)
    importance = importance_event(evaluation, detected_at)
    if importance is not None:
        events.append(importance)
    return events + quality_events(evaluation, detected_at)


def importance_event(evaluation: WindowEvaluation, detected_at: float) -> dict[str, Any] | None:
    """One ``importance_drift`` event when a window's feature importances moved
    (``evaluation.importance``, detectors/importance.py): ``feature`` is the feature whose share
    moved most, the evidence names every changed feature with its share and rank before and
    after; critical when a share moved by twice ``min_share_change``."""
    importance = evaluation.importance
    if importance is None or not importance.drifted:
        return None
    moved = {f.feature: f for f in importance.features}
    changed = [moved[name] for name in importance.changed_features if name in moved]
    summary = "; ".join(
        f"{f.feature} share {f.reference_share:.3f} -> {f.share:.3f}"
        f" (rank {f.reference_rank} -> {f.rank})"
        for f in changed
    )
    top = changed[0] if changed else None
    return drift_event(
        type="importance_drift",
        severity=importance.severity,
        feature=top.feature if top else None,
        test=f"importance_share_{importance.source}",
        statistic=importance.max_share_change,
        threshold=importance.min_share_change,
        evidence={
            "summary": summary,
            "source": importance.source,
            "changed_features": list(importance.changed_features),
            "features": [f.to_dict() for f in changed],
            "spearman": importance.spearman,
            "reference_top_k": list(importance.reference_top_k),
            "current_top_k": list(importance.current_top_k),
            "n": importance.n,
        },
        **_window_fields(evaluation, detected_at),
    )


def quality_events(evaluation: WindowEvaluation, detected_at: float) -> list[dict[str, Any]]:
    """One ``data_quality`` event per finding (feature and check) with the figures; new
    features are reported too (warning), although they do not make the window drift."""
    quality = evaluation.data_quality
    if quality is None:
        return []
    common = _window_fields(evaluation, detected_at)
    return [
        drift_event(
            type="data_quality",
            severity=finding.severity,
            feature=finding.feature,
            test=finding.check,
            statistic=finding.statistic,
            p_value=finding.p_value,
            threshold=finding.threshold,
            evidence={
                "check": finding.check,
                "reference": finding.reference,
                **finding.figures,
                "window_missing_rate": quality.missing_rate.get(finding.feature),
                "reference_missing_rate": quality.reference_missing_rate.get(finding.feature),
            },
            **common,
        )
        for finding in quality.findings
    ]


def _describe(name: str, signal: dict[str, Any]) -> str:
    ref, win = signal.get("reference", {}), signal.get("window", {})
    if name == "class_balance":
        before, after = ref.get("class_ratio", {}), win.get("class_ratio", {})
        moved = max(
            set(before) | set(after),
            # the largest move; of equal moves (two classes) the rarer class, the telling one
            key=lambda k: (
                round(abs(after.get(k, 0.0) - before.get(k, 0.0)), 9),
                -before.get(k, 0.0),
            ),
            default=None,
        )
        if moved is None:
            return name
        return f"class {moved} share {before.get(moved, 0.0):.3f} -> {after.get(moved, 0.0):.3f}"
    if name == "low_confidence":
        return (
            f"low-confidence share {ref.get('low_confidence_ratio', 0.0):.3f} -> "
            f"{win.get('low_confidence_ratio', 0.0):.3f}"
        )
    before, after = ref.get("mean"), win.get("mean")
    if isinstance(before, int | float) and isinstance(after, int | float):
        return f"{name} mean {before:.4g} -> {after:.4g} ({signal['effect_measure']} {signal['effect']:.3g})"
    return name


def output_event(evaluation: WindowEvaluation, detected_at: float) -> dict[str, Any] | None:
    """One ``output_drift`` event naming what drifted (score, class balance, low-confidence
    share, per-class probability, regression prediction) with the figures; critical when a
    CBPE-estimated accuracy drop agrees in the same window (the one page for both)."""
    output = evaluation.output
    if output is None or not output.drifted:
        return None
    found = output.to_dict()
    drifted = {name: found["signals"][name] for name in output.drifted_signals}
    first = output.signals[output.drifted_signals[0]]
    summary = "; ".join(_describe(name, signal) for name, signal in drifted.items())
    if output.estimated_drop_agrees and output.estimated_drop is not None:
        summary += f"; CBPE-estimated accuracy {output.estimated_drop:.1%} below the reference"
    return drift_event(
        type="output_drift",
        severity="critical" if output.severity == "critical" else "warning",
        test="output",
        statistic=first.effect,
        p_value=min(s.adjusted_p_value for s in output.signals.values() if s.drifted),
        threshold=output.alpha,
        evidence={
            "summary": summary,
            "drifted_signals": list(output.drifted_signals),
            "signals": drifted,
            "confidence": found["confidence"],
            "class_ratio": found["class_ratio"],
            "reference_class_ratio": found["reference_class_ratio"],
            "estimated_accuracy": output.estimated_accuracy,
            "baseline_accuracy": output.baseline_accuracy,
            "estimated_drop": output.estimated_drop,
            "estimated_drop_agrees": output.estimated_drop_agrees,
        },
        **_window_fields(evaluation, detected_at),
    )


def suppress_combined(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop an ``estimated_performance_drop`` event of a window whose ``output_drift`` event
    already carries the agreeing CBPE drop (one page, not two); everything else unchanged.

    >>> out = {"type": "output_drift", "window_start": 0.0, "model": "m",
    ...        "evidence": {"estimated_drop_agrees": True}}
    >>> cbpe = {"type": "estimated_performance_drop", "window_start": 0.0, "model": "m"}
    >>> [e["type"] for e in suppress_combined([out, cbpe])]
    ['output_drift']
    """
    combined = {
        (e["model"], e.get("window_start"))
        for e in events
        if e["type"] == "output_drift" and e.get("evidence", {}).get("estimated_drop_agrees")
    }
    return [
        e
        for e in events
        if not (
            e["type"] == "estimated_performance_drop"
            and (e["model"], e.get("window_start")) in combined
        )
    ]


def _data_events(evaluation: WindowEvaluation, detected_at: float) -> list[dict[str, Any]]:
    common = _window_fields(evaluation, detected_at)
    events = []
    for name in evaluation.drifted_features:
        feature = evaluation.features[name]
        verdict = feature.tests[feature.verdict_test]
        events.append(
            drift_event(
                type="data_drift",
                severity="critical" if feature.critical else "warning",
                feature=name,
                test=feature.verdict_test,
                statistic=verdict.statistic,
                p_value=feature.adjusted_p_value,
                threshold=feature.alpha,
                evidence={
                    "raw_p_value": feature.p_value,
                    "effect_measure": feature.effect_measure,
                    "effect": feature.effect,
                    "min_effect": feature.min_effect,
                    "n": feature.n,
                    "drift_share": evaluation.drift_share,
                    "tests": {k: t.to_dict() for k, t in feature.tests.items()},
                },
                **common,
            )
        )
    multivariate = evaluation.multivariate
    if multivariate is not None and multivariate.drifted:
        best = min(multivariate.adjusted_p_values, key=multivariate.adjusted_p_values.__getitem__)
        events.append(
            drift_event(
                type="multivariate_drift",
                severity="warning",
                test=best,
                statistic=multivariate.tests[best].statistic,
                p_value=multivariate.adjusted_p_values[best],
                threshold=multivariate.alpha,
                evidence=multivariate.to_dict(),
                **common,
            )
        )
    return events


def service_events(
    evaluation: WindowEvaluation, thresholds: ModelThresholds, detected_at: float
) -> list[dict[str, Any]]:
    """Serving incidents of one window: error rate and latency p99 above their limits
    (`max_error_rate`, `max_latency_p99_seconds` in config/drift_thresholds.yaml). Checked on
    every window with records, tested or not: an outage must not wait for `min_samples`."""
    summary = evaluation.summary
    common = _window_fields(evaluation, detected_at)
    events = []
    limit = thresholds.max_error_rate
    if summary.n_records and summary.error_rate > limit:
        events.append(
            drift_event(
                type="error_rate",
                severity=drop_severity(summary.error_rate, limit),
                test="error_rate",
                statistic=summary.error_rate,
                threshold=limit,
                evidence={"error_counts": summary.error_counts, "n": summary.n_records},
                **common,
            )
        )
    p99 = summary.latency_p99_seconds
    limit = thresholds.max_latency_p99_seconds
    if p99 is not None and p99 > limit:
        events.append(
            drift_event(
                type="latency",
                severity=drop_severity(p99, limit),
                test="latency_p99_seconds",
                statistic=p99,
                threshold=limit,
                evidence={
                    "p50": summary.latency_p50_seconds,
                    "p95": summary.latency_p95_seconds,
                    "p99": p99,
                },
                **common,
            )
        )
    return events


def drop_severity(value: float, limit: float) -> Severity:
    """The one severity rule of a value above its limit: critical beyond twice the limit.

    >>> drop_severity(0.06, 0.05), drop_severity(0.11, 0.05)
    ('warning', 'critical')
    """
    return "critical" if value > 2 * limit else "warning"


def performance_drop_event(
    *,
    model: str,
    model_version: str,
    window_start: float,
    window_end: float,
    accuracy: float | None,
    baseline: float | None,
    drop: float | None,
    limit: float,
    labelled: int,
    coverage: float | None,
    final: bool,
    min_coverage: float,
    min_labelled: int,
    detected_at: float,
) -> dict[str, Any] | None:
    """A `performance_drop` if the realised accuracy fell more than `limit` (relative) below
    the reference's. A final window (label horizon passed) always counts; a provisional one
    only with `coverage >= min_coverage` and `labelled >= min_labelled`, so that a handful of
    early labels cannot page. The id does not depend on `final`: a window raises one event.

    >>> common = dict(model="m", model_version="1", window_start=0.0, window_end=60.0,
    ...     accuracy=0.8, baseline=0.9, drop=0.111, limit=0.05, detected_at=1.0,
    ...     min_coverage=0.8, min_labelled=200)
    >>> performance_drop_event(labelled=5, coverage=0.01, final=False, **common) is None
    True
    >>> performance_drop_event(labelled=900, coverage=0.9, final=False, **common)["severity"]
    'critical'
    >>> performance_drop_event(labelled=5, coverage=0.01, final=True, **common)["type"]
    'performance_drop'
    """
    if drop is None or drop <= limit:
        return None
    if not final and (coverage is None or coverage < min_coverage or labelled < min_labelled):
        return None
    return drift_event(
        type="performance_drop",
        severity=drop_severity(drop, limit),
        model=model,
        model_version=model_version,
        window_start=window_start,
        window_end=window_end,
        detected_at=detected_at,
        test="accuracy",
        statistic=accuracy,
        threshold=limit,
        evidence={
            "baseline_accuracy": baseline,
            "relative_drop": drop,
            "labelled": labelled,
            "label_coverage": coverage,
            "final": final,
        },
    )


def estimated_performance_drop_event(
    evaluation: WindowEvaluation,
    estimate: dict[str, float | None],
    baseline: float | None,
    drop: float | None,
    limit: float,
    detected_at: float,
) -> dict[str, Any] | None:
    """An `estimated_performance_drop` (label-free CBPE estimate, always a warning) when an
    evaluated window's estimated accuracy fell more than `limit` below the reference's."""
    if evaluation.status != "evaluated" or drop is None or drop <= limit:
        return None
    return drift_event(
        type="estimated_performance_drop",
        severity="warning",
        test="cbpe_accuracy",
        statistic=estimate.get("accuracy"),
        threshold=limit,
        evidence={"estimate": estimate, "baseline_accuracy": baseline, "relative_drop": drop},
        **_window_fields(evaluation, detected_at),
    )


def concept_event(model: str, version: str, found: Detection, detected_at: float) -> dict[str, Any]:
    """The ``concept_drift`` event of one detection (``detectors/concept/stage.py``). Its id
    hashes model, version, detector and the detection's index in the version's ordered stream:
    a replay gives the same id. ``statistic`` is the change of the error rate (after - before).

    >>> from driftline.detectors.concept import Detection
    >>> found = Detection("adwin", "ADWIN", "error", 1200, 1.7e9, "p-1200", 1100, 1.69e9,
    ...                   0.05, 0.25, "critical")
    >>> event = concept_event("fraud", "3", found, 1.7e9)
    >>> event["type"], event["severity"], round(event["statistic"], 2), event["evidence"]["labels_seen"]
    ('concept_drift', 'critical', 0.2, 1201)
    >>> event["event_id"] == concept_event("fraud", "3", found, 1.8e9)["event_id"]
    True
    """
    change = None
    if found.error_before is not None and found.error_after is not None:
        change = found.error_after - found.error_before
    return drift_event(
        type="concept_drift",
        severity=found.severity,
        model=model,
        model_version=version,
        window_start=None,
        window_end=None,
        detected_at=detected_at,
        test=found.detector,
        statistic=change,
        evidence={
            "detector": found.detector,
            "kind": found.kind,
            "stream": found.stream,
            "index": found.index,
            "sample": found.index,  # the name `alerts tail` and earlier consumers read
            "labels_seen": found.labels_seen,
            "prediction_id": found.prediction_id,
            "event_time": found.event_time,
            "change_index": found.change_index,
            "change_time": found.change_time,
            "error_before": found.error_before,
            "error_after": found.error_after,
            "also_fired": list(found.also),
            "suppressed_by_cooldown": found.suppressed,
        },
        identity=f"{found.detector}/{found.index}",
    )
