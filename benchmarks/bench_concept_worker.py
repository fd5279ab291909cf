"""Concept drift through the real worker on the real Kafka: delay, false alarms, events per drift.

The streams of ``bench_concept_stage.py`` (frozen pre-drift model on river's Agrawal 4 -> 3 and
STAGGER 0 -> 1, 5 % label noise, drift at record 20,000; abrupt and gradual of width 1,000),
one *model* per stream, kind and seed, all in one run: predictions in messages of 100 records
at 100 records/s of event time per model, each message's labels 5 s later (event time) in a
message with the same key (so on the same partition). ``--partitions`` source partitions,
``--workers`` worker processes (``driftline worker``, default configuration and suite).

Printed per stream: mean delay in labels (abrupt), false alarms per 20,000 stable labels,
events per drift, gradual detection rate, and whether every model's event indices equal the
in-process stage's (``ConceptStage`` fed the same stream) -- they must, whatever the partitions.

Needs the local Kafka (deploy/local); creates its own topics (prefix ``bench-concept-*``).
Run: .cache/venv/bin/python benchmarks/bench_concept_worker.py --seeds 10 --partitions 4 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_concept_stage import DRIFT_AT, STREAMS, WIDTH, labelled_stream

from driftline.config import load_config
from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT, ConceptStage
from driftline.detectors.profile import ReferenceProfile
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
START = 1_767_225_600.0
RATE = 100.0
CHUNK = 100
LABEL_DELAY = 5.0


def _record(model: str, i: int, x: dict[str, Any], prediction: int) -> dict[str, Any]:
    return {
        "prediction_id": f"{model}-{i}",
        "model": model,
        "model_version": "1",
        "timestamp": START + i / RATE,
        "features": {k: float(v) for k, v in x.items()},
        "prediction": prediction,
    }


def _processed(ports: list[int], counter: str) -> float:
    """A counter summed over the workers (0 for one not serving yet)."""
    total = 0.0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        total += sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(counter)
        )
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--length", type=int, default=25_000, help="records per model")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-concept-"))
    prefix = f"bench-concept-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": os.environ.get(
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"
        ),
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"{prefix}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"{prefix}.metrics",
        "DRIFTLINE_TOPICS_PARTITIONS": str(args.partitions),
        "DRIFTLINE_WORKER_APP_ID": prefix,
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(tmp / "references"),
        "DRIFTLINE_WORKER_THRESHOLDS_FILE": str(ROOT / "config" / "drift_thresholds.yaml"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": "60",
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "5",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "5",
    }
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)

    t0 = time.perf_counter()
    streams: dict[str, tuple[str, str, list[tuple[dict[str, Any], int, int]]]] = {}
    for name in STREAMS:
        short = name.split()[0].lower()
        for seed in range(args.seeds):
            streams[f"{short}-abrupt-{seed}"] = (
                name,
                "abrupt",
                labelled_stream(name, seed, args.length),
            )
            streams[f"{short}-gradual-{seed}"] = (
                name,
                "gradual",
                labelled_stream(name, seed + 100, args.length, width=WIDTH),
            )
    (tmp / "references").mkdir()
    for model, (_, _, rows) in streams.items():
        reference = rows[:5_000]
        ReferenceProfile.from_records(
            [_record(model, i, x, p) for i, (x, _, p) in enumerate(reference)],
            model=model,
            model_version="1",
            labels=[y for _, y, _ in reference],
        ).save(tmp / "references" / f"{model}@1.json")
    print(f"{len(streams)} models generated in {time.perf_counter() - t0:.0f} s", flush=True)

    ports = [free_port() for _ in range(args.workers)]
    workers = [
        start_worker_process(
            None, tmp / f"worker{i}.log", env={**env, "DRIFTLINE_WORKER_METRICS_PORT": str(port)}
        )
        for i, port in enumerate(ports)
    ]
    try:
        time.sleep(5)
        producer = Producer(config.kafka.confluent_settings())
        t1 = time.perf_counter()
        for first in range(0, args.length, CHUNK):
            for model, (_, _, rows) in streams.items():
                key = f"{model}-{first}"
                chunk = rows[first : first + CHUNK]
                records = [_record(model, first + j, x, p) for j, (x, _, p) in enumerate(chunk)]
                labels = [
                    {
                        "prediction_id": r["prediction_id"],
                        "label": y,
                        "timestamp": r["timestamp"] + LABEL_DELAY,
                    }
                    for r, (_, y, _) in zip(records, chunk, strict=True)
                ]
                producer.produce(config.topics.predictions, key=key, value=orjson.dumps(records))
                producer.produce(config.topics.labels, key=key, value=orjson.dumps(labels))
            producer.poll(0)
        assert producer.flush(60) == 0
        print(
            f"{len(streams) * args.length} predictions and labels produced in "
            f"{time.perf_counter() - t1:.0f} s",
            flush=True,
        )
        expected = len(streams) * args.length
        deadline = time.monotonic() + args.timeout
        while (  # every prediction and label read (a replay after a rebalance may count twice)
            _processed(ports, "driftline_labels_processed_total") < expected
            or _processed(ports, "driftline_records_processed_total") < expected
        ):
            assert time.monotonic() < deadline, "timed out"
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(2)
        print(f"all records and labels read after {time.perf_counter() - t1:.0f} s", flush=True)
        events: list[dict[str, Any]] = []
        reader = TopicReader(config, config.topics.alerts, start="beginning")
        try:
            quiet_since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - quiet_since < 30:
                got = 0
                for message in reader.messages(timeout=5, idle=5):
                    event = orjson.loads(message.value() or b"{}")
                    if event["type"] == "concept_drift":
                        events.append(event)
                    got += 1
                if got:
                    quiet_since = time.monotonic()
                assert all(w.poll() is None for w in workers), "a worker exited"
        finally:
            reader.close()
        elapsed = time.perf_counter() - t1
    finally:
        stop_worker_processes(workers)
    for log in tmp.glob("worker*.log"):
        if "Traceback" in log.read_text():
            print(f"Traceback in {log}")

    by_model: dict[str, list[dict[str, Any]]] = {m: [] for m in streams}
    for event in events:
        by_model[event["model"]].append(event)
    print(
        f"real worker: {args.partitions} partition(s), {args.workers} worker(s), {args.seeds} "
        f"seeds, {args.length} labels per model; {elapsed:.0f} s; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'stream':<16}{'delay':>8}{'FA/20k':>8}{'events/drift':>14}{'gradual':>9}"
        f"{'g.events':>10}{'= in-process':>14}"
    )
    all_same = True
    for name in STREAMS:
        short = name.split()[0].lower()
        delays, early, per_drift, gradual, gradual_events, same = [], 0, [], 0, [], True
        for seed in range(args.seeds):
            for kind in ("abrupt", "gradual"):
                model = f"{short}-{kind}-{seed}"
                found = sorted(
                    {e["event_id"]: e["evidence"]["index"] for e in by_model[model]}.values()
                )
                _, _, rows = streams[model]
                errors = np.array([float(p != y) for _, y, p in rows])
                offline = ConceptStage(DEFAULT_CONCEPT_DRIFT).update(
                    [f"{model}-{i:08d}" for i in range(errors.size)],
                    np.arange(errors.size, dtype=np.float64),
                    {"error": errors},
                )
                same &= found == [d.index for d in offline]
                if kind == "abrupt":
                    early += sum(i < DRIFT_AT for i in found)
                    after = [i for i in found if i >= DRIFT_AT]
                    per_drift.append(len(after))
                    if after:
                        delays.append(after[0] - DRIFT_AT)
                else:
                    gradual += any(DRIFT_AT - WIDTH <= i < DRIFT_AT + 5_000 for i in found)
                    gradual_events.append(sum(i >= DRIFT_AT - 3_000 for i in found))
        all_same &= same
        delay = f"{np.mean(delays):.1f}" if delays else "-"
        print(
            f"{name:<16}{delay:>8}{early / args.seeds:>8.2f}{np.mean(per_drift):>14.2f}"
            f"{gradual / args.seeds:>9.0%}{np.mean(gradual_events):>10.2f}"
            f"{'yes' if same else 'NO':>14}"
        )
    print(f"(missed abrupt drifts count as no delay; logs in {tmp})")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
