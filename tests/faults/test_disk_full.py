"""Fault: the disk under the worker fills up (issue 14, "Disk full / unwritable data dir").

The worker keeps no files of its own (its state is in Kafka: the checkpoint and partials
topics; `worker.data_dir` is unused): the one thing it writes to disk is its log. The test
makes that log unwritable while the worker runs, without root mounts: the worker's file-size
limit (RLIMIT_FSIZE, set from outside with prlimit) is lowered to the log's current size, so
every write fails with EFBIG as on a full filesystem. The worker must keep processing (every
record counted, windows closed on the metrics topic), report it (the
`driftline_log_write_errors_total` counter), and once the limit is lifted write again, first
a line saying how many records it lost."""

from __future__ import annotations

import resource
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config, load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.topics import ensure_topics
from tests.conftest import KafkaService, build_reference, worker_env
from tests.faults.test_broker_restart import processed, wait_until
from tests.faults.test_clock_ordering import evaluations

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0


def log_write_errors(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    name = "driftline_log_write_errors_total"
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def produce(config: Config, records: list[dict[str, Any]]) -> None:
    producer = Producer(config.kafka.confluent_settings())
    for record in records:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0


def test_worker_keeps_processing_while_its_log_cannot_be_written(
    kafka: KafkaService, tmp_path: Path
) -> None:
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(kafka.bootstrap_servers, f"disk-{uuid.uuid4().hex[:8]}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    port = config.worker.metrics_port
    log = tmp_path / "worker.log"
    # 190 s of event time at 100 records/s: the first 130 s close [0, 60) and [60, 120) while
    # the log is full; the rest closes [120, 180) after it is writable again.
    records, _ = simulate(19_000, seed=4, start_time=T0, rate_per_second=100.0)
    worker = start_worker_process(None, log, env=env)
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    try:
        wait_until(lambda: "assigned" in log.read_text(), 60, "the worker's partitions")
        full_at = log.stat().st_size
        resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, (full_at, resource.RLIM_INFINITY))
        produce(config, records[:13_000])
        wait_until(lambda: processed(port) >= 13_000, 120, "the worker, with its log full")
        closed = evaluations(config, {T0, T0 + 60}, 60)
        assert sorted(e["window_start"] for e in closed) == [T0, T0 + 60]
        assert sorted(e["summary"]["n_records"] for e in closed) == [6_000, 6_000]
        wait_until(lambda: log_write_errors(port) >= 2, 30, "the log-write-errors counter")
        lost = log_write_errors(port)
        assert log.stat().st_size == full_at  # nothing written meanwhile
        assert worker.poll() is None
        resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, unlimited)
        writable_at = time.monotonic()
        produce(config, records[13_000:])
        recovery = wait_until(
            lambda: "log records could not be written" in log.read_text(), 60, "the log again"
        )
        wait_until(lambda: processed(port) >= 19_000, 60, "the rest of the records")
        assert log_write_errors(port) == lost  # writing again: nothing more lost
    finally:
        if worker.poll() is None:
            resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, unlimited)
        stop_worker_processes([worker])
    text = log.read_text()
    assert worker.returncode is not None and worker.returncode <= 0, text[-3000:]
    assert "Traceback" not in text and "--- Logging error ---" not in text, text[-3000:]
    first_line_after = text[full_at:].splitlines()[0]
    assert (
        first_line_after
        == f"{int(lost)} log records could not be written ([Errno 27] File too large)"
    ), first_line_after
    print(
        f"log unwritable: worker processed 13,000 records and closed 2 windows, "
        f"{int(lost)} log records lost and counted; first line written {recovery:.1f} s after "
        f"the next records arrived ({time.monotonic() - writable_at:.1f} s since writable)"
    )
