"""`driftline demo`: the seed's story, end to end on the running local stack, in a few minutes.

A fraud model (scikit-learn, trained on "before" data) serves simulated traffic at a steady rate
through the A/B router (:class:`driftline.retrain.traffic.RoutedService`). Three incidents are
injected, one after the other (event time, compressed: windows close every few seconds):

1. a shopping-pattern shift: ``txn_per_day`` moves by 1.5 standard deviations (data drift);
2. a broken upstream feature: ``distance_from_home_km`` arrives null (data quality);
3. a change in fraud behaviour: the label relation flips (concept drift).

Everything driftline runs in production runs here too, on this run's own topics and PostgreSQL
schema (runs never see each other's data): the worker (a child process), the PostgreSQL sink,
the training-sample sink, ``retrain serve`` (policies, pipeline, A/B evaluator) and the notifier
posting to a local HTTP receiver that prints what Slack would have received. The demo waits for
each detection, the alerts, the retraining, the A/B test and the promotion; prints a summary
(detection delay per incident, alert latency, accuracy before/after) and writes the HTML report.
It ends with ``demo OK`` (exit 0) or ``demo FAILED: ...`` (exit 1).
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.streams.windows import window_starts

__all__ = ["INCIDENTS", "Outcome", "Plan", "bootstrap_champion", "detection_of", "play", "run_demo"]

MODEL = "fraud"
SHIFTED_FEATURE = "txn_per_day"
BROKEN_FEATURE = "distance_from_home_km"

# What counts as the detection of each incident: event types, in order of preference. THE one
# place to tighten once the data-quality verdict (``data_quality`` events) is merged: today's
# worker raises no event for a null feature, so the demo falls back to the window summary's
# missing rate (driftline's own output on the metrics topic) and says so. Set
# DATA_QUALITY_FALLBACK = False to require the ``data_quality`` event.
DETECTED_BY: dict[str, tuple[str, ...]] = {
    "data drift": ("data_drift", "multivariate_drift"),
    "data quality": ("data_quality",),
    "concept drift": ("concept_drift", "performance_drop"),
}
DATA_QUALITY_FALLBACK = False
MISSING_RATE_SEEN = 0.5  # window missing rate of the broken feature that counts as seen


@dataclass(frozen=True)
class Plan:
    """The story's timing. Offsets are event-time seconds after the start; the event clock
    runs ``speedup`` times faster than the wall clock."""

    window_seconds: int = 60
    rate: float = 40.0  # predictions per event-time second
    speedup: float = 12.0  # event-time seconds per wall-clock second
    baseline_windows: int = 2
    incident_windows: int = 2  # how long the shift and the broken feature last
    after_windows: int = 2  # served after the promotion, to measure the recovered accuracy
    budget_seconds: float = 270.0  # wall clock for the traffic, then the demo gives up
    training_records: int = 6000  # the "before" data of model version 1
    min_new_labels: int = 1000  # labelled records after the concept drift before retraining
    ab_min_samples_per_arm: int = 300

    @property
    def onsets(self) -> dict[str, float]:
        w = self.window_seconds
        shift = self.baseline_windows * w
        broken = shift + self.incident_windows * w
        return {
            "data drift": float(shift),
            "data quality": float(broken),
            "concept drift": float(broken + self.incident_windows * w),
        }

    @property
    def schedule(self) -> list[Drift]:
        o = self.onsets
        return [
            Drift("abrupt", o["data drift"], o["data quality"], 1.5, feature=SHIFTED_FEATURE),
            Drift("missing", o["data quality"], o["concept drift"], 1.0, feature=BROKEN_FEATURE),
            Drift("concept", o["concept drift"]),
        ]


INCIDENTS = {
    "data drift": f"shopping-pattern shift: {SHIFTED_FEATURE} +1.5 std",
    "data quality": f"broken upstream feature: {BROKEN_FEATURE} null",
    "concept drift": "fraud behaviour changes: the label relation flips",
}


@dataclass
class Incident:
    kind: str
    title: str
    onset: float  # event-time offset
    injected_wall: float | None = None
    detected_wall: float | None = None  # when driftline detected it (the event's detected_at)
    detected_event_time: float | None = None
    via: str = ""
    event_id: str | None = None
    alert_wall: float | None = None
    alert_title: str = ""


@dataclass
class Story:
    plan: Plan
    start: float  # event time of offset 0
    incidents: dict[str, Incident]
    phase: str = "starting"
    served: int = 0
    routing: str = f"{MODEL}@1 100%"
    tally: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # phase, version
    retraining: str = "-"
    ab: str = "-"
    promoted_wall: float | None = None
    promoted_version: str | None = None
    slack: list[tuple[float, str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    looked_at: float = 0.0

    def offset(self, event_time: float) -> str:
        seconds = max(0, int(event_time - self.start + 0.5))
        return f"{seconds // 60}:{seconds % 60:02d}"

    def accuracy(self, phase: str) -> float | None:
        """Realised accuracy of a phase (``before``, ``degraded``, ``after``), every version."""
        right = sum(v[0] for (p, _), v in self.tally.items() if p == phase)
        n = sum(v[1] for (p, _), v in self.tally.items() if p == phase)
        return right / n if n else None


def _event_time_of(event: dict[str, Any]) -> float | None:
    """When (event time) the evidence was complete: the window's end, or the triggering
    prediction of a per-sample detection."""
    if isinstance(event.get("window_end"), int | float):
        return float(event["window_end"])
    evidence = event.get("evidence") or {}
    value = evidence.get("event_time")
    return float(value) if isinstance(value, int | float) else None


def detection_of(kind: str, event: dict[str, Any]) -> str | None:
    """How ``event`` detects the incident ``kind`` (a label for the summary), or None.

    >>> detection_of("data drift", {"type": "data_drift", "feature": "txn_per_day"})
    'data_drift txn_per_day'
    >>> detection_of("data quality", {"type": "data_quality", "feature": "distance_from_home_km"})
    'data_quality distance_from_home_km'
    >>> detection_of("concept drift", {"type": "data_drift", "feature": "amount"}) is None
    True
    """
    kind_type = str(event.get("type"))
    feature = event.get("feature")
    if kind == "data drift":
        ok = kind_type == "multivariate_drift" or (
            kind_type == "data_drift" and feature == SHIFTED_FEATURE
        )
    elif kind == "data quality":
        ok = kind_type.startswith(DETECTED_BY[kind]) and feature in (BROKEN_FEATURE, None)
        if not ok and DATA_QUALITY_FALLBACK:
            ok = feature == BROKEN_FEATURE  # another event type naming the broken feature
    else:
        ok = kind_type in DETECTED_BY[kind]
    return f"{kind_type} {feature or event.get('test') or ''}".strip() if ok else None


def _missing_rate(summary: dict[str, Any]) -> float:
    evaluation = summary.get("evaluation") or {}
    rates = (evaluation.get("summary") or {}).get("missing_rate") or {}
    return float(rates.get(BROKEN_FEATURE) or 0.0)


class _SlackReceiver(http.server.ThreadingHTTPServer):
    """A local stand-in for a Slack incoming webhook: keeps what it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with suppress(ValueError):
                    receiver.received.put((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the demo prints the messages itself

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/slack"


@contextmanager
def _quiet_libraries(log_path: Path) -> Iterator[TextIO]:
    """Send everything libraries write to stderr (librdkafka's ``%6|...|`` lines, Python
    logging, warnings) to ``log_path``; yield the terminal's stdout for the demo's output."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    saved_fd = os.dup(2)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    with open(log_path, "a", buffering=1) as log_file:
        sys.stderr.flush()
        os.dup2(log_file.fileno(), 2)
        saved_stderr, sys.stderr = sys.stderr, log_file
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        try:
            yield terminal
        finally:
            root.handlers, root.level = saved_handlers, saved_level
            sys.stderr = saved_stderr
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def _reader(config: Config, topic: str) -> Consumer:
    consumer = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"{config.worker.app_id}-demo-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = metadata.topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def _drain(consumer: Consumer) -> list[dict[str, Any]]:
    out = []
    for message in consumer.consume(1000, timeout=0):
        if message.error() is None and message.value():
            try:
                value = orjson.loads(message.value() or b"")
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _environment(run: str, cache: Path, plan: Plan, slack_url: str, pg_url: str) -> dict[str, str]:
    policies = cache / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: degradation\n    triggers: concept_drift,performance_drop\n"
        f"    cooldown_seconds: 3600\n    min_new_labels: {plan.min_new_labels}\n"
    )
    separator = "&" if "?" in pg_url else "?"
    schema = run.replace("-", "_")
    return {
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{run}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{run}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{run}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"{run}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"{run}.metrics",
        "DRIFTLINE_WORKER_APP_ID": run,
        "DRIFTLINE_WORKER_METRICS_PORT": str(free_port()),
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(cache / "references"),
        "DRIFTLINE_WORKER_DATA_DIR": str(cache / "worker"),
        "DRIFTLINE_WORKER_BATCH_TIMEOUT_SECONDS": "0.2",
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": str(plan.window_seconds),
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "2",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "3",
        "DRIFTLINE_LABELS_HORIZON_SECONDS": str(max(10, plan.window_seconds // 2)),
        "DRIFTLINE_RETRAINING_CONTROL_TOPIC": f"{run}.model-control",
        "DRIFTLINE_RETRAINING_ARTIFACT_DIR": str(cache / "artifacts"),
        "DRIFTLINE_RETRAINING_POLICIES_FILE": str(policies),
        "DRIFTLINE_RETRAINING_SAMPLE_RATE": "1.0",
        "DRIFTLINE_RETRAINING_CHALLENGER_TRAFFIC_SHARE": "0.5",
        "DRIFTLINE_RETRAINING_AB_MIN_SAMPLES_PER_ARM": str(plan.ab_min_samples_per_arm),
        "DRIFTLINE_RETRAINING_EVALUATE_INTERVAL_SECONDS": "1",
        "DRIFTLINE_NOTIFICATIONS_SLACK_WEBHOOK_URL": slack_url,
        # The notifier's alert history and every other store use the run's own schema.
        "DRIFTLINE_POSTGRES_URL": f"{pg_url}{separator}options={quote(f'-csearch_path={schema}')}",
    }


def bootstrap_champion(
    store: Any,
    artifact_dir: Path,
    references: Path,
    *,
    training_records: int,
    model_name: str = MODEL,
    reason: str = "demo: trained on the before data",
) -> Any:
    """Model version 1 of ``model_name``: trained on ``training_records`` simulated "before"
    records (seed 11), its artifact stored, registered as champion, its reference profile
    (with its own predictions and scores) written to ``references``. Returns the fitted model.
    The demo and the retraining end-to-end test both start from it."""
    from driftline.retrain.pipeline import store_artifact
    from driftline.retrain.registry import Registry
    from driftline.retrain.sklearn_pipeline import fit, predict

    records, labels = simulate(training_records, seed=11, model=model_name, model_version="1")
    rows = [
        {"features": r["features"], "label": x["label"]}
        for r, x in zip(records, labels, strict=True)
    ]
    model = fit(rows)
    path, digest = store_artifact(artifact_dir, model_name, "1", pickle.dumps(model))
    Registry(store).register(
        model=model_name,
        version="1",
        status="champion",
        artifact_path=path,
        artifact_sha256=digest,
        reason=reason,
    )
    predicted, scores = predict(model, [r["features"] for r in records])
    for record, p, s in zip(records, predicted, scores, strict=True):
        record["prediction"], record["score"] = p, s
    references.mkdir(parents=True, exist_ok=True)
    ReferenceProfile.from_records(
        records, model=model_name, model_version="1", labels=[x["label"] for x in labels]
    ).save(references / f"{model_name}@1.json")
    return model


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


@dataclass
class Outcome:
    """What a run did: ``ok`` when every incident was detected, the retrained model promoted
    and the report written."""

    run: str
    schema: str
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    story: Story | None = None
    report: Path | None = None
    seconds: float = 0.0


def run_demo(
    config: Config,
    config_path: Path | None,
    *,
    plan: Plan | None = None,
    report_path: Path | None = None,
    console: Console | None = None,
) -> int:
    """The whole story; 0 when every incident was detected and the retrained model promoted."""
    outcome = play(config, config_path, plan=plan, report_path=report_path, console=console)
    return 0 if outcome.ok else 1


def play(
    config: Config,
    config_path: Path | None,
    *,
    plan: Plan | None = None,
    report_path: Path | None = None,
    console: Console | None = None,
    workdir: Path | None = None,
) -> Outcome:
    """Run the story (see the module docstring) and return what happened. ``workdir``: where
    the run's logs, artifacts and profiles go (default ``.cache/demo/<run>``)."""
    plan = plan or Plan()
    run = f"demo-{int(time.time())}"
    cache = (workdir or Path(".cache") / "demo") / run
    cache.mkdir(parents=True, exist_ok=True)
    log_path = cache / "demo.log"
    with _quiet_libraries(log_path) as terminal:
        # Not a terminal (CI, a pipe): wide enough that the tables do not wrap.
        width = None if terminal.isatty() else 120
        out = console or Console(file=terminal, highlight=False, width=width)
        return _run(config_path, plan, run, cache, log_path, report_path, out, config)


def _run(
    config_path: Path | None,
    plan: Plan,
    run: str,
    cache: Path,
    log_path: Path,
    report_path: Path | None,
    out: Console,
    base: Config,
) -> Outcome:
    from driftline.report import write_report
    from driftline.retrain.registry import Registry
    from driftline.retrain.sample import TrainingSampleSink
    from driftline.retrain.service import RetrainService, ensure_control_topic, serve
    from driftline.retrain.traffic import RoutedService
    from driftline.router import ModelRouter, RoutingDecision
    from driftline.sinks.postgres import PostgresSink
    from driftline.sinks.store import PostgresStore
    from driftline.streams.topics import ensure_topics

    wall_start = time.time()
    schema = run.replace("-", "_")
    outcome = Outcome(run, schema)
    receiver = _SlackReceiver()
    threading.Thread(target=receiver.serve_forever, name="demo-slack", daemon=True).start()
    env = _environment(run, cache, plan, receiver.url, base.postgres.url.reveal())
    config = load_config(config_path, environ={**os.environ, **env})
    out.print(
        f"[bold]driftline demo[/] {run}: topics {run}.*, PostgreSQL schema {schema}, "
        f"library logs in {log_path}"
    )
    ensure_topics(config)
    ensure_control_topic(config)
    references = Path(config.worker.reference_dir)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    worker = notifier = None
    store = PostgresStore(base.postgres.dsn(), schema=schema)
    sink_store = PostgresStore(base.postgres.dsn(), schema=schema)
    consumers: list[Consumer] = []
    try:
        store.create_schema()
        store.upgrade()
        # `driftline notify` as users run it, pointed at the local receiver by the environment.
        command = [sys.executable, "-m", "driftline"]
        command += ["--config", str(config_path)] if config_path is not None else []
        with open(cache / "notify.log", "ab") as notify_log:
            notifier = subprocess.Popen(
                [*command, "notify"],
                stdout=notify_log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        champion = bootstrap_champion(
            store,
            Path(config.retraining.artifact_dir),
            references,
            training_records=plan.training_records,
        )
        out.print(
            f"model {MODEL}@1 trained on {plan.training_records:,} 'before' records "
            "(scikit-learn), registered as champion, its reference profile written"
        )
        bootstrap = RetrainService(config, store)
        bootstrap.publish_routing(RoutingDecision(MODEL, "1", updated_at=time.time()))
        bootstrap.close()
        worker = start_worker_process(config_path, cache / "worker.log", env=env)
        sink = PostgresSink(config, sink_store)
        sample = TrainingSampleSink(config, store)
        services: list[tuple[str, Callable[[], Any]]] = [
            ("postgres-sink", lambda: sink.run(stop)),
            ("training-sample", lambda: sample.run(stop)),
            (
                "retrain-serve",
                lambda: serve(config, schema=schema, stop=stop, start="earliest", tick_seconds=1.0),
            ),
        ]
        for name, target in services:
            thread = threading.Thread(target=target, name=f"demo-{name}", daemon=True)
            thread.start()
            threads.append(thread)
        out.print(
            "started: worker (child process), PostgreSQL sink, training-sample sink, "
            "retrain serve, notifier -> local Slack receiver"
        )
        # The notifier starts at the end of the topics: it must be in its groups before traffic.
        groups = [f"{config.worker.app_id}-notify", f"{config.worker.app_id}-notify-windows"]
        if not _groups_stable(config, groups, timeout=60):
            out.print("[yellow]the notifier has not joined its consumer groups after 60 s[/]")
        alerts = _reader(config, config.topics.alerts)
        summaries = _reader(config, config.topics.metrics)
        consumers += [alerts, summaries]
        registry = Registry(store)
        span = plan.onsets["concept drift"] + (plan.after_windows + 3) * plan.window_seconds
        now = np.array([time.time()])
        start = float(window_starts(now, float(plan.window_seconds))[0]) - span
        story = Story(
            plan,
            start,
            {k: Incident(k, INCIDENTS[k], onset) for k, onset in plan.onsets.items()},
        )
        outcome.story = story
        with ModelRouter(
            config.kafka.bootstrap_servers,
            config.retraining.control_topic,
            default_versions={MODEL: "1"},
            settings=config.kafka.confluent_settings(),
        ) as router:
            service = RoutedService(config, registry, router, MODEL, preloaded={"1": champion})
            ok = _story(
                out, story, plan, service, router, registry, worker, alerts, summaries, receiver
            )
            service.flush()
        if worker.poll() is not None:
            out.print(
                f"[red]the worker exited with code {worker.returncode}[/]; see {cache / 'worker.log'}"
            )
        report = report_path or cache / "report.html"
        sink_wait = time.monotonic() + 15
        while time.monotonic() < sink_wait and not _stored(store):
            time.sleep(0.5)
        time.sleep(2)  # the sink's last flush
        try:
            path = write_report(
                config.postgres.url.reveal(),
                report,
                model=MODEL,
                model_version=None,
                since=datetime.fromtimestamp(start, UTC) - timedelta(hours=1),
                schema=schema,
            )
            outcome.report = path.resolve()
            report_line = (
                f"HTML report: {path.resolve()} ({path.stat().st_size // 1024} KiB)\n"
                f"the run's data stays in schema {schema} and topics {run}.*: rebuild the report"
                f" with `driftline report --model {MODEL} --schema {schema} --since 24h`"
            )
        except Exception as exc:
            ok = False
            report_line = f"[red]HTML report FAILED[/]: {type(exc).__name__}: {exc}"
        out.print(_summary(story))
        out.print(_output_drift_line(story))
        out.print(_accuracy_table(story))
        out.print(report_line)
        missing = [i.title for i in story.incidents.values() if i.detected_wall is None]
        outcome.seconds = elapsed = time.time() - wall_start
        reasons = outcome.reasons
        if missing:
            reasons.append(f"not detected: {', '.join(missing)}")
        if story.promoted_version is None:
            reasons.append("the retrained model was not promoted")
        if not ok and not reasons:
            reasons.append("see above")
        if reasons:
            out.print(
                f"[bold red]demo FAILED[/] after {elapsed:.0f} s: {'; '.join(reasons)}"
                f" (logs: {cache})"
            )
            return outcome
        alerted = sum(i.alert_wall is not None for i in story.incidents.values())
        before, after = story.accuracy("before"), story.accuracy("after")
        out.print(
            f"[bold green]demo OK[/] in {elapsed:.0f} s: {len(story.incidents)} incidents detected"
            f" ({alerted} alerted on Slack), {MODEL}@{story.promoted_version} retrained,"
            f" A/B tested and promoted; accuracy {before or 0:.3f} before the concept drift,"
            f" {story.accuracy('degraded') or 0:.3f} during it, {after or 0:.3f} after"
        )
        outcome.ok = True
        return outcome
    finally:
        stop.set()
        if worker is not None:
            stop_worker_processes([worker])
        if notifier is not None:
            stop_worker_processes([notifier], timeout=10)
        for thread in threads:
            thread.join(30)
        for consumer in consumers:
            consumer.close()
        receiver.shutdown()
        store.close()
        sink_store.close()


def _groups_stable(config: Config, groups: list[str], timeout: float) -> bool:
    """True once every consumer group has a member with an assignment (or False at timeout)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(config.kafka.confluent_settings())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            described = [f.result(10) for f in admin.describe_consumer_groups(groups).values()]
        except Exception:
            described = []
        if described and all(
            d.state == ConsumerGroupState.STABLE
            and any(m.assignment and m.assignment.topic_partitions for m in d.members)
            for d in described
        ):
            return True
        time.sleep(0.5)
    return False


def _stored(store: Any) -> bool:
    try:
        with store.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM drift_events").fetchone()
        return bool(row and row[0])
    except Exception:
        return False


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
