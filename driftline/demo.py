"""`driftline demo`: one end-to-end pass on the real local stack.

Creates the topics, starts a worker process, publishes predictions with the client (plus a few
malformed messages), then reads what the worker reported and what reached the dead-letter topic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Producer

from driftline.client import PredictionLogger
from driftline.config import Config
from driftline.simulate import fraud_records
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics

__all__ = ["run_demo", "start_worker_process"]

MALFORMED = [b"{not json", b'{"model": "fraud"}', b'"a string"']


def start_worker_process(
    config_path: Path | None, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `driftline worker` as a child process, logging to `log_path`."""
    command = [sys.executable, "-m", "driftline"]
    if config_path is not None:
        command += ["--config", str(config_path)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [*command, "worker"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def run_demo(config: Config, n_records: int, config_path: Path | None) -> int:
    ensure_topics(config)
    summaries = TopicReader(config, config.topics.metrics)
    dead_letters = TopicReader(config, config.topics.dlq)
    log_path = Path(".cache/logs/demo-worker.log")
    print(f"starting a worker (log: {log_path})")
    worker = start_worker_process(config_path, log_path)
    try:
        started = time.monotonic()
        run_id = str(
            int(time.time())
        )  # this run's model version, to tell its records from older ones
        with PredictionLogger(
            config.kafka.bootstrap_servers,
            config.topics.predictions,
            settings=config.kafka.confluent_settings(),
        ) as logger:
            for record in fraud_records(
                n_records, seed=int(run_id), start_time=time.time(), model_version=run_id
            ):
                logger.log(**record)
        raw = Producer(config.kafka.confluent_settings())
        for payload in MALFORMED:
            raw.produce(config.topics.predictions, value=payload, key=b"malformed")
        raw.flush(30)
        print(
            f"published {n_records} predictions and {len(MALFORMED)} malformed messages "
            f"in {time.monotonic() - started:.1f} s"
        )

        seen: Counter[str] = Counter()
        for message in summaries.messages(timeout=120, stop=lambda: worker.poll() is not None):
            summary = orjson.loads(message.value() or b"{}")
            seen.update(summary.get("per_model", {}))
            if seen[f"fraud@{run_id}"] >= n_records:
                break
        if worker.poll() is not None:
            print(f"demo FAILED: the worker exited with code {worker.returncode}; see {log_path}")
            return 1
        reasons: Counter[str] = Counter()
        for message in dead_letters.messages(timeout=30, idle=5):
            kind = dict(message.headers() or []).get("driftline.reason.kind") or b"?"
            reasons[kind.decode() if isinstance(kind, bytes) else kind] += 1
        elapsed = time.monotonic() - started
        print(
            f"worker accepted {seen[f'fraud@{run_id}']} of this run's predictions in {elapsed:.1f} s "
            f"(all models seen: {dict(seen)})"
        )
        print(
            f"dead-letter topic {config.topics.dlq}: {sum(reasons.values())} messages {dict(reasons)}"
        )
        ok = seen[f"fraud@{run_id}"] == n_records and sum(reasons.values()) >= len(MALFORMED)
        print("demo OK" if ok else "demo FAILED: counts differ from what was published")
        return 0 if ok else 1
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        summaries.close()
        dead_letters.close()
