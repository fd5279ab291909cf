"""Throughput and peak memory of the driftline worker on the real local Kafka.

Run from the repository root, with the local stack up (``make up``)::

    source deploy/local/env.sh
    .cache/venv/bin/python benchmarks/bench_worker_throughput.py [--quick] [-n 200000]

Everything is measured in the same run on the same topics, because the machine is shared and
noisy: the figures that travel are the ratios to the in-run baselines.

1. N records of ``driftline.simulate.simulate`` traffic (10 numeric + 3 categorical features)
   are produced to a fresh 4-partition topic, one record per message, keyed by prediction_id
   (murmur2_random), and the same records as batch messages (``{"records": [...]}``, 100 per
   message) to a second topic.
2. Ceiling: a plain confluent-kafka ``consume(10000)`` loop that parses every message with
   ``driftline.streams.records.parse_predictions``.
3. No-op Faust: a tiny Faust app (subprocess, kafka:// transport, ``take_events(5000,
   within=0.5)``, broker_max_poll_records and stream_buffer_maxsize raised) that only counts.
4. The driftline worker (``python -m driftline worker``, env-var config, one reference profile,
   windows of 60 s event time), on the single-record topic and on the batch topic: wall time
   from the first observation of ``driftline_records_processed_total > 0`` on its Prometheus
   endpoint until the counter reaches N; rate = records counted in that interval / interval.
5. Peak RSS (VmHWM) of the worker for 1 model (13 features) and for 100 models x 20 numeric
   features (synthetic records spread over m000..m099).
   The many-models records are packed into 200 s of event time whatever N is: with N = 200,000
   that is 1,000 records per second of event time and 300 windows (600 records each) evaluated
   in the run, 13.5x the windows per record of a deployment receiving 15,000 records/s (one
   60-s window of each model per 900,000 records). ``--many-rate R`` also runs the scenario
   with event time spaced at R records per second, as such a deployment would see it
   (docs/BENCHMARKS.md, 2026-12-02 04:49).

Every wait has a timeout; subprocesses are stopped (SIGTERM, then SIGKILL) on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftline import local
from driftline.local import free_port, stop_worker_processes

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
BATCH_RECORDS = 100
START = 1_767_225_600.0
# Seconds between scrapes of a worker's /metrics page while it is timed (the first non-zero
# reading is looked for every 50 ms, while the page is still small). Rendering the page holds
# the GIL in the worker (100 models x 20 features: thousands of series), so scraping it every
# 50 ms slowed the worker it measured; the rate is exact between two readings anyway.
SCRAPE_EVERY = 0.2
SCRAPE_EVERY_MANY_MODELS = 0.5
SCENARIOS = ("faust", "single", "batch", "single_2proc", "labels", "many")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- topics and producing ----------------------------------------------------------------------


def create_topics(names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)


def delete_topics(prefix: str) -> None:
    for failure in local.delete_topics(BOOTSTRAP, prefix):
        log(f"could not delete a topic: {failure}")


def producer() -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "partitioner": "murmur2_random",
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
            "message.max.bytes": 10_000_000,
        }
    )


def produce(topic: str, messages: Iterator[tuple[bytes, bytes]]) -> int:
    p = producer()
    n = 0
    for key, value in messages:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    remaining = p.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages to {topic} not delivered")
    return n


def produce_list(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    t = time.perf_counter()
    produce(topic, iter(messages))
    log(f"produced {len(messages)} messages to {topic} in {time.perf_counter() - t:.1f} s")


def single_messages(records: list[dict[str, Any]]) -> Iterator[tuple[bytes, bytes]]:
    for r in records:
        yield r["prediction_id"].encode(), orjson.dumps(r)


def batch_messages(records: list[dict[str, Any]]) -> Iterator[tuple[bytes, bytes]]:
    for i in range(0, len(records), BATCH_RECORDS):
        chunk = records[i : i + BATCH_RECORDS]
        yield chunk[0]["prediction_id"].encode(), orjson.dumps({"records": chunk})


def batch_label_messages(
    records: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> Iterator[tuple[bytes, bytes]]:
    """Labels keyed like the batch message that carried their prediction (its first id), so
    that each label lands on its prediction's partition: the join is per partition."""
    for i, label in enumerate(labels):
        key = records[i - i % BATCH_RECORDS]["prediction_id"]
        yield key.encode(), orjson.dumps(label)


