"""Fault: the Kafka broker stops and starts again while traffic flows (issue 14, "Broker
restart"), on the private broker of this session (never the shared one).

The client library keeps logging during the outage (librdkafka queues), a worker process and
`driftline notify` stay up; after the restart every record is in exactly one closed window
(the windows on the metrics topic add up to what was logged: nothing lost, nothing counted
twice), and an alert raised after the restart is delivered. Recovery times are printed."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from driftline.client import PredictionLogger
from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.sinks.notify import run_notifier
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env
from tests.security.test_secrets_full_run import start_groups_at_the_beginning
from tests.service.test_notifications import serve

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


def processed(port: int) -> float:
    """driftline_records_processed_total on the worker's /metrics (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    name = "driftline_records_processed_total"
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def synthetic_event(feature: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"ev-{feature}",
            "model": "fraud",
            "model_version": "1",
            "type": "data_drift",
            "severity": "warning",
            "feature": feature,
            "test": "psi",
            "statistic": 0.5,
            "p_value": 0.001,
            "threshold": 0.2,
        }
    )


def window_summaries(config: Any) -> list[tuple[float, int]]:
    """(window start, records) of every window summary on the metrics topic, duplicates
    included, once two have arrived (and nothing more for 2 s)."""
    reader = TopicReader(config, config.topics.metrics, start="beginning")
    summaries: list[tuple[float, int]] = []
    deadline = time.monotonic() + 90
    try:
        while len(summaries) < 2 and time.monotonic() < deadline:
            for message in reader.messages(timeout=1):
                evaluation = orjson.loads(message.value() or b"{}").get("evaluation")
                if evaluation:
                    summaries.append(
                        (evaluation["window_start"], evaluation["summary"]["n_records"])
                    )
        for message in reader.messages(timeout=3, idle=2):  # anything a duplicate would add
            evaluation = orjson.loads(message.value() or b"{}").get("evaluation")
            if evaluation:
                summaries.append((evaluation["window_start"], evaluation["summary"]["n_records"]))
    finally:
        reader.close()
    return summaries


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"audit-{uuid.uuid4().hex[:8]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
            elif message is None and len(messages) >= expected:
                break
    finally:
        consumer.close()
    return messages


def wait_until(condition: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def test_client_and_notifier_reconnect_after_a_broker_restart(
    private_kafka: Any, tmp_path: Path
) -> None:
    """In `make test`: the client library and `driftline notify` through a broker restart."""
    _broker_restart(private_kafka, tmp_path, with_worker=False)


@pytest.mark.slow_fault
def test_worker_windows_survive_a_broker_restart(private_kafka: Any, tmp_path: Path) -> None:
    """In `make test-faults` (about 55 s): the same with a worker, whose windows must count
    every record once. With the Faust worker it failed in 2 of 5 runs (2026-12-01: records
    lost between the worker's stages); on the confluent-kafka worker 6 of 6 runs passed
    (2026-12-02, load 2.5-13); see docs/OPERATIONS.md, "Faults"."""
    _broker_restart(private_kafka, tmp_path, with_worker=True)


def _broker_restart(private_kafka: Any, tmp_path: Path, *, with_worker: bool) -> None:
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    references = tmp_path / "references"
    if with_worker:
        build_reference(references)
    http = serve(0)
    env = worker_env(private_kafka.bootstrap, prefix, references)
    env["DRIFTLINE_NOTIFICATIONS_WEBHOOK_URL"] = f"http://127.0.0.1:{http.server_address[1]}/hook"
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    start_groups_at_the_beginning(config)
    stop_notifier = threading.Event()
    notifier = threading.Thread(
        target=run_notifier, args=(config,), kwargs={"stop": stop_notifier.is_set}, daemon=True
    )
    notifier.start()
    worker = start_worker_process(None, tmp_path / "worker.log", env=env) if with_worker else None
    port = config.worker.metrics_port
    worker_recovery = 0.0
    # 130 s of event time at 100 records/s: windows [0, 60) and [60, 120) close (the records
    # after 120 s move the watermark past them); [120, 180) stays open.
    records, _ = simulate(13_000, seed=3, start_time=1_767_225_600.0, rate_per_second=100.0)
    before, during, after = records[:3_000], records[3_000:6_000], records[6_000:]
    logger = PredictionLogger(private_kafka.bootstrap, config.topics.predictions)
    feeder = Producer({"bootstrap.servers": private_kafka.bootstrap})  # synthetic drift events

    def log_all(batch: list[dict[str, Any]]) -> None:
        for r in batch:
            logger.log(
                prediction_id=r["prediction_id"], model=r["model"],
                model_version=r["model_version"], features=r["features"],
                prediction=r["prediction"], score=r.get("score"), timestamp=r["timestamp"],
            )  # fmt: skip

    def subjects() -> list[str]:  # of the alerts that fired (the windows resolve them later)
        bodies = [json.loads(body) for _, _, _, body in list(http.requests)]
        return [b["subject"] for b in bodies if b["action"] == "firing"]

    try:
        log_all(before)
        feeder.produce(config.topics.alerts, key=b"fraud", value=synthetic_event("f_before"))
        logger.flush()
        feeder.flush()
        if worker is not None:
            wait_until(
                lambda: processed(port) >= 3_000, 90, "the worker to process the first records"
            )
        wait_until(lambda: "f_before" in subjects(), 30, "the first alert")

        private_kafka.stop()
        down_at = time.monotonic()
        log_all(during)  # the client library queues while the broker is down
        time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
        restart = private_kafka.start()
        up_at = time.monotonic()
        feeder.produce(config.topics.alerts, key=b"fraud", value=synthetic_event("f_after"))
        logger_recovery = wait_until(
            lambda: logger._producer.flush(0.2) == 0, 120, "the logger's queue"
        )
        feeder.flush()
        if worker is not None:
            worker_recovery = wait_until(
                lambda: processed(port) >= len(before) + len(during), 120, "the worker to resume"
            )
        notifier_recovery = wait_until(
            lambda: "f_after" in subjects(), 120, "the alert after the restart"
        )
        log_all(after)
        logger.flush()
        summaries = window_summaries(config) if worker is not None else []
        logged = Counter(
            m.key()
            for m in read_topic(private_kafka.bootstrap, config.topics.predictions, len(records))
        )
    finally:
        stop_worker_processes([worker] if worker is not None else [])
        stop_notifier.set()
        notifier.join(30)
        http.shutdown()
    # The client library: every record logged before, during and after the outage is on the
    # topic exactly once (its producer is idempotent: no duplicates from its retries).
    assert len(logged) == len(records) and set(logged.values()) == {1}
    if worker is not None:
        log = (tmp_path / "worker.log").read_text()
        assert worker.returncode is not None and worker.returncode <= 0, log[-3000:]
        # Every record before and during the outage, and after it up to 120 s, exactly once:
        # one summary per window, with all its records.
        expected = [(1_767_225_600.0, 6_000), (1_767_225_660.0, 6_000)]
        assert sorted(summaries) == expected, (summaries, log[-3000:])
    assert subjects().count("f_before") == 1 and subjects().count("f_after") == 1, subjects()
    assert not notifier.is_alive()
    worker_part = f"worker processing again in {worker_recovery:.1f} s, " if with_worker else ""
    print(
        f"broker down {up_at - down_at:.1f} s (restart took {restart:.1f} s); after it answered: "
        f"client library delivered its queue in {logger_recovery:.1f} s, {worker_part}"
        f"notifier delivered a new alert in {notifier_recovery:.1f} s"
    )
