"""Drift to page, for real: a worker scraped by Prometheus, the shipped rules, Alertmanager
routing to a webhook receiver this test runs on 127.0.0.1:9097 (config/alertmanager.yml)."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = ("127.0.0.1", 9097)


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.deliveries: list[tuple[float, str, dict[str, Any]]] = []
        super().__init__(RECEIVER, Handler)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.deliveries.append((time.time(), self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_drift_reaches_the_alertmanager_webhook(
    kafka: Any, prometheus_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    model = f"fraud-{suffix}"
    references = tmp_path / "references"
    build_reference(references, model=model)
    env = worker_env(
        kafka.bootstrap_servers,
        f"e2e-{suffix}",
        references,
        # the port config/prometheus.yml scrapes
        WORKER_METRICS_PORT=os.environ.get("DRIFTLINE_WORKER_METRICS_PORT", "9108"),
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    stream, _ = simulate(
        30_000,
        seed=4,
        model=model,
        start_time=1_767_225_600.0,
        rate_per_second=100.0,
        schedule=[Drift("abrupt", 180, magnitude=1.0)],
    )
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    try:
        event_seen_at = None
        for message in alerts.messages(timeout=90, stop=lambda: worker.poll() is not None):
            if orjson.loads(message.value() or b"{}")["type"] == "data_drift":
                event_seen_at = time.time()
                break
        assert event_seen_at is not None, (tmp_path / "worker.log").read_text()[-3000:]
        delivery = None
        deadline = time.monotonic() + 120
        while delivery is None and time.monotonic() < deadline:
            for received_at, path, body in list(receiver.deliveries):
                for alert in body.get("alerts", []):
                    labels_ = alert["labels"]
                    if (
                        labels_.get("alertname") == "ModelDataDrift"
                        and labels_.get("model_name") == model
                    ):
                        delivery = (received_at, path, alert)
            time.sleep(0.5)
        # While the worker still runs: once it stops, Prometheus marks its series stale.
        query = urllib.parse.urlencode(
            {"query": f'model_drift_detected{{model_name="{model}"}} == 1'}
        )
        with urllib.request.urlopen(
            f"{prometheus_url}/api/v1/query?{query}", timeout=10
        ) as response:
            result = json.loads(response.read())["data"]["result"]
    finally:
        stop_worker_processes([worker])
        alerts.close()
    assert delivery is not None, (
        f"no ModelDataDrift for {model} reached the webhook: {receiver.deliveries[-3:]}"
    )
    received_at, path, alert = delivery
    assert path == "/alertmanager/warning"  # warnings route to chat, not to the pager
    assert alert["labels"]["feature_name"] == "amount" and alert["status"] == "firing"
    assert {r["metric"]["feature_name"] for r in result} >= {"amount"}
    print(
        f"drift event on the alerts topic -> Alertmanager webhook: {received_at - event_seen_at:.1f} s"
    )
