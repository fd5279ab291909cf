"""Clock and ordering faults (issue 14): out-of-order and late records within and beyond the
allowed lateness, idle partitions, and a worker whose wall clock is minutes off.

Every record goes to partition 0 of a 4-partition predictions topic, in this offset order
(T = the start of a minute five minutes ago, lateness 5 s, idle timeout 5 s):

1. 1,000 records of window A = [T, T+60), shuffled (out of order inside the window);
2. 500 of window B = [T+60, T+63): the watermark is T+58, A stays open;
3. 100 of A at T+59 (behind the newest record, but within the lateness): counted in A;
4. 500 of B at [T+66, T+70): the watermark passes T+60, A closes;
5. 50 of A at T+30, after A closed (beyond the lateness): late, counted as late, not in A;
6. 200 at the current minute (by the real clock): B closes.

Steps 5 and 6 are produced once the worker processed 1-4: lateness is judged per batch (the
watermark moves after a batch is applied), so a late record must come in a later batch.
Partitions 1-3 never see a record: windows close only because they are declared idle. The
worker's wall clock is skewed through the pipeline's clock seam
(DRIFTLINE_TEST_CLOCK_SKEW_SECONDS, for tests only); within windows.max_future_skew_seconds
(300 s) a skew changes nothing: the same windows, the same evaluations."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config, load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import KafkaService, build_reference, worker_env
from tests.faults.test_broker_restart import processed, wait_until

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


def scenario(now: float) -> tuple[list[dict[str, Any]], float]:
    """The records in offset order (steps 1-4: the first 2,100), and T."""
    t = (now // 60) * 60 - 300
    records, _ = simulate(2_350, seed=11, start_time=t, rate_per_second=50.0)
    rng = random.Random(5)

    def at(block: list[dict[str, Any]], times: list[float]) -> list[dict[str, Any]]:
        return [r | {"timestamp": when} for r, when in zip(block, times, strict=True)]

    a = at(records[:1000], [t + rng.uniform(0, 59.9) for _ in range(1000)])
    b1 = at(records[1000:1500], [t + 60 + rng.uniform(0, 3) for _ in range(500)])
    a_within = at(records[1500:1600], [t + 59.0] * 100)
    b2 = at(records[1600:2100], [t + 66 + rng.uniform(0, 4) for _ in range(500)])
    a_late = at(records[2100:2150], [t + 30.0] * 50)
    current = at(records[2150:2350], [now - rng.uniform(0, 1) for _ in range(200)])
    return a + b1 + a_within + b2 + a_late + current, t


def produce(config: Config, records: list[dict[str, Any]]) -> None:
    producer = Producer(config.kafka.confluent_settings())
    for record in records:  # one partition: the offset order above is the arrival order
        producer.produce(config.topics.predictions, value=orjson.dumps(record), partition=0)
    assert producer.flush(30) == 0


def evaluations(config: Config, starts: set[float], timeout: float) -> list[dict[str, Any]]:
    """Every window summary on the metrics topic once those of ``starts`` arrived (+2 s)."""
    reader = TopicReader(config, config.topics.metrics, start="beginning")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not starts <= {e["window_start"] for e in found}:
            for message in reader.messages(timeout=1):
                evaluation = orjson.loads(message.value() or b"{}").get("evaluation")
                if evaluation:
                    found.append(evaluation)
        for message in reader.messages(timeout=3, idle=2):
            evaluation = orjson.loads(message.value() or b"{}").get("evaluation")
            if evaluation:
                found.append(evaluation)
    finally:
        reader.close()
    return found


def late_records(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    name = "driftline_late_records_total"
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def run_skewed_workers(
    kafka: KafkaService, tmp_path: Path, skews: list[float]
) -> tuple[float, dict[float, list[dict[str, Any]]]]:
    """One worker per skew, each on topics of its own fed the same records; their window
    summaries by skew (checked: A and B exactly as expected, 50 late records)."""
    references = tmp_path / "references"
    build_reference(references)
    records, t = scenario(time.time())
    runs = []
    for skew in skews:
        prefix = f"clock-{uuid.uuid4().hex[:8]}"
        env = worker_env(kafka.bootstrap_servers, prefix, references,
                         TEST_CLOCK_SKEW_SECONDS=str(skew))  # fmt: skip
        env["DRIFTLINE_WORKER_DATA_DIR"] = str(tmp_path / prefix)
        config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
        ensure_topics(config)
        produce(config, records[:2_100])
        log = tmp_path / f"worker{skew:+.0f}.log"
        runs.append((skew, config, start_worker_process(None, log, env=env), log))
    results: dict[float, list[dict[str, Any]]] = {}
    try:
        for _, config, _, _ in runs:
            port = config.worker.metrics_port
            wait_until(lambda p=port: processed(p) >= 2_100, 120, "steps 1-4")
            produce(config, records[2_100:])
        for skew, config, _, log in runs:
            port = config.worker.metrics_port
            wait_until(lambda p=port: late_records(p) >= 50, 60, "the late records")
            found = evaluations(config, {t, t + 60}, 90)
            counts = sorted((e["window_start"], e["summary"]["n_records"]) for e in found)
            assert counts[:2] == [(t, 1_100), (t + 60, 1_000)], (
                skew,
                counts,
                log.read_text()[-3000:],
            )
            assert len([c for c in counts if c[0] <= t + 60]) == 2  # each closed once
            assert late_records(port) == 50, skew
            results[skew] = [e for e in found if e["window_start"] <= t + 60]
    finally:
        stop_worker_processes([worker for _, _, worker, _ in runs])
    for skew, _, worker, log in runs:
        text = log.read_text()
        assert worker.returncode is not None and worker.returncode <= 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        if skew:
            assert "wall clock skewed" in text
    return t, results


def test_late_out_of_order_idle_partitions_and_a_clock_minutes_behind(
    kafka: KafkaService, tmp_path: Path
) -> None:
    """In `make test`: one worker whose clock is 4 minutes behind."""
    run_skewed_workers(kafka, tmp_path, [-240.0])


@pytest.mark.slow_fault
def test_clocks_minutes_apart_give_the_same_windows(kafka: KafkaService, tmp_path: Path) -> None:
    """In `make test-faults`: workers 4 minutes behind, on time and 4 minutes ahead give the
    same window evaluations, field for field."""
    _, results = run_skewed_workers(kafka, tmp_path, [-240.0, 0.0, 240.0])
    behind, on_time, ahead = (sorted(results[s], key=lambda e: e["window_start"]) for s in
                              (-240.0, 0.0, 240.0))  # fmt: skip
    assert behind == on_time == ahead
