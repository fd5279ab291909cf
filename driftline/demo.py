"""`driftline demo`: the main job, end to end, on the real local stack.

Builds a reference profile, starts a worker, publishes seven minutes (event time) of simulated
fraud-model traffic with its labels: an error incident in minute 1, a latency incident in
minute 2, `amount` drifts from minute 3, the label relation flips from minute 5, and a few
malformed messages are mixed in. Then it prints what the worker found: the
window verdicts, the performance windows, the drift events and the dead-letter count.
Topics are this run's own, so runs never see each other's data.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import Drift, publish, simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics

__all__ = ["run_demo"]

MALFORMED = [b"{not json", b'{"model": "fraud"}', b'"a string"']
WINDOW = 60
MINUTES = 7
RATE = 100.0


def run_demo(config: Config, config_path: Path | None) -> int:
    run = f"demo-{int(time.time())}"
    cache = Path(".cache") / "demo" / run
    references = cache / "references"
    references.mkdir(parents=True, exist_ok=True)
    env = {
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{run}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{run}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{run}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"{run}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"{run}.metrics",
        "DRIFTLINE_WORKER_APP_ID": run,
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(references),
        "DRIFTLINE_WORKER_DATA_DIR": str(cache / "worker"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": str(WINDOW),
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "5",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "5",
        "DRIFTLINE_LABELS_HORIZON_SECONDS": "30",
    }
    config = load_config(config_path, environ={**os.environ, **env})
    ensure_topics(config)

    records, labels = simulate(20_000, seed=99)
    ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    ).save(references / "fraud@1.json")
    print(f"reference profile: 20,000 simulated training records -> {references}/fraud@1.json")

    log_path = cache / "worker.log"
    print(f"starting a worker (log: {log_path})")
    worker = start_worker_process(config_path, log_path, env=env)
    summaries = TopicReader(config, config.topics.metrics, start="beginning")
    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    try:
        n = int(MINUTES * WINDOW * RATE)
        # The last seven minutes (window-aligned), replayed fast.
        start = (time.time() // WINDOW - MINUTES) * WINDOW
        schedule = [
            Drift("errors", 60, 120, magnitude=0.1),
            Drift("latency", 120, 180, magnitude=50.0),
            Drift("abrupt", 180, magnitude=0.5),
            Drift("concept", 300),
        ]
        print(
            f"publishing {n} predictions and labels: 10% errors 1:00-2:00, latency x50 2:00-3:00, "
            "amount +0.5 std from 3:00, labels flip from 5:00"
        )
        publish(
            config.kafka.bootstrap_servers,
            config.topics.predictions,
            config.topics.labels,
            n=n,
            seed=7,
            rate_per_second=RATE,
            start_time=start,
            schedule=schedule,
            label_delay=10.0,
            settings=config.kafka.confluent_settings(),
        )
        raw = Producer(config.kafka.confluent_settings())
        for payload in MALFORMED:
            raw.produce(config.topics.predictions, value=payload, key=b"malformed")
        raw.flush(30)

        windows: dict[float, dict[str, Any]] = {}
        performance: dict[float, dict[str, Any]] = {}
        for message in summaries.messages(timeout=180, stop=lambda: worker.poll() is not None):
            summary = orjson.loads(message.value() or b"{}")
            if summary["type"] == "window":
                windows[summary["evaluation"]["window_start"]] = summary
            else:
                performance[summary["window_start"]] = summary
            if len(windows) >= MINUTES - 1 and len(performance) >= MINUTES - 1:
                break
        if worker.poll() is not None:
            print(f"demo FAILED: the worker exited with code {worker.returncode}; see {log_path}")
            return 1
        events = [orjson.loads(m.value() or b"{}") for m in alerts.messages(timeout=10, idle=3)]
        dead = TopicReader(config, config.topics.dlq, start="beginning")
        dlq: Counter[str] = Counter()
        for message in dead.messages(timeout=10, idle=3):
            kind = dict(message.headers() or []).get("driftline.reason.kind") or b"?"
            dlq[kind.decode() if isinstance(kind, bytes) else kind] += 1
        dead.close()
        _report(start, windows, performance, events, dlq)
        ok = len(windows) >= MINUTES - 1 and sum(dlq.values()) == len(MALFORMED)
        ok = ok and any(e["type"] == "data_drift" for e in events)
        found = {e["type"] for e in events}
        ok = ok and {"data_drift", "concept_drift", "error_rate", "latency"} <= found
        print("demo OK" if ok else "demo FAILED: see above")
        return 0 if ok else 1
    finally:
        stop_worker_processes([worker])
        summaries.close()
        alerts.close()


def _report(
    start: float,
    windows: dict[float, dict[str, Any]],
    performance: dict[float, dict[str, Any]],
    events: list[dict[str, Any]],
    dlq: Counter[str],
) -> None:
    def minute(t: float) -> str:
        offset = int(t - start + 0.5) if t >= start else 0
        return f"{offset // 60}:{offset % 60:02d}"

    print("\nwindow   records  drifted features         est. accuracy  accuracy  coverage")
    for window_start in sorted(windows):
        evaluation = windows[window_start]["evaluation"]
        estimated = windows[window_start]["estimated_performance"].get("accuracy")
        perf = performance.get(window_start, {})
        accuracy = (perf.get("metrics") or {}).get("accuracy")
        print(
            f"{minute(window_start):>6}  {evaluation['summary'].get('n_records')!s:>8}  "
            f"{', '.join(evaluation['drifted_features']) or '-':<24} "
            f"{_number(estimated):>13}  {_number(accuracy):>8}  "
            f"{perf.get('label_coverage', '-')!s:>8}"
        )
    print(f"\n{len(events)} drift events on the alerts topic:")

    def when(event: dict[str, Any]) -> float:
        return float(event["window_start"] or event["evidence"].get("event_time", start))

    for event in sorted(events, key=when):
        where = event.get("feature") or event.get("test")
        print(
            f"  {event['severity']:8} {event['type']:28} {where or '-':20} at {minute(when(event))}"
        )
    print(f"dead-letter topic: {sum(dlq.values())} messages {dict(dlq)}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
