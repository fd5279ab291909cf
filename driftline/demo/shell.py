"""The demo's I/O helpers: the local Slack stand-in, library output kept off the terminal, topic
readers, the run's environment, and the champion (model version 1) every run starts from."""

from __future__ import annotations

import http.server
import json
import logging
import os
import pickle
import queue
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from driftline.config import Config
from driftline.demo.story import MODEL, Plan
from driftline.detectors.profile import ReferenceProfile
from driftline.local import free_port
from driftline.simulate import simulate


class _SlackReceiver(http.server.ThreadingHTTPServer):
    """A local stand-in for a Slack incoming webhook: keeps what it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with suppress(ValueError):
                    receiver.received.put((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the demo prints the messages itself

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/slack"


@contextmanager
def _quiet_libraries(log_path: Path) -> Iterator[TextIO]:
    """Send everything libraries write to stderr (librdkafka's ``%6|...|`` lines, Python
    logging, warnings) to ``log_path``; yield the terminal's stdout for the demo's output."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    saved_fd = os.dup(2)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    with open(log_path, "a", buffering=1) as log_file:
        sys.stderr.flush()
        os.dup2(log_file.fileno(), 2)
        saved_stderr, sys.stderr = sys.stderr, log_file
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        try:
            yield terminal
        finally:
            root.handlers, root.level = saved_handlers, saved_level
            sys.stderr = saved_stderr
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def _reader(config: Config, topic: str) -> Consumer:
    consumer = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"{config.worker.app_id}-demo-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = metadata.topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def _drain(consumer: Consumer) -> list[dict[str, Any]]:
    out = []
    for message in consumer.consume(1000, timeout=0):
        if message.error() is None and message.value():
            try:
                value = orjson.loads(message.value() or b"")
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _environment(run: str, cache: Path, plan: Plan, slack_url: str, pg_url: str) -> dict[str, str]:
    policies = cache / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: degradation\n    triggers: concept_drift,performance_drop\n"
        f"    cooldown_seconds: 3600\n    min_new_labels: {plan.min_new_labels}\n"
    )
    separator = "&" if "?" in pg_url else "?"
    schema = run.replace("-", "_")
    return {
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{run}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{run}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{run}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"{run}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"{run}.metrics",
        "DRIFTLINE_WORKER_APP_ID": run,
        "DRIFTLINE_WORKER_METRICS_PORT": str(free_port()),
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(cache / "references"),
        "DRIFTLINE_WORKER_DATA_DIR": str(cache / "worker"),
        "DRIFTLINE_WORKER_BATCH_TIMEOUT_SECONDS": "0.2",
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": str(plan.window_seconds),
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "2",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "3",
        "DRIFTLINE_LABELS_HORIZON_SECONDS": str(max(10, plan.window_seconds // 2)),
        "DRIFTLINE_RETRAINING_CONTROL_TOPIC": f"{run}.model-control",
        "DRIFTLINE_RETRAINING_ARTIFACT_DIR": str(cache / "artifacts"),
        "DRIFTLINE_RETRAINING_POLICIES_FILE": str(policies),
        "DRIFTLINE_RETRAINING_SAMPLE_RATE": "1.0",
        "DRIFTLINE_RETRAINING_CHALLENGER_TRAFFIC_SHARE": "0.5",
        "DRIFTLINE_RETRAINING_AB_MIN_SAMPLES_PER_ARM": str(plan.ab_min_samples_per_arm),
        "DRIFTLINE_RETRAINING_EVALUATE_INTERVAL_SECONDS": "1",
        "DRIFTLINE_NOTIFICATIONS_SLACK_WEBHOOK_URL": slack_url,
        # The notifier's alert history and every other store use the run's own schema.
        "DRIFTLINE_POSTGRES_URL": f"{pg_url}{separator}options={quote(f'-csearch_path={schema}')}",
    }


def bootstrap_champion(
    store: Any,
    artifact_dir: Path,
    references: Path,
    *,
    training_records: int,
    model_name: str = MODEL,
    reason: str = "demo: trained on the before data",
) -> Any:
    """Model version 1 of ``model_name``: trained on ``training_records`` simulated "before"
    records (seed 11), its artifact stored, registered as champion, its reference profile
    (with its own predictions and scores) written to ``references``. Returns the fitted model.
    The demo and the retraining end-to-end test both start from it."""
    from driftline.retrain.pipeline import store_artifact
    from driftline.retrain.registry import Registry
    from driftline.retrain.sklearn_pipeline import fit, predict

    records, labels = simulate(training_records, seed=11, model=model_name, model_version="1")
    rows = [
        {"features": r["features"], "label": x["label"]}
        for r, x in zip(records, labels, strict=True)
    ]
    model = fit(rows)
    path, digest = store_artifact(artifact_dir, model_name, "1", pickle.dumps(model))
    Registry(store).register(
        model=model_name,
        version="1",
        status="champion",
        artifact_path=path,
        artifact_sha256=digest,
        reason=reason,
    )
    predicted, scores = predict(model, [r["features"] for r in records])
    for record, p, s in zip(records, predicted, scores, strict=True):
        record["prediction"], record["score"] = p, s
    references.mkdir(parents=True, exist_ok=True)
    ReferenceProfile.from_records(
        records, model=model_name, model_version="1", labels=[x["label"] for x in labels]
    ).save(references / f"{model_name}@1.json")
    return model
