"""What the end-to-end tests of the alerting path share: a model with its reference and a worker
configuration of its own, producing its simulated traffic, a worker run read from the alerts
topic, and the webhook receiver Alertmanager delivers to (config/alertmanager.yml routes to
127.0.0.1:9097). The `receiver` and `own_prometheus` fixtures of tests/conftest.py use it."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config, load_config
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import ROOT, build_reference, worker_env

RECEIVER = ("127.0.0.1", 9097)
ALERTMANAGER = "127.0.0.1:9094"
START = 1_767_225_600.0  # event time of the first simulated record


@dataclass(frozen=True)
class ModelRun:
    """One test's model: its name, its worker's settings (as variables and loaded) and log."""

    model: str
    env: dict[str, str]
    config: Config
    log: Path


def model_run(kafka: Any, tmp_path: Path, prefix: str, model: str, **overrides: str) -> ModelRun:
    """The reference of ``model`` built, a worker configuration with topics named after
    ``prefix`` (created), ``overrides`` as in `worker_env`."""
    references = tmp_path / "references"
    build_reference(references, model=model)
    env = worker_env(kafka.bootstrap_servers, prefix, references, **overrides)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    return ModelRun(model, env, config, tmp_path / "worker.log")


def produce(config: Config, records: Iterable[dict[str, Any]]) -> None:
    """The records on the predictions topic, keyed by prediction id, all delivered."""
    producer = Producer(config.kafka.confluent_settings())
    for record in records:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0


@contextmanager
def worker_events(run: ModelRun, timeout: float = 90) -> Iterator[Iterator[dict[str, Any]]]:
    """A worker process started on ``run``'s settings; yields the events of its alerts topic
    from the beginning (the iteration ends after ``timeout`` s or when the worker exits).
    The worker is stopped on exit."""
    alerts = TopicReader(run.config, run.config.topics.alerts, start="beginning")
    worker = start_worker_process(None, run.log, env=run.env)
    try:
        yield (
            orjson.loads(message.value() or b"{}")
            for message in alerts.messages(timeout=timeout, stop=lambda: worker.poll() is not None)
        )
    finally:
        stop_worker_processes([worker])
        alerts.close()


class Receiver(ThreadingHTTPServer):
    """The webhook Alertmanager posts to: keeps (received at, path, body) of every delivery."""

    def __init__(self, wait: float = 300) -> None:
        """Listening on `RECEIVER`; while another test run (a concurrent checkout on this
        machine) holds the port, waits up to ``wait`` s for it."""
        self.deliveries: list[tuple[float, str, dict[str, Any]]] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                super().__init__(RECEIVER, _Handler)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def wait_for(
        self, model: str, alertnames: set[str], timeout: float = 120
    ) -> tuple[float, str, dict[str, Any]] | None:
        """(received at, path, alert) of the last delivered alert named one of ``alertnames``
        for ``model``, waiting up to ``timeout`` s; None if none came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = None
            for received_at, path, body in list(self.deliveries):
                for alert in body.get("alerts", []):
                    labels = alert["labels"]
                    if labels.get("alertname") in alertnames and labels.get("model_name") == model:
                        found = (received_at, path, alert)
            if found is not None:
                return found
            time.sleep(0.5)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.deliveries.append((time.time(), self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def own_prometheus(directory: Path) -> Iterator[tuple[str, int]]:
    """(url, worker metrics port): a Prometheus of its own (free port, data under
    ``directory``) loading this checkout's config/alert_rules.yml, scraping that port every
    second and sending to the shared Alertmanager."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is not installed (apt-get install prometheus)")
    worker_port, port = free_port(), free_port()
    config = directory / "prometheus.yml"
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
    log = directory / "prometheus.log"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
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
            pytest.fail(log.read_text()[-2000:])
        yield url, worker_port
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    from urllib.parse import urlencode

    url = f"{prometheus_url}/api/v1/query?{urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    return result
