"""Running the demo: starts everything driftline runs in production on the run's own topics and
schema, serves the traffic, and reports the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer
from rich.console import Console

from driftline.config import Config, load_config
from driftline.demo.follow import _story
from driftline.demo.shell import (
    _environment,
    _quiet_libraries,
    _reader,
    _SlackReceiver,
    bootstrap_champion,
)
from driftline.demo.story import INCIDENTS, MODEL, Incident, Outcome, Plan, Story
from driftline.demo.view import _accuracy_table, _output_drift_line, _summary
from driftline.local import start_worker_process, stop_worker_processes
from driftline.streams.windows import window_starts


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
