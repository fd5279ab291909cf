"""The real broker end to end: confluent-kafka in, a Faust worker process, nothing lost."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Message, Producer

from driftline.config import Config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import fraud_records
from driftline.streams.reader import TopicReader
from driftline.streams.topics import TopicError, check_copartitioned, ensure_topics

pytestmark = pytest.mark.service

N_RECORDS = 10_000


def _counter(url: str, name: str) -> float:
    """Sum of a counter's samples on a worker's /metrics page (0 until it serves)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_faust_worker_consumes_every_record_on_four_partitions(
    isolated_config: tuple[Config, dict[str, str]], tmp_path: Path
) -> None:
    config, env = isolated_config
    assert ensure_topics(config)  # fresh topics, 4 partitions
    assert check_copartitioned(config) == 4

    produced: Counter[int] = Counter()  # valid records per partition
    malformed_partitions: list[int] = []

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        if msg.key() == b"bad":
            malformed_partitions.append(msg.partition())
        else:
            produced[msg.partition()] += 1

    producer = Producer({**config.kafka.confluent_settings(), "partitioner": "murmur2_random"})
    for record in fraud_records(N_RECORDS, seed=7):
        producer.produce(
            config.topics.predictions,
            key=record["prediction_id"],
            value=orjson.dumps(record),
            on_delivery=delivered,
        )
        producer.poll(0)
    producer.produce(config.topics.predictions, key=b"bad", value=b"{broken", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert sum(produced.values()) == N_RECORDS and len(malformed_partitions) == 1
    assert len(produced) == 4, "records should spread over all four partitions"
    # No reference profile here: the worker parses and counts every record (what this test
    # checks), and windows nothing. tests/service/test_pipeline.py covers the windows.

    dead_letters = TopicReader(config, config.topics.dlq, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    metrics_url = f"http://127.0.0.1:{config.worker.metrics_port}/metrics"
    try:
        accepted = 0.0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None:
            accepted = _counter(metrics_url, "driftline_records_processed_total")
            if accepted >= N_RECORDS:
                break
            time.sleep(0.5)
        time.sleep(1)  # anything beyond N would be a duplicate: give it a moment to show
        accepted = _counter(metrics_url, "driftline_records_processed_total")
        dlq = list(dead_letters.messages(timeout=30, idle=3))
    finally:
        stop_worker_processes([worker])
        dead_letters.close()

    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode in (0, -signal.SIGTERM), log[-3000:]
    assert accepted == N_RECORDS, log[-3000:]
    assert len(dlq) == 1
    headers = dict(dlq[0].headers() or [])
    assert dlq[0].value() == b"{broken"
    assert headers["driftline.reason.kind"] == b"invalid_json"
    assert headers["driftline.source.topic"] == config.topics.predictions.encode()
    assert headers["driftline.source.partition"] == str(malformed_partitions[0]).encode()


def test_worker_refuses_topics_that_are_not_copartitioned(
    isolated_config: tuple[Config, dict[str, str]],
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    config, _ = isolated_config
    admin = AdminClient(config.kafka.confluent_settings())
    futures = admin.create_topics(
        [NewTopic(config.topics.predictions, 4, 1), NewTopic(config.topics.labels, 2, 1)]
    )
    for future in futures.values():
        future.result()
    with pytest.raises(TopicError, match=r"co-partitioned.*has 4.*has 2"):
        check_copartitioned(config)
