"""Detection latency through the whole pipeline, in real time, on the real local Kafka.

Run from the repository root, with the local stack up (``make up``)::

    source deploy/local/env.sh
    .cache/venv/bin/python benchmarks/bench_detection_latency.py [--quick] [--repeats 3]

Each repeat starts a driftline worker (windows of 10 s, allowed lateness 2 s, idle timeout 5 s)
on fresh topics, waits until it is ready, then publishes simulated traffic in real time
(``driftline.simulate.publish(realtime=True, start_time=time.time(), rate_per_second=500)``,
about 60 s of event time, ``amount`` shifted by 1 std from ONSET = 30 s) while tailing the
alerts topic. Reported per repeat:

- onset -> alert: wall-clock receive time of the first ``data_drift`` event on the alerts topic
  minus the event time of the onset; target: window size + allowed lateness + < 5 s (the onset
  can fall anywhere inside a window, so the bound that holds whatever the phase is
  ``size + lateness + 5`` measured from the onset, and ``lateness + 5`` from the window end);
- window end -> alert: receive time minus ``window_end`` of the event's window;
- ``detected_at - window_end`` as written in the event.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from driftline import local
from driftline.local import free_port, start_worker_process, stop_worker_processes

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
WINDOW, LATENESS, IDLE = 10, 2, 5
RATE = 500.0
ONSET = 30.0
DURATION = 60.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def delete_topics(prefix: str) -> None:
    for failure in local.delete_topics(BOOTSTRAP, prefix):
        log(f"could not delete a topic: {failure}")


def one_run(
    i: int, references: Path, tmp: Path, ready_timeout: float, prefixes: list[str]
) -> dict[str, Any]:
    from driftline.config import load_config
    from driftline.simulate import Drift, publish
    from driftline.streams.reader import TopicReader
    from driftline.streams.topics import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    base = f"latency-{suffix}"
    prefixes.append(base)
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{base}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{base}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{base}.alerts",
        "DRIFTLINE_TOPICS_METRICS": f"{base}.metrics",
        "DRIFTLINE_TOPICS_DLQ": f"{base}.dlq",
        "DRIFTLINE_WORKER_APP_ID": base,
        "DRIFTLINE_WORKER_METRICS_PORT": str(free_port()),
        "DRIFTLINE_WORKER_DATA_DIR": str(tmp / base),
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(references),
        "DRIFTLINE_WORKER_THRESHOLDS_FILE": str(ROOT / "config" / "drift_thresholds.yaml"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": str(WINDOW),
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": str(LATENESS),
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": str(IDLE),
    }
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    log_path = tmp / f"worker-{i}.log"
    worker = start_worker_process(ROOT / "config" / "driftline.yaml", log_path, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while "[^Worker]: Ready" not in (log_path.read_text() if log_path.exists() else ""):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(2.0)  # partitions assigned after Ready; give the fetcher a moment
        reader = TopicReader(config, config.topics.alerts, start="end")
        start = time.time()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                publish(
                    BOOTSTRAP,
                    config.topics.predictions,
                    config.topics.labels,
                    n=int(DURATION * RATE),
                    seed=100 + i,
                    rate_per_second=RATE,
                    start_time=start,
                    schedule=[Drift("abrupt", ONSET, magnitude=1.0)],
                    realtime=True,
                )
            except BaseException as exc:
                errors.append(exc)

        publisher = threading.Thread(target=produce, daemon=True)
        publisher.start()
        onset = start + ONSET
        events: list[tuple[float, dict[str, Any]]] = []
        first_drift: tuple[float, dict[str, Any]] | None = None
        try:
            # stop at the first data_drift event, or when the stream is over and 30 s passed
            for message in reader.messages(
                timeout=DURATION + 45, stop=lambda: worker.poll() is not None
            ):
                received = time.time()
                event = orjson.loads(message.value() or b"{}")
                events.append((received, event))
                if event.get("type") == "data_drift" and first_drift is None:
                    first_drift = (received, event)
                    break
        finally:
            reader.close()
        publisher.join(DURATION + 30)
        if errors:
            raise errors[0]
        result: dict[str, Any] = {
            "run": i,
            "start": start,
            "onset_event_time": onset,
            "events_before_first_drift": [e["type"] for _, e in events[:-1]],
        }
        if first_drift is None:
            result["detected"] = False
            return result
        received, event = first_drift
        result.update(
            detected=True,
            feature=event.get("feature"),
            window_start=event["window_start"],
            window_end=event["window_end"],
            onset_phase_in_window=onset - math.floor(onset / WINDOW) * WINDOW,
            onset_to_receive=received - onset,
            window_end_to_receive=received - event["window_end"],
            detected_at_minus_window_end=event["detected_at"] - event["window_end"],
            receive_minus_detected_at=received - event["detected_at"],
        )
        return result
    finally:
        stop_worker_processes([worker], timeout=20)
        if "Traceback" in (log_path.read_text() if log_path.exists() else ""):
            log(f"run {i}: the worker log has a traceback ({log_path})")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one run instead of three")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--keep-topics", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    from driftline.detectors.profile import ReferenceProfile
    from driftline.simulate import simulate

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    references = tmp / "references"
    references.mkdir()
    records, labels = simulate(20_000, seed=99)
    ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[lb["label"] for lb in labels]
    ).save(references / "fraud@1.json")
    log(f"logs in {tmp}; load {os.getloadavg()}")
    results = []
    prefixes: list[str] = []
    try:
        for i in range(repeats):
            r = one_run(i, references, tmp, args.ready_timeout, prefixes)
            results.append(r)
            if r["detected"]:
                log(
                    f"run {i}: onset->alert {r['onset_to_receive']:.2f} s, window end->alert "
                    f"{r['window_end_to_receive']:.2f} s (window [{r['window_start']:.0f}, {r['window_end']:.0f}), "
                    f"onset {r['onset_phase_in_window']:.2f} s into its window), detected_at - window_end "
                    f"{r['detected_at_minus_window_end']:.2f} s"
                )
            else:
                log(f"run {i}: no data_drift event (events seen: {r['events_before_first_drift']})")
    finally:
        if not args.keep_topics:
            for r in prefixes:
                delete_topics(r)
    (tmp / "results.json").write_text(json.dumps(results, indent=2))
    target_from_onset = WINDOW + LATENESS + 5
    print(
        f"\nwindow {WINDOW} s, allowed lateness {LATENESS} s, idle timeout {IDLE} s, {RATE:.0f} predictions/s, "
        f"onset at {ONSET:.0f} s; load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| run | onset phase in window s | onset -> alert s | window end -> alert s | detected_at - window_end s | within target (<= size + lateness + 5 = "
        f"{target_from_onset} s) |"
    )
    print(
        "|-----|------------------------|------------------|----------------------|----------------------------|------------------------|"
    )
    for r in results:
        if not r["detected"]:
            print(f"| {r['run']} | - | not detected | - | - | no |")
            continue
        ok = r["onset_to_receive"] <= target_from_onset
        print(
            f"| {r['run']} | {r['onset_phase_in_window']:.2f} | {r['onset_to_receive']:.2f} | {r['window_end_to_receive']:.2f} | "
            f"{r['detected_at_minus_window_end']:.2f} | {'yes' if ok else 'NO'} |"
        )
    detected = [r for r in results if r["detected"]]
    if detected:
        print(
            f"\nmax onset -> alert {max(r['onset_to_receive'] for r in detected):.2f} s; "
            f"max window end -> alert {max(r['window_end_to_receive'] for r in detected):.2f} s "
            f"(= lateness {LATENESS} s + pipeline {max(r['window_end_to_receive'] for r in detected) - LATENESS:.2f} s); "
            f"max detected_at - window_end {max(r['detected_at_minus_window_end'] for r in detected):.2f} s"
        )
    print(f"results: {tmp / 'results.json'}")
    return 0 if len(detected) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
