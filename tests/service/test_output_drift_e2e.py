"""Output drift to page, for real: scores pushed up while the features stay put produce an
`output_drift` event on the alerts topic, the `model_score_drift` metric in Prometheus and an
output-drift alert at the Alertmanager webhook.

As test_alerting_e2e.py, with one difference: the test runs a Prometheus of its own (free port,
temp dir) that loads this checkout's config/alert_rules.yml and scrapes this test's worker, and
sends to the shared Alertmanager. The shared Prometheus loads the rules it was started with and
scrapes one fixed port, so it can neither see new rules nor tell concurrent workers apart."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, free_port, worker_env
from tests.service.test_alerting_e2e import Receiver, receiver  # noqa: F401 (fixture)

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
DRIFT_FROM = 180.0  # seconds after the start: windows 4 and 5 of 60 s carry the change
OUTPUT_ALERTS = {"ModelOutputDrift", "ModelOutputDriftWithEstimatedDrop"}
ALERTMANAGER = "127.0.0.1:9094"


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(url, worker metrics port): a Prometheus scraping that port with this checkout's rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is not installed (apt-get install prometheus)")
    worker_port, port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "config" / "alert_rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [ALERTMANAGER]}]}]},
                "scrape_configs": [
                    {
                        "job_name": "driftline",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                    }
                ],
            }
        )
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "prometheus.log").read_text()[-2000:])
        yield url, worker_port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_output_drift_reaches_the_topic_prometheus_and_the_webhook(
    kafka: Any,
    own_prometheus: tuple[str, int],
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    prometheus_url, metrics_port = own_prometheus
    suffix = uuid.uuid4().hex[:8]
    model = f"fraud-out-{suffix}"
    references = tmp_path / "references"
    build_reference(references, model=model)
    env = worker_env(
        kafka.bootstrap_servers,
        f"e2e-out-{suffix}",
        references,
        WORKER_METRICS_PORT=str(metrics_port),
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    start = 1_767_225_600.0
    stream, _ = simulate(30_000, seed=5, model=model, start_time=start, rate_per_second=100.0)
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        if record["timestamp"] - start >= DRIFT_FROM:  # the model's outputs move, not its inputs
            record["score"] = round(min(1.0, record["score"] + 0.1), 6)
            record["prediction"] = int(record["score"] >= 0.5)
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    try:
        event = None
        for message in alerts.messages(timeout=90, stop=lambda: worker.poll() is not None):
            found = orjson.loads(message.value() or b"{}")
            if found["type"] == "output_drift":
                event = found
                break
        assert event is not None, (tmp_path / "worker.log").read_text()[-3000:]
        delivery = None
        deadline = time.monotonic() + 120
        while delivery is None and time.monotonic() < deadline:
            for _, path, body in list(receiver.deliveries):
                for alert in body.get("alerts", []):
                    labels = alert["labels"]
                    if (
                        labels.get("alertname") in OUTPUT_ALERTS
                        and labels.get("model_name") == model
                    ):
                        delivery = (path, alert)
            time.sleep(0.5)
    finally:
        stop_worker_processes([worker])
        alerts.close()
    assert event["window_start"] >= start + DRIFT_FROM
    evidence = event["evidence"]
    assert "score" in evidence["drifted_signals"], evidence
    assert (
        evidence["signals"]["score"]["window"]["mean"]
        > evidence["signals"]["score"]["reference"]["mean"]
    )
    assert delivery is not None, f"no output-drift alert for {model}: {receiver.deliveries[-3:]}"
    path, alert = delivery
    assert alert["status"] == "firing"
    assert path == (
        "/alertmanager/critical"
        if alert["labels"]["alertname"] == "ModelOutputDriftWithEstimatedDrop"
        else "/alertmanager/warning"
    )
    # the worker is stopped: its series are stale now, hence last_over_time
    query = urllib.parse.urlencode(
        {"query": f'last_over_time(model_score_drift{{model_name="{model}"}}[10m])'}
    )
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}", timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    assert result and float(result[0]["value"][1]) > 0.02