def fraud_stream(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """n records of simulate() traffic spread over 200 s of event time whatever n is, so that
    three windows of 60 s close during the run (the fourth stays open), and their labels."""
    from driftline.simulate import simulate

    records: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for first in range(0, n, 50_000):
        block, truth = simulate(
            min(50_000, n - first),
            seed=7,
            first_index=first,
            start_time=START,
            rate_per_second=n / 200.0,
        )
        records.extend(block)
        labels.extend(truth)
    return records, labels


def many_models_stream(
    n: int, n_models: int, n_features: int, seed: int, rate: float | None = None
) -> list[dict[str, Any]]:
    """Synthetic records with `n_features` numeric features, round-robin over m000..m{n_models-1},
    spread over 200 s of event time whatever n is, or (`rate`) `rate` records per second of
    event time, as a deployment receiving that many predictions per second would see them."""
    spacing = 200.0 / n if rate is None else 1.0 / rate
    rng = np.random.default_rng(seed)
    names = [f"f{j:02d}" for j in range(n_features)]
    values = np.round(rng.standard_normal((n, n_features)), 6).tolist()
    scores = np.round(rng.random(n), 6).tolist()
    records = []
    for i in range(n):
        records.append(
            {
                "prediction_id": f"s{seed}-{i}",
                "model": f"m{i % n_models:03d}",
                "model_version": "1",
                "timestamp": START + i * spacing,
                "features": dict(zip(names, values[i], strict=True)),
                "prediction": int(scores[i] >= 0.5),
                "score": scores[i],
                "latency_ms": 10.0,
            }
        )
    return records


# -- ceiling: plain confluent-kafka consumer ---------------------------------------------------


def ceiling(topic: str, n: int, timeout: float) -> dict[str, float]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from driftline.streams.records import parse_predictions

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"bench-ceiling-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.min.messages": 200_000,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen = 0
    first = last = None
    cpu_first = cpu_last = 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < n and time.monotonic() < deadline:
            batch = consumer.consume(10_000, timeout=1.0)
            if batch and first is None:
                first, cpu_first = time.perf_counter(), time.process_time()
            for message in batch:
                if message.error() is not None:
                    continue
                valid, _ = parse_predictions(message.value() or b"")
                seen += len(valid)
            last, cpu_last = time.perf_counter(), time.process_time()
    finally:
        consumer.close()
    if seen < n or first is None or last is None:
        raise RuntimeError(f"ceiling: read {seen} of {n} records in {timeout} s")
    return {
        "records": seen,
        "seconds": last - first,
        "rate": seen / (last - first),
        # this process only (parse + librdkafka's threads): comparable to the workers' figure
        "cpu_seconds_per_million": (cpu_last - cpu_first) / seen * 1e6,
    }


# -- no-op Faust agent (runs in a child process: `--faust-noop`) --------------------------------


def faust_noop_child(topic: str, n: int, app_id: str, result_path: str) -> None:
    import asyncio

    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{BOOTSTRAP}",
        store="memory://",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=5000,
        stream_buffer_maxsize=20_000,
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    state: dict[str, Any] = {"count": 0, "first": None}

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(5000, within=0.5):
            if state["first"] is None:
                state["first"] = time.perf_counter()
            state["count"] += len(events)
            if state["count"] >= n and "done" not in state:
                state["done"] = True
                elapsed = time.perf_counter() - state["first"]
                Path(result_path).write_text(
                    json.dumps({"records": state["count"], "seconds": elapsed})
                )
                asyncio.get_running_loop().call_later(
                    0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)
                )

    from faust.worker import Worker

    Worker(app, loglevel="warning").execute_from_commandline()


