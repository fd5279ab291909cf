"""Fault: Prometheus and Alertmanager go down (issue 14, "Prometheus or Alertmanager down").

Private instances (deploy/local/prometheus.sh with their own cache directory and ports) scrape a
worker; both are stopped while traffic flows; the worker keeps processing (its counter reaches
every record while nothing scrapes it); once they are started again Prometheus sees the current
count. The time from the restart to the first scrape showing it is printed."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.simulate import fraud_records
from driftline.streams.topics import ensure_topics
from tests.faults.test_broker_restart import processed, wait_until
from tests.security.services import _run, _script_env

pytestmark = pytest.mark.service


def query(prometheus: int, expression: str) -> float | None:
    url = f"http://127.0.0.1:{prometheus}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expression}
    )
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            result = json.loads(response.read())["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


def test_worker_keeps_processing_while_prometheus_and_alertmanager_are_down(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path
) -> None:
    config, env = isolated_config
    ensure_topics(config)
    prometheus, alertmanager = free_port(), free_port()
    script_env = _script_env(
        tmp_path / "cache",
        PROMETHEUS_PORT=str(prometheus),
        ALERTMANAGER_PORT=str(alertmanager),
        ALERTMANAGER_CLUSTER_PORT=str(free_port()),
        DRIFTLINE_WORKER_METRICS_PORT=str(config.worker.metrics_port),
    )
    _run("prometheus.sh", "start", script_env)
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    port = config.worker.metrics_port
    producer = Producer(config.kafka.confluent_settings())

    def produce(n: int, seed: int) -> None:
        for record in fraud_records(n, seed=seed):
            producer.produce(
                config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
            )
        assert producer.flush(30) == 0

    total = "sum(driftline_records_processed_total)"
    try:
        produce(2_000, seed=1)
        wait_until(lambda: query(prometheus, total) == 2_000, 90, "Prometheus to scrape 2,000")
        _run("prometheus.sh", "stop", script_env)
        assert query(prometheus, "up") is None  # down
        produce(3_000, seed=2)
        caught_up = wait_until(lambda: processed(port) >= 5_000, 60, "the worker, unscraped")
        _run("prometheus.sh", "start", script_env)
        restarted = time.monotonic()
        wait_until(
            lambda: query(prometheus, total) == 5_000, 60, "the first scrape after the restart"
        )
        recovery = time.monotonic() - restarted
        discovered = "prometheus_notifications_alertmanagers_discovered"
        wait_until(lambda: query(prometheus, discovered) == 1.0, 30, "the Alertmanager again")
    finally:
        stop_worker_processes([worker])
        _run("prometheus.sh", "stop", script_env)
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode is not None and worker.returncode <= 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    print(
        f"worker processed 3,000 records in {caught_up:.1f} s with Prometheus and Alertmanager "
        f"down; first scrape with the current count {recovery:.1f} s after their restart"
    )
