"""How the demo shows its story in the terminal (rich tables): the live view while it runs and
the summary at the end."""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table

from driftline.demo.story import MODEL, Story, _event_time_of


def _live_table(story: Story) -> Group:
    now = time.time()
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]{story.phase}[/]",
        f"served {story.served:,}",
        f"routing {story.routing}",
        f"retraining {story.retraining}",
        f"A/B {story.ab}",
    )
    table = Table(title="driftline demo", expand=False)
    for column in ("incident", "injected at", "status", "detected by", "alert"):
        table.add_column(column)
    for incident in story.incidents.values():
        if incident.detected_wall is not None:
            status = f"[green]detected[/] after {incident.detected_wall - (incident.injected_wall or 0):.1f} s"
        elif incident.injected_wall is not None:
            status = f"[yellow]injected[/] {now - incident.injected_wall:.0f} s ago"
        else:
            status = "waiting"
        alert = (
            f"sent {incident.alert_wall - (incident.detected_wall or 0):+.1f} s"
            if incident.alert_wall
            else "-"
        )
        table.add_row(
            incident.title,
            story.offset(story.start + incident.onset),
            status,
            incident.via or "-",
            alert,
        )
    return Group(head, table)


def _output_drift_line(story: Story) -> str:
    """One line on the model's outputs (scores, class balance, confidence): the label-free
    evidence that arrives before any label."""
    drifts = [e for e in story.events if e.get("type") == "output_drift"]
    if not drifts:
        return "output drift: none (the model's score and class distributions held)"
    first = drifts[0]
    summary = (first.get("evidence") or {}).get("summary") or first.get("feature") or ""
    return f"output drift: {len(drifts)} event(s), first at {story.offset(_event_time_of(first) or story.start)}: {summary}"


def _summary(story: Story) -> Table:
    table = Table(title="summary")
    for column in (
        "incident",
        "detected by",
        "delay (event time)",
        "delay (wall)",
        "alert latency",
    ):
        table.add_column(column)
    for i in story.incidents.values():
        event_delay = (
            f"{i.detected_event_time - (story.start + i.onset):.0f} s"
            if i.detected_event_time is not None
            else "-"
        )
        wall = (
            f"{i.detected_wall - i.injected_wall:.1f} s"
            if i.detected_wall is not None and i.injected_wall is not None
            else "NOT DETECTED"
        )
        alert = (
            f"{i.alert_wall - i.detected_wall:.2f} s"
            if i.alert_wall is not None and i.detected_wall is not None
            else "-"
        )
        table.add_row(i.title, i.via or "-", event_delay, wall, alert)
    return table


def _accuracy_table(story: Story) -> Table:
    table = Table(title="realised accuracy (served predictions vs their labels)")
    for column in ("phase", "model", "predictions", "accuracy"):
        table.add_column(column)
    labels = {
        "before": "before the concept drift",
        "degraded": "concept drift, until the promotion",
        "after": "after the promotion",
    }
    for (phase, version), (right, n) in sorted(
        story.tally.items(), key=lambda item: (list(labels).index(item[0][0]), item[0][1])
    ):
        table.add_row(labels[phase], f"{MODEL}@{version}", f"{n:,}", f"{right / n:.3f}")
    return table