@contextmanager
def child(
    command: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    try:
        yield proc
    finally:
        stop_worker_processes([proc], timeout=20)


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    poll: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise TimeoutError(f"{what}: not done after {timeout} s\n{tail}")
        time.sleep(poll)


def faust_noop(topic: str, n: int, tmp: Path, timeout: float) -> dict[str, float]:
    result = tmp / "faust-noop.json"
    log_path = tmp / "faust-noop.log"
    command = [
        sys.executable,
        __file__,
        "--faust-noop",
        topic,
        str(n),
        f"bench-noop-{uuid.uuid4().hex[:8]}",
        str(result),
        "worker",
    ]
    with child(command, log_path) as proc:
        wait_until("no-op Faust agent", result.exists, timeout, proc, log_path)
        time.sleep(0.1)
    data = json.loads(result.read_text())
    data["rate"] = data["records"] / data["seconds"]
    return data


# -- the driftline worker ----------------------------------------------------------------------


def processed(port: int, metric: str = "driftline_records_processed_total") -> float | None:
    try:
        # only this metric's collector (prometheus_client's `name[]` filter): rendering the
        # whole page of 100 models x 20 features holds the worker's GIL for tens of ms, 22 % of
        # its CPU at one scrape per 0.5 s, which Prometheus (15 s) would not cost it
        url = f"http://127.0.0.1:{port}/metrics?name[]={metric.split('{', 1)[0]}"
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics_page(port: int) -> tuple[float, int]:
    """Wall seconds to fetch a worker's whole /metrics page once (what one Prometheus scrape
    costs it, holding its GIL) and the page's series."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return float("nan"), 0
    seconds = time.perf_counter() - started
    return seconds, sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_env(
    name: str, suffix: str, predictions: str, references: Path, tmp: Path, port: int
) -> dict[str, str]:
    base = f"bench-{suffix}-{name}"
    return {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "DRIFTLINE_TOPICS_PREDICTIONS": predictions,
        "DRIFTLINE_TOPICS_LABELS": f"{predictions}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{base}.alerts",
        "DRIFTLINE_TOPICS_METRICS": f"{base}.metrics",
        "DRIFTLINE_TOPICS_DLQ": f"{base}.dlq",
        "DRIFTLINE_WORKER_APP_ID": base,
        "DRIFTLINE_WORKER_METRICS_PORT": str(port),
        "DRIFTLINE_WORKER_DATA_DIR": str(tmp / name),
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(references),
        "DRIFTLINE_WORKER_THRESHOLDS_FILE": str(ROOT / "config" / "drift_thresholds.yaml"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": "60",
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "5",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "5",
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(
    name: str,
    env: dict[str, str],
    n: int,
    tmp: Path,
    timeout: float,
    profile_to: str | None = None,
    windows: int = 3,
    processes: int = 1,
    metric: str = "driftline_records_processed_total",
    fill: Callable[[], None] | None = None,
    scrape_every: float = 0.2,
    code: Path | None = None,
) -> dict[str, float]:
    """Start `processes` workers (one consumer group) on pre-filled topics (or, with `fill`, on
    empty ones filled once every worker holds its share of the partitions, so that no rebalance
    falls in the timed interval); time them from the summed `metric` > 0 to >= n. CPU seconds
    are the workers' own, over that interval. `code`: run the driftline package found there
    (a checkout of another commit: `--baseline`) instead of this one."""
    from driftline.config import load_config
    from driftline.streams.topics import ensure_topics

    ensure_topics(load_config(ROOT / "config" / "driftline.yaml", environ=env))
    ports = [int(env["DRIFTLINE_WORKER_METRICS_PORT"])] + [
        free_port() for _ in range(processes - 1)
    ]
    log_paths = [tmp / f"worker-{name}-{i}.log" for i in range(processes)]
    started = time.monotonic()
    with ExitStack() as stack:
        procs = []
        for i, (port, log_path) in enumerate(zip(ports, log_paths, strict=True)):
            command = [sys.executable]
            if profile_to and i == 0:
                command += ["-m", "cProfile", "-o", profile_to]
            command += ["-m", "driftline", "--config", str(ROOT / "config" / "driftline.yaml")]
            procs.append(
                stack.enter_context(
                    child(
                        [*command, "worker"],
                        log_path,
                        env={
                            **env,
                            "DRIFTLINE_WORKER_METRICS_PORT": str(port),
                            # `python -m` puts the working directory first on sys.path
                            **({"PYTHONPATH": str(code)} if code is not None else {}),
                        },
                        cwd=code,
                    )
                )
            )
        state: dict[str, float] = {}
        if fill is not None:
            share = len(range(0, PARTITIONS, processes))  # partitions per worker, range assignor
            owned = re.compile(
                rf"assigned .*{re.escape(env['DRIFTLINE_TOPICS_PREDICTIONS'])} "
                rf"\[{', '.join([r'[0-9]+'] * share)}\]"
            )
            wait_until(
                f"workers {name}: each assigned {share} partitions",
                lambda: (
                    all(owned.search(p.read_text()) for p in log_paths if p.exists())
                    and all(p.exists() for p in log_paths)
                ),
                timeout,
                procs[0],
                log_paths[0],
                0.2,
            )
            fill()

        def total(what: str = metric) -> float | None:
            counts = [processed(port, what) for port in ports]
            return None if any(c is None for c in counts) else sum(c or 0.0 for c in counts)

        def first() -> bool:
            count = total()
            if count:
                state["t0"], state["c0"] = time.perf_counter(), count
                state["cpu0"] = sum(cpu_seconds(p.pid) for p in procs)
                return True
            return False

        wait_until(f"worker {name}: first record", first, timeout, procs[0], log_paths[0], 0.05)
        startup = time.monotonic() - started

        def done() -> bool:
            count = total()
            if count is not None and count >= n:
                state["t1"], state["c1"] = time.perf_counter(), count
                state["cpu1"] = sum(cpu_seconds(p.pid) for p in procs)
                return True
            return False

        wait_until(
            f"worker {name}: {n} records", done, timeout, procs[0], log_paths[0], scrape_every
        )
        rss = max(vm_hwm_mib(p.pid) for p in procs)
        state["w1"] = total("driftline_windows_closed_total") or 0.0

        def closed() -> bool:
            count = total("driftline_windows_closed_total")
            if count is not None and count >= windows:
                state["t2"], state["w2"] = time.perf_counter(), count
                return True
            return False

        try:  # not part of the rate: that the windows closed, i.e. stage 2 ran too
            wait_until(
                f"worker {name}: {windows} windows closed", closed, 60.0, procs[0], poll=0.25
            )
        except TimeoutError:
            state["t2"], state["w2"] = (
                float("nan"),
                total("driftline_windows_closed_total") or 0.0,
            )
        state["joined"] = sum(
            processed(port, 'driftline_label_join_records{outcome="joined"}') or 0.0
            for port in ports
        )
        rss = max(rss, *(vm_hwm_mib(p.pid) for p in procs))
        page_seconds, page_series = metrics_page(ports[0])
    checkpoints = checkpoint_stats(f"{env['DRIFTLINE_WORKER_APP_ID']}-checkpoints")
    for log_path in log_paths:
        if "Traceback" in log_path.read_text():
            log(f"worker {name}: its log has a traceback ({log_path})")
    seconds = state["t1"] - state["t0"]
    counted = state["c1"] - state["c0"]
    if counted <= 0:  # everything between two readings: no interval to divide by
        log(f"worker {name}: all {n} counted between two scrapes; rate not measured")
    return {
        "processes": processes,
        "records": state["c1"],
        "first_count": state["c0"],
        "seconds": seconds,
        "rate": counted / seconds if seconds > 0 else float("nan"),
        "rate_all": state["c1"] / seconds if seconds > 0 else float("nan"),
        "cpu_seconds_per_million": (state["cpu1"] - state["cpu0"]) / counted * 1e6
        if counted
        else float("nan"),
        "startup_seconds": startup,
        "vm_hwm_mib": rss,
        "windows_closed_at_n": state["w1"],
        "windows_closed": state["w2"],
        "seconds_n_to_windows_closed": state["t2"] - state["t1"],
        "labels_joined": state["joined"],
        "metrics_page_seconds": page_seconds,
        "metrics_page_series": page_series,
        **checkpoints,
    }


def checkpoint_stats(topic: str, sample: int = 50) -> dict[str, float]:
    """How many checkpoint messages the worker wrote (one per partition batch, plus stage 2 and
    idle declarations) and the mean size of the last `sample` of them."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"bench-cp-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 64 * 1024 * 1024,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, max(low, high - sample))])
        sizes: list[int] = []
        deadline = time.monotonic() + 30
        while len(sizes) < min(sample, high - low) and time.monotonic() < deadline:
            sizes += [
                len(m.value() or b"")
                for m in consumer.consume(100, timeout=1.0)
                if m.error() is None
            ]
    finally:
        consumer.close()
    return {
        "checkpoint_messages": float(high - low),
        "checkpoint_mean_bytes_last": float(np.mean(sizes)) if sizes else float("nan"),
    }


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50,000 records instead of 200,000")
    parser.add_argument("-n", type=int, default=None, help="records per scenario")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="per wait, seconds")
    parser.add_argument(
        "--many-n",
        type=int,
        default=None,
        help="records of the many-models scenario (default: N, or 25,000 with --quick)",
    )
    parser.add_argument(
        "--many-rate",
        type=float,
        default=None,
        help="also run the many-models scenario with event time spaced at this many records per "
        "second (e.g. 15000: a 60 s window then holds 900,000 records, as in a deployment at "
        "that rate; the default scenario packs N records into 200 s of event time)",
    )
    parser.add_argument("--skip-many-models", action="store_true")
    parser.add_argument(
        "--skip-packed",
        action="store_true",
        help="with --many-rate: only the scenario with event time at that rate (e.g. --many-n "
        "2000000 --many-rate 15000: reservoirs full, windows closing, as in a deployment)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="run one worker under cProfile, writing PATH"
    )
    parser.add_argument(
        "--profile-scenario",
        choices=[
            *(s for s in SCENARIOS if s != "faust"),
            *(f"{s}_baseline" for s in SCENARIOS if s not in ("faust", "single_2proc")),
            "many_rate",
            "many_rate_baseline",
        ],
        default="single",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (the ceiling always runs)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="also run the worker scenarios (except single_2proc) with the driftline package "
        "in DIR, e.g. `git archive main | tar -x -C DIR`: before/after in the same run",
    )
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here too")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if unknown := sorted(set(chosen) - set(SCENARIOS)):
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.skip_many_models and "many" in chosen:
        chosen.remove("many")
    if args.baseline is not None and not (args.baseline / "driftline" / "__init__.py").exists():
        parser.error(f"--baseline {args.baseline}: no driftline package there")
    n = args.n or (50_000 if args.quick else 200_000)
    suffix = uuid.uuid4().hex[:8]
    prefix = f"bench-{suffix}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    log(f"N={n}, topics {prefix}.*, logs in {tmp}, load: {os.getloadavg()}")

    from driftline.detectors.profile import ReferenceProfile
    from driftline.simulate import simulate

    single, batch, many = f"{prefix}.single", f"{prefix}.batch", f"{prefix}.many"
    labelled = f"{prefix}.labelled"  # batch predictions + single-record labels
    create_topics(
        [
            *(single, f"{single}.labels", batch, f"{batch}.labels", many, f"{many}.labels"),
            *(labelled, f"{labelled}.labels", f"{prefix}.single2", f"{prefix}.single2.labels"),
            *(f"{many}.rate", f"{many}.rate.labels"),
        ]
    )
    results: dict[str, Any] = {
        "n": n,
        "load_before": os.getloadavg(),
        "scenarios": chosen,
        "baseline": str(args.baseline) if args.baseline else None,
    }
    try:
        t = time.perf_counter()
        records, labels = fraud_stream(n)
        log(f"simulated {n} records in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        produce(single, single_messages(records))
        produce(batch, batch_messages(records))
        if "labels" in chosen:
            produce(labelled, batch_messages(records))
            produce(f"{labelled}.labels", batch_label_messages(records, labels))
        # for the 2-process run, once both joined
        fill_later = list(single_messages(records)) if "single_2proc" in chosen else []
        log(
            f"produced {n} single + {n // BATCH_RECORDS} batch messages (and the labels "
            f"scenario's, if chosen) in {time.perf_counter() - t:.1f} s"
        )
        del records, labels

        references = tmp / "references"
        references.mkdir()
        ref_records, ref_labels = simulate(20_000, seed=99)
        ReferenceProfile.from_records(
            ref_records, model="fraud", model_version="1", labels=[lb["label"] for lb in ref_labels]
        ).save(references / "fraud@1.json")

        results["ceiling"] = ceiling(single, n, args.timeout)
        log(f"ceiling: {results['ceiling']['rate']:,.0f} records/s")
        results["ceiling_batch"] = ceiling(batch, n, args.timeout)
        log(f"ceiling (batch messages): {results['ceiling_batch']['rate']:,.0f} records/s")
        if "faust" in chosen:
            results["faust_noop"] = faust_noop(single, n, tmp, args.timeout)
            log(f"no-op Faust: {results['faust_noop']['rate']:,.0f} records/s")

        scenarios: list[tuple[str, str, int, str]] = [
            ("single", single, 1, "driftline_records_processed_total"),
            ("batch", batch, 1, "driftline_records_processed_total"),
            ("single_2proc", f"{prefix}.single2", 2, "driftline_records_processed_total"),
            ("labels", labelled, 1, "driftline_labels_processed_total"),
        ]
        for name, topic, processes, metric in scenarios:
            if name not in chosen:
                continue
            # the baseline first, then this code, on the same topics (each its own group)
            for key, code in (
                [(f"worker_{name}_baseline", args.baseline)]
                if args.baseline is not None and processes == 1
                else []
            ) + [(f"worker_{name}", None)]:
                label = key.removeprefix("worker_")
                env = worker_env(label, suffix, topic, references, tmp, free_port())
                results[key] = run_worker(
                    label,
                    env,
                    n,
                    tmp,
                    args.timeout,
                    args.profile if label == args.profile_scenario else None,
                    processes=processes,
                    metric=metric,
                    fill=(lambda t=topic: produce_list(t, fill_later)) if processes > 1 else None,
                    code=code,
                )
                w = results[key]
                log(
                    f"worker ({label}, {processes} process(es)): {w['rate']:,.0f}/s, "
                    f"{w['cpu_seconds_per_million']:.1f} CPU s per million, VmHWM {w['vm_hwm_mib']:.0f} MiB, "
                    f"started in {w['startup_seconds']:.1f} s, labels joined {w['labels_joined']:,.0f}"
                )

        if "many" in chosen:
            many_refs = tmp / "references-many"
            many_refs.mkdir()
            t = time.perf_counter()
            ref = many_models_stream(
                args.models * (1_000 if args.quick else 2_000), args.models, args.features, seed=1
            )
            by_model: dict[str, list[dict[str, Any]]] = {}
            for r in ref:
                by_model.setdefault(r["model"], []).append(r)
            for model, rows in by_model.items():
                ReferenceProfile.from_records(rows, model=model, model_version="1").save(
                    many_refs / f"{model}@1.json"
                )
            del ref, by_model
            log(
                f"built {args.models} profiles x {args.features} features in {time.perf_counter() - t:.1f} s"
            )
            many_n = args.many_n or (25_000 if args.quick else n)
            results["many_n"] = many_n
            variants: list[tuple[str, str, float | None, int]] = (
                []
                if args.many_rate and args.skip_packed
                else [("many", many, None, 3 * args.models)]
            )
            if args.many_rate:
                results["many_rate"] = args.many_rate
                # windows of 60 s that the watermark (max event time - 5 s) closes
                closing = max(int((many_n / args.many_rate - 5.0) // 60.0), 0)
                variants.append(
                    ("many_rate", f"{many}.rate", args.many_rate, closing * args.models)
                )
            for variant, topic, rate, windows in variants:
                stream = many_models_stream(many_n, args.models, args.features, seed=2, rate=rate)
                produce(topic, single_messages(stream))
                del stream
                for key, code in (
                    [(f"worker_{variant}_baseline", args.baseline)]
                    if args.baseline is not None
                    else []
                ) + [(f"worker_{variant}", None)]:
                    label = key.removeprefix("worker_")
                    env = worker_env(label, suffix, topic, many_refs, tmp, free_port())
                    results[key] = run_worker(
                        label,
                        env,
                        many_n,
                        tmp,
                        args.timeout,
                        args.profile if args.profile_scenario == label else None,
                        windows=windows,
                        scrape_every=SCRAPE_EVERY_MANY_MODELS,
                        code=code,
                    )
                    w = results[key]
                    log(
                        f"worker ({label}: {args.models} models x {args.features} features): "
                        f"{w['rate']:,.0f} predictions/s, "
                        f"{w['cpu_seconds_per_million']:.1f} CPU s per million, "
                        f"VmHWM {w['vm_hwm_mib']:.0f} MiB, windows closed {w['windows_closed']:.0f}"
                    )
    finally:
        if not args.keep_topics:
            delete_topics(prefix)
    results["load_after"] = os.getloadavg()
    report(results, args)
    (tmp / "results.json").write_text(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    log(f"results: {tmp / 'results.json'}")
    return 0


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    """The Markdown tables of docs/BENCHMARKS.md (rows of scenarios that ran)."""
    c = r["ceiling"]["rate"]
    f = r["faust_noop"]["rate"] if "faust_noop" in r else float("nan")
    rows: list[tuple[str, str, str]] = [
        ("ceiling: confluent consume(10000) + parse_predictions, single", "ceiling", "records/s"),
        ("ceiling: same, batch messages (100 records each)", "ceiling_batch", "records/s"),
        ("no-op Faust agent, take_events(5000), single", "faust_noop", "records/s"),
        ("worker, 1 model x 13 feat., single-record messages", "worker_single", "predictions/s"),
        ("worker, 1 model x 13 feat., batch messages of 100", "worker_batch", "predictions/s"),
        ("2 worker processes, 4 partitions, single-record", "worker_single_2proc", "predictions/s"),
        ("worker, labels joined (single-record label messages)", "worker_labels", "labels/s"),
    ]
    if "worker_many" in r:
        rows.append(
            (
                f"worker, {args.models} models x {args.features} feat., single, N={r['many_n']:,}",
                "worker_many",
                "predictions/s",
            )
        )
    if "worker_many_rate" in r:
        rows.append(
            (
                f"same, event time at {r['many_rate']:,.0f} records/s",
                "worker_many_rate",
                "predictions/s",
            )
        )
    if r.get("baseline"):  # each worker row followed by the same scenario run by the baseline
        rows = [
            row
            for name, key, unit in rows
            for row in [(name, key, unit), ("  same, baseline code", f"{key}_baseline", unit)]
            if row[1] in r or not row[0].startswith("  same")
        ]
    rows = [row for row in rows if row[1] in r]
    print(
        f"\nN = {r['n']:,} records per scenario; load average before {r['load_before'][0]:.2f}, "
        f"after {r['load_after'][0]:.2f}"
        + (f"; baseline code: {r['baseline']}" if r.get("baseline") else "")
        + "\n"
    )
    print(f"| {'scenario':<58} | {'rate':>10} | unit          | / ceiling | / no-op Faust |")
    print(f"|{'-' * 60}|{'-' * 12}|---------------|-----------|---------------|")
    for name, key, unit in rows:
        rate = r[key]["rate"]
        print(
            f"| {name:<58} | {rate:>10,.0f} | {unit:<13} | {rate / c:>9.3f} | {rate / f:>13.2f} |"
        )
    if "worker_single" in r and "worker_single_2proc" in r:
        one, two = r["worker_single"]["rate"], r["worker_single_2proc"]["rate"]
        print(f"\n2 processes / 1 process: {two / one:.2f}x")
    pairs = [k for k in r if k.endswith("_baseline") and k.removesuffix("_baseline") in r]
    if pairs:
        print("\nThis code / baseline code, same run (rate; CPU s per million records):")
        for key in pairs:
            new, old = r[key.removesuffix("_baseline")], r[key]
            print(
                f"- {key.removeprefix('worker_').removesuffix('_baseline')}: "
                f"{new['rate'] / old['rate']:.2f}x the rate; "
                f"{new['cpu_seconds_per_million'] / old['cpu_seconds_per_million']:.2f}x the CPU; "
                f"peak RSS {new['vm_hwm_mib']:.0f} vs {old['vm_hwm_mib']:.0f} MiB"
            )
    print(
        f"\nCPU s per million records, ceiling (consume + parse, this process): "
        f"{r['ceiling']['cpu_seconds_per_million']:.1f} single-record, "
        f"{r['ceiling_batch']['cpu_seconds_per_million']:.1f} batch messages"
    )
    print("\nCost of the worker processes over the timed interval:")
    print(
        f"| {'scenario':<46} | CPU s / M | 1e6 / CPU s per M | VmHWM MiB | startup s | timed s | windows closed (s after N) "
        "| ckpt msgs | ckpt KiB (last 50) | joined |"
    )
    print(
        f"|{'-' * 48}|-----------|-------------------|-----------|-----------|---------|----------------------------"
        "|-----------|--------------------|--------|"
    )
    for name, key, _ in rows:
        if not key.startswith("worker_"):
            continue
        w = r[key]
        closed = f"{w['windows_closed']:.0f} ({w['seconds_n_to_windows_closed']:.1f} s)"
        print(
            f"| {name[:46]:<46} | {w['cpu_seconds_per_million']:>9.1f} "
            f"| {1e6 / w['cpu_seconds_per_million']:>17,.0f} | {w['vm_hwm_mib']:>9.0f} "
            f"| {w['startup_seconds']:>9.1f} | {w['seconds']:>7.2f} | {closed:<26} "
            f"| {w['checkpoint_messages']:>9,.0f} | {w['checkpoint_mean_bytes_last'] / 1024:>18,.0f} "
            f"| {w['labels_joined']:>6,.0f} |"
        )
    print(
        "\nOne whole /metrics page, fetched once after N (what a Prometheus scrape costs the worker):"
    )
    for name, key, _ in rows:
        w = r.get(key, {})
        if key.startswith("worker_") and "metrics_page_seconds" in w:
            print(
                f"- {name.strip()}: {w['metrics_page_series']:,} series in "
                f"{w['metrics_page_seconds'] * 1000:,.0f} ms"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--faust-noop":
        _, _, topic, count, app_id, result_path, *rest = sys.argv
        sys.argv = [sys.argv[0], *rest]
        faust_noop_child(topic, int(count), app_id, result_path)
    else:
        sys.exit(main())
