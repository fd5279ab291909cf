"""Fault: PostgreSQL is down for 60 s while the worker runs at 10,000 predictions/s (issue 14).

A PostgreSQL of the test's own (initdb in a temporary directory: the shared one is never
stopped), migrated first; the worker and `driftline sink postgres` run as processes. During the
outage the sink's backlog stays at its bound (`--max-buffer`), its consumer is paused and
nothing it holds is committed (acked); the worker does not notice (its output goes to Kafka).
After PostgreSQL is back every window summary and drift event on the topics is in PostgreSQL
exactly once, with the same content. The recovery time is printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from driftline.config import Config, load_config
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.sinks.store import PostgresStore
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import KafkaService, build_reference, worker_env
from tests.faults.load import Load
from tests.faults.test_broker_restart import processed, wait_until
from tests.faults.test_overload import metric
from tests.service.test_postgres_sink import PrivatePostgres

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]
MAX_BUFFER = 5


def topic_contents(config: Config) -> tuple[set[tuple[float, int]], set[str], int]:
    """(window start, records) of the summaries and ids of the drift events on the topics;
    and the number of summary messages (duplicates included)."""
    windows: list[tuple[float, int]] = []
    events: set[str] = set()
    for topic in (config.topics.metrics, config.topics.alerts):
        reader = TopicReader(config, topic, start="beginning")
        try:
            for message in reader.messages(timeout=30, idle=3):
                payload = orjson.loads(message.value() or b"{}")
                if topic == config.topics.alerts:
                    events.add(payload["event_id"])
                elif payload.get("type") == "window":
                    e = payload["evaluation"]
                    windows.append((e["window_start"], e["summary"]["n_records"]))
        finally:
            reader.close()
    return set(windows), events, len(windows)


def uncommitted(config: Config, group: str) -> int:
    """Messages of the metrics and alerts topics after the group's committed offsets."""
    check = Consumer({**config.kafka.confluent_settings(), "group.id": group})
    behind = 0
    try:
        for topic in (config.topics.metrics, config.topics.alerts):
            parts = [TopicPartition(topic, p) for p in range(config.topics.partitions)]
            for tp in check.committed(parts, timeout=10):
                _, high = check.get_watermark_offsets(tp, timeout=10)
                behind += high - max(tp.offset, 0)
    finally:
        check.close()
    return behind


@pytest.mark.slow_fault
def test_sink_rides_out_a_60_s_postgres_outage_at_10k_predictions_per_second(
    kafka: KafkaService, tmp_path: Path
) -> None:
    server = PrivatePostgres()
    server.start()
    schema = "driftline_fault"
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(kafka.bootstrap_servers, f"pgdown-{uuid.uuid4().hex[:8]}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    with PostgresStore(server.url, schema=schema, timeout=5) as store:
        store.upgrade()  # `driftline db migrate`
    sink_port = free_port()
    sink_log = tmp_path / "sink.log"
    sink_env = {**os.environ, **env, "DRIFTLINE_POSTGRES_URL": server.url}
    command = [
        sys.executable, "-m", "driftline", "--config", str(ROOT / "config" / "driftline.yaml"),
        "sink", "postgres", "--schema", schema, "--metrics-port", str(sink_port),
        "--batch-messages", "5", "--max-buffer", str(MAX_BUFFER), "--flush-interval", "0.5",
    ]  # fmt: skip
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    with sink_log.open("ab") as out:
        sink = subprocess.Popen(command, env=sink_env, stdout=out, stderr=subprocess.STDOUT)
    load = Load(config, rate=10_000.0, event_speed=10.0)  # a 60-s window every 6 s
    group = f"{config.worker.app_id}-sink-postgres"
    port = config.worker.metrics_port
    outage: list[tuple[float, float, float]] = []  # (t, sink backlog, paused)
    try:
        wait_until(lambda: metric(sink_port, "driftline_sink_paused") >= 0, 60, "the sink")
        started = time.monotonic()
        load.start(130)
        time.sleep(20)
        server.stop()
        down_at = time.monotonic()
        processed_at_down = processed(port)
        while time.monotonic() - down_at < 60:
            outage.append((time.monotonic() - down_at,
                           metric(sink_port, "driftline_sink_backlog_records"),
                           metric(sink_port, "driftline_sink_paused")))  # fmt: skip
            time.sleep(1)
        held_back = uncommitted(config, group)  # consumed or waiting, none committed
        worker_during = (processed(port) - processed_at_down) / (time.monotonic() - down_at)
        server.start()
        up_at = time.monotonic()
        wait_until(
            lambda: (
                metric(sink_port, "driftline_sink_paused") == 0
                and metric(sink_port, "driftline_sink_backlog_records") == 0
            ),
            120,
            "the sink to write its backlog",
        )
        backlog_written = time.monotonic() - up_at
        load.join(120)
        wait_until(lambda: processed(port) >= load.produced, 300, "the worker to catch up")
        worker_rate = load.produced / (time.monotonic() - started)
        windows, events, summaries = topic_contents(config)

        def stored() -> tuple[list[Any], list[Any]]:
            with psycopg.connect(server.url, options=f"-c search_path={schema}") as conn:
                rows = conn.execute(
                    "SELECT extract(epoch FROM window_start)::float8, n_records FROM window_metrics"
                ).fetchall()
                ids = conn.execute("SELECT event_id FROM drift_events").fetchall()
            return rows, ids

        wait_until(lambda: len(stored()[0]) >= len(windows), 120, "every window in PostgreSQL")
        all_written = time.monotonic() - up_at
        time.sleep(2)
        rows, ids = stored()
    finally:
        load.stop()
        stop_worker_processes([worker])
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(30)
        except subprocess.TimeoutExpired:
            sink.kill()
        server.remove()
    sink_text = sink_log.read_text()
    assert sink.returncode == 0, sink_text[-3000:]
    assert "Traceback" not in sink_text and "Traceback" not in (tmp_path / "worker.log").read_text()
    assert max(b for _, b, _ in outage) <= MAX_BUFFER, outage  # bounded
    assert any(p == 1 for _, _, p in outage), outage  # paused
    assert held_back > 0  # what the sink could not write was not committed
    assert "consumer paused until a write succeeds" in sink_text
    assert len(windows) >= 15 and summaries == len(windows)
    assert sorted(rows) == sorted(windows)  # every window once, same record count
    assert sorted(i for (i,) in ids) == sorted(events)  # every drift event once
    assert worker_during > 0
    print(
        f"worker at {worker_rate:,.0f} predictions/s overall ({worker_during:,.0f}/s while "
        f"PostgreSQL was down); outage 60 s: sink backlog <= {MAX_BUFFER} messages, paused, "
        f"{held_back} messages not committed; after PostgreSQL answered: backlog written in "
        f"{backlog_written:.1f} s, all {len(windows)} windows and {len(events)} events stored "
        f"once {all_written:.1f} s after the restart"
    )
