"""The real broker end to end: confluent-kafka in, a worker process, nothing lost."""

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


def test_worker_consumes_every_record_on_four_partitions(
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


def test_a_batch_failing_half_way_is_re_read_and_counted_once(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch consumer in-process on the real broker, with a bug injected into the label
    join of the first partition batch: that partition is rewound (state restored, consumer
    sought back to the committed offset), the failed batch's messages are dead-lettered once
    and every other record is windowed exactly once."""
    import asyncio

    from driftline.config import load_config
    from driftline.streams.app import build_pipeline
    from driftline.streams.checkpoint import ensure_internal_topics
    from driftline.streams.consumer import IngestWorker
    from driftline.streams.labels import PartitionLabels
    from tests.conftest import ROOT, build_reference

    _, env = isolated_config
    references = tmp_path / "references"
    build_reference(references)
    config = load_config(
        ROOT / "config" / "driftline.yaml",
        environ={**env, "DRIFTLINE_WORKER_REFERENCE_DIR": str(references)},
    )
    ensure_topics(config)
    ensure_internal_topics(config)
    producer = Producer({**config.kafka.confluent_settings(), "partitioner": "murmur2_random"})
    n = 2_000
    for record in fraud_records(n, seed=11):
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    failed: list[int] = []
    add_columns = PartitionLabels.add_columns

    def fail_once(self: PartitionLabels, model: str, version: str, ids: list[str], *a: object):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(len(ids))
            raise RuntimeError("a bug, injected")
        return add_columns(self, model, version, ids, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(PartitionLabels, "add_columns", fail_once)
    worker = IngestWorker(config, lambda send, load: build_pipeline(config, 4, send, load))
    windowed: list[int] = []

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not task.done():
            states = worker.pipeline.stage1.values()
            if len(states) == 4 and sum(s.last_offset + 1 for s in states) == n:
                break
            await asyncio.sleep(0.2)
        for state in worker.pipeline.stage1.values():
            state.flush()
        windowed.append(
            sum(
                sketch.n_records
                for state in worker.pipeline.stage1.values()
                for sketch in state.open.values()
            )
        )
        worker.stop()
        await task

    asyncio.run(main())
    dead_letters = TopicReader(config, config.topics.dlq, start="beginning")
    try:
        dlq = list(dead_letters.messages(timeout=30, idle=3))
    finally:
        dead_letters.close()
    assert failed and 0 < failed[0] < n
    assert windowed == [n - failed[0]]
    assert len(dlq) == failed[0]
    assert {dict(m.headers() or [])["driftline.reason.kind"] for m in dlq} == {b"worker_error"}
    assert "re-reading partitions" in caplog.text
