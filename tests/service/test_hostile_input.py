"""Hostile input through the real worker on the real Kafka (property-based, bounded): hypothesis
draws a stream of messages mixing valid predictions with invalid JSON, wrong types, huge and
out-of-range numbers, far-future timestamps, oversized strings, unknown models and batch
messages holding some of each. One worker reads the first half and is stopped once it has
checkpointed it, and its successor reads the rest; then every valid record is counted
exactly once in its window, and every bad source message is in the DLQ exactly once, listing
exactly its bad records with a known reason kind."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException, Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.checkpoint import read_checkpoints
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
KINDS = {"invalid_json", "invalid_shape", "schema_violation", "timestamp_out_of_range"}

# a mutation makes a valid record invalid in one field
MUTATIONS: dict[str, Any] = {
    "score_text": lambda r: {**r, "score": "high"},
    "score_huge": lambda r: {**r, "score": 1e300},
    "prediction_list": lambda r: {**r, "prediction": [1, 2]},
    "feature_object": lambda r: {**r, "features": {**r["features"], "amount": {"x": 1}}},
    "feature_huge": lambda r: {**r, "features": {**r["features"], "amount": -1e200}},
    "far_future": lambda r: {**r, "timestamp": 9.9e10},
    "long_model": lambda r: {**r, "model": "m" * 5000},
    "empty_id": lambda r: {**r, "prediction_id": ""},
    "no_timestamp": lambda r: {k: v for k, v in r.items() if k != "timestamp"},
    "version_bool": lambda r: {**r, "model_version": True},
}
RECORD = st.sampled_from(["valid", "valid", "valid", "ghost", *MUTATIONS])
MESSAGE = st.one_of(
    st.tuples(st.just("single"), RECORD),
    st.tuples(st.just("batch"), st.lists(RECORD, min_size=1, max_size=40)),
    st.tuples(st.just("garbage"), st.binary(max_size=64).map(lambda b: b"\x00{" + b)),
)


@settings(
    max_examples=1,  # one run (~20 s, a restart in it); the fixed part covers every kind
    phases=[Phase.generate],
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(extra=st.lists(MESSAGE, min_size=20, max_size=60), order=st.randoms())
def test_hostile_messages_never_blind_the_worker(
    extra: list[Any], order: Any, kafka: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # every kind of record alone and in a batch, then what hypothesis draws, shuffled
    plan = [("single", kind) for kind in ["valid", "ghost", *MUTATIONS]]
    plan += [("batch", ["valid", kind, "valid"]) for kind in MUTATIONS]
    plan += [("batch", list(MUTATIONS)), ("garbage", b"{"), ("garbage", b"\xff\xfe"), *extra]
    order.shuffle(plan)
    tmp_path = tmp_path_factory.mktemp("hostile")
    suffix = uuid.uuid4().hex[:8]
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(
        kafka.bootstrap_servers,
        f"hostile-{suffix}",
        references,
        TOPICS_PARTITIONS="1",
        WORKER_BATCH_TIMEOUT_SECONDS="0.2",
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    pool, _ = simulate(2000, seed=3, start_time=START, rate_per_second=100.0)
    used = 0

    def record(kind: str) -> dict[str, Any]:
        nonlocal used
        base = {**pool[used % len(pool)], "prediction_id": f"h-{used}"}
        base["timestamp"] = START + (used % 2000) / 50.0  # all in the window [START, START+60)
        used += 1
        if kind == "ghost":
            return {**base, "model": "ghost"}  # valid, unknown model: neither window nor DLQ
        return base if kind == "valid" else MUTATIONS[kind](base)

    valid = 0
    expected_dlq: dict[int, int] = {}  # offset -> number of rejects
    values: list[bytes] = []
    for shape, content in plan:
        offset = len(values)
        if shape == "garbage":
            values.append(content)
            expected_dlq[offset] = 1
            continue
        kinds = [content] if shape == "single" else content
        records = [record(kind) for kind in kinds]
        values.append(orjson.dumps(records[0] if shape == "single" else {"records": records}))
        valid += kinds.count("valid")
        bad = sum(kind in MUTATIONS for kind in kinds)
        if bad:
            expected_dlq[offset] = bad
    closer = {**pool[0], "prediction_id": "closer", "timestamp": START + 600}
    values.append(orjson.dumps(closer))  # closes the window of everything above

    producer = Producer(config.kafka.confluent_settings())
    half = len(values) // 2

    def produce(part: list[bytes]) -> None:
        for value in part:
            producer.produce(config.topics.predictions, key=b"k", value=value)
        assert producer.flush(30) == 0

    produce(values[:half])
    summaries = TopicReader(config, config.topics.metrics, start="beginning")
    dlq = TopicReader(config, config.topics.dlq, start="beginning")
    log_path = tmp_path / "worker.log"
    worker = start_worker_process(None, log_path, env=env)
    window: dict[str, Any] | None = None
    dead: dict[int, list[Any]] = {}
    try:
        # a restart in the middle, once the first half is checkpointed (a clean stop: with
        # SIGKILL the successor waits out the 45-s session timeout; test_label_recovery.py
        # and test_pipeline.py kill with SIGKILL)
        deadline, saved = time.monotonic() + 60, {}
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                saved = read_checkpoints(config).get("s1/0") or {}
            except KafkaException:  # the worker has not created its checkpoint topic yet
                saved = {}
            if saved.get("last_offset") == half - 1:
                break
            time.sleep(0.5)
        assert saved.get("last_offset") == half - 1, "the first half was never checkpointed"
        stop_worker_processes([worker])
        worker = start_worker_process(None, log_path, env=env)
        produce(values[half:])
        for message in summaries.messages(timeout=90, stop=lambda: worker.poll() is not None):
            summary = orjson.loads(message.value() or b"{}")
            if summary["type"] == "window" and summary["evaluation"]["window_start"] == START:
                window = summary
                break
        deadline = time.monotonic() + 30
        while len(dead) < len(expected_dlq) and time.monotonic() < deadline:
            for message in dlq.messages(timeout=2, idle=1):
                headers = dict(message.headers() or [])
                source = int(headers["driftline.source.offset"])
                count = int(headers["driftline.rejects.count"])
                dead.setdefault(source, []).append((count, headers["driftline.reason.kind"]))
        assert worker.poll() is None, "the worker died"
    finally:
        stop_worker_processes([worker])
        summaries.close()
        dlq.close()
    print(f"{len(values)} messages, {valid} valid records, {len(expected_dlq)} dead-lettered")
    log = log_path.read_text()
    assert "Traceback" not in log and "partition 0: restored" in log, log[-3000:]
    assert window is not None, "the window never closed"
    assert window["evaluation"]["summary"]["n_records"] == valid
    assert {o: len(r) for o, r in dead.items()} == dict.fromkeys(expected_dlq, 1), "one each"
    assert {o: r[0][0] for o, r in dead.items()} == expected_dlq
    assert {r[0][1].decode() for r in dead.values()} <= KINDS
