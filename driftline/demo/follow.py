"""Following the demo's story on the topics while the traffic runs: detections, alerts,
retraining, the A/B test and the promotion."""

from __future__ import annotations

import queue
import time
from typing import Any

from confluent_kafka import Consumer
from rich.console import Console
from rich.live import Live

from driftline.demo.shell import _drain, _SlackReceiver
from driftline.demo.story import (
    BROKEN_FEATURE,
    DATA_QUALITY_FALLBACK,
    DETECTED_BY,
    MISSING_RATE_SEEN,
    MODEL,
    Plan,
    Story,
    _event_time_of,
    _missing_rate,
    detection_of,
)
from driftline.demo.view import _live_table


def _story(
    out: Console,
    story: Story,
    plan: Plan,
    service: Any,
    router: Any,
    registry: Any,
    worker: Any,
    alerts: Consumer,
    summaries: Consumer,
    receiver: _SlackReceiver,
) -> bool:
    """Serve traffic and follow driftline until the promotion (plus ``after_windows``)."""
    block = max(50, int(plan.rate * plan.speedup / 4))  # about four blocks a second
    index = 0
    after_needed = int(plan.after_windows * plan.window_seconds * plan.rate)
    served_after = 0
    deadline = time.time() + plan.budget_seconds
    test_seen: str | None = None
    story.phase = "waiting for the worker to join"
    with Live(_live_table(story), console=out, refresh_per_second=4, transient=False) as live:
        time.sleep(5)  # the worker and the notifier join their groups before traffic starts
        paced_from = time.time()
        while served_after < after_needed:
            if time.time() > deadline:
                out.print(f"[red]time budget of {plan.budget_seconds:.0f} s spent[/]")
                break
            if worker.poll() is not None:
                return False
            offset = index / plan.rate
            decision = router.decision(MODEL)
            promoted = decision is not None and decision.champion != "1"
            if decision is not None:
                story.routing = (
                    f"{MODEL}@{decision.champion} {1 - decision.challenger_share:.0%} / "
                    f"{MODEL}@{decision.challenger} {decision.challenger_share:.0%}"
                    if decision.challenger
                    else f"{MODEL}@{decision.champion} 100%"
                )
                if decision.challenger and test_seen is None:
                    test_seen = decision.challenger
                    story.ab = f"running: {MODEL}@{decision.challenger} vs @1"
                    out.print(
                        f"A/B test started: {MODEL}@{decision.challenger} gets {decision.challenger_share:.0%} of traffic"
                    )
            if promoted and story.promoted_wall is None:
                story.promoted_wall = time.time()
                story.promoted_version = decision.champion if decision else None
                story.ab = f"promoted {MODEL}@{story.promoted_version}"
                out.print(
                    f"[green]promoted[/]: {MODEL}@{story.promoted_version} now serves all traffic"
                )
            for _kind, incident in story.incidents.items():
                if incident.injected_wall is None and offset >= incident.onset:
                    incident.injected_wall = time.time()
                    out.print(f"injected at {story.offset(story.start + offset)}: {incident.title}")
            phase = (
                "after"
                if promoted
                else "degraded"
                if offset >= plan.onsets["concept drift"]
                else "before"
            )
            story.phase = {
                "before": "serving",
                "degraded": "concept drift: waiting for retraining and the A/B test",
                "after": "serving the promoted model",
            }[phase]
            served = service.serve(
                block,
                seed=21,
                first_index=index,
                start_time=story.start,
                rate_per_second=plan.rate,
                schedule=plan.schedule,
            )
            index += len(served)
            story.served = index
            for record, label in served:
                tally = story.tally.setdefault((phase, str(record["model_version"])), [0, 0])
                tally[0] += int(record["prediction"] == label["label"])
                tally[1] += 1
            if phase == "after":
                served_after += len(served)
            _follow(out, story, alerts, summaries, receiver, registry)
            live.update(_live_table(story))
            lag = paced_from + index / plan.rate / plan.speedup - time.time()
            if lag > 0:
                time.sleep(lag)
        story.phase = "waiting for the last windows"
        settle = time.time() + max(8.0, 3 * plan.window_seconds / plan.speedup)
        while time.time() < settle and any(
            i.detected_wall is None for i in story.incidents.values()
        ):
            _follow(out, story, alerts, summaries, receiver, registry)
            live.update(_live_table(story))
            time.sleep(0.3)
        alert_wait = time.time() + 5
        while time.time() < alert_wait and any(
            i.detected_wall is not None and i.alert_wall is None for i in story.incidents.values()
        ):
            _follow(out, story, alerts, summaries, receiver, registry)
            time.sleep(0.3)
        story.phase = "done"
        live.update(_live_table(story))
    out.print()
    return True


