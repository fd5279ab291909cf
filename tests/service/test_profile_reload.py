"""A running worker picks up the reference profile of a new model version (e.g. one that
retraining just registered) without a restart, and says once which version had none."""

from __future__ import annotations

import time
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
from tests.conftest import ROOT, build_reference, worker_env

pytestmark = pytest.mark.service


def _publish(config: Any, records: list[dict[str, Any]]) -> None:
    producer = Producer({**config.kafka.confluent_settings(), "partitioner": "murmur2_random"})
    for record in records:
        producer.produce(
            config.topics.predictions, key=str(record["prediction_id"]), value=orjson.dumps(record)
        )
        producer.poll(0)
    assert producer.flush(30) == 0


def test_a_new_model_version_is_windowed_without_a_restart(kafka: Any, tmp_path: Path) -> None:
    references = tmp_path / "references"
    build_reference(references, model_version="1")
    prefix = f"reload-{int(time.time() * 1000)}"
    env = worker_env(
        kafka.bootstrap_servers,
        prefix,
        references,
        WORKER_REFERENCE_RESCAN_SECONDS="1",
        WINDOWS_SIZE_SECONDS="60",
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    log = tmp_path / "worker.log"
    worker = start_worker_process(None, log, env=env)
    start = 1_767_225_600.0
    try:
        # version 2 before its profile exists: counted, not windowed, said once in the log
        early, _ = simulate(500, seed=1, start_time=start, rate_per_second=100, model_version="2")
        _publish(config, early)
        deadline = time.monotonic() + 60
        while "fraud@2 have no reference profile" not in log.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        build_reference(references, model_version="2")  # what `driftline retrain` does
        time.sleep(1.5)  # > worker.reference_rescan_seconds: the next batch looks again
        # two windows of version 2 after the pickup: the first closes on the second's records
        later, _ = simulate(
            13_000, seed=2, first_index=500, start_time=start + 60, rate_per_second=100,
            model_version="2",
        )  # fmt: skip
        _publish(config, later)
        reader = TopicReader(config, config.topics.metrics, start="beginning")
        try:
            windows = [
                orjson.loads(m.value() or b"{}") for m in reader.messages(timeout=90, idle=15)
            ]
        finally:
            reader.close()
    finally:
        stop_worker_processes([worker])
    versions = {
        (w["evaluation"]["model_version"], w["evaluation"]["window_start"])
        for w in windows
        if w.get("type") == "window"
    }
    assert ("2", start + 60) in versions, (versions, log.read_text()[-3000:])
    assert "picked up the reference profile of fraud@2" in log.read_text()
    assert log.read_text().count("fraud@2 have no reference profile") == 1