def _follow(
    out: Console,
    story: Story,
    alerts: Consumer,
    summaries: Consumer,
    receiver: _SlackReceiver,
    registry: Any,
) -> None:
    now = time.time()
    for event in _drain(alerts):
        story.events.append(event)
        if event.get("type") == "ab_decision":
            evidence = event.get("evidence") or {}
            p_value = event.get("p_value")
            story.ab = f"{evidence.get('decision')} {MODEL}@{evidence.get('challenger')}" + (
                f" (p = {p_value:.2g})" if isinstance(p_value, int | float) else ""
            )
        if event.get("type") == "output_drift":  # label-free early warning from the outputs
            summary = (event.get("evidence") or {}).get("summary") or ""
            out.print(
                f"[cyan]output drift[/] {event.get('model')}@{event.get('model_version')}: {summary}"
            )
        if event.get("type") == "retraining_failed":
            story.retraining = "failed: " + str((event.get("evidence") or {}).get("error"))[:50]
        at = _event_time_of(event)
        for kind, incident in story.incidents.items():
            if incident.injected_wall is None:
                continue
            if at is not None and at < story.start + incident.onset:
                continue  # evidence from before the incident: not its detection
            via = detection_of(kind, event)
            # A fallback detection gives way to the expected event type when it comes.
            upgrade = (
                via is not None
                and incident.detected_wall is not None
                and not incident.via.startswith(DETECTED_BY[kind])
                and via.startswith(DETECTED_BY[kind])
            )
            if via and (incident.detected_wall is None or upgrade):
                # driftline's own detection time (wall clock), not when the demo read it
                detected_at = event.get("detected_at")
                incident.detected_wall = (
                    float(detected_at) if isinstance(detected_at, int | float) else now
                )
                incident.detected_event_time = at
                incident.via, incident.event_id = via, event.get("event_id")
                out.print(f"[green]detected[/] {incident.title}: {via} event")
    for summary in _drain(summaries):
        quality = story.incidents["data quality"]
        start = (summary.get("evaluation") or {}).get("window_start")
        if (
            DATA_QUALITY_FALLBACK
            and quality.detected_wall is None
            and quality.injected_wall is not None
            and summary.get("type") == "window"
            and isinstance(start, int | float)
            and start >= story.start + quality.onset - 1
            and _missing_rate(summary) >= MISSING_RATE_SEEN
        ):
            quality.detected_wall = now
            quality.detected_event_time = (summary.get("evaluation") or {}).get("window_end")
            quality.via = (
                f"window summary: {BROKEN_FEATURE} missing {_missing_rate(summary):.0%}"
                " (no data_quality event)"
            )
            out.print(f"[green]detected[/] {quality.title}: {quality.via}")
    while True:
        try:
            at, body = receiver.received.get_nowait()
        except queue.Empty:
            break
        title = str(body.get("text", ""))
        detail = " ".join(str(a.get("text", "")) for a in body.get("attachments") or [])
        story.slack.append((at, title, detail))
        out.print(f"[magenta]Slack would have received[/]: {title}")
        for incident in story.incidents.values():
            if incident.alert_wall is not None or not incident.event_id:
                continue
            kind_type, _, subject = incident.via.partition(" ")
            if incident.event_id in detail or (
                kind_type.replace("_", " ") in title and title.endswith(subject)
            ):
                incident.alert_wall = at
    if now - story.looked_at < 1.0:
        return
    story.looked_at = now
    runs = registry.runs(MODEL)
    if runs:
        last = runs[0]
        story.retraining = f"{last['status']} -> {MODEL}@{last.get('to_version') or '?'}"
