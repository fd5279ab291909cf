"""The label join survives a crash: predictions are consumed and checkpointed by a worker (in
chunks: the checkpoint is above a small `worker.checkpoint_message_bytes`), the worker is killed
with SIGKILL and restarted, then the labels arrive. They join the predictions made before the
crash (full label coverage), and nothing is counted twice."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.streams.checkpoint import read_checkpoints
from driftline.streams.reader import TopicReader
from driftline.streams.segments import JOIN_FIELD, JOIN_MARK, restore_join_segments
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
N = 18_000  # 180 s at 100/s: windows [0, 60) and [60, 120) close, [120, 180) stays open


def _summaries(
    reader: TopicReader,
    kind: str,
    count: int,
    timeout: float,
    worker: Any,
    everything: list[dict[str, Any]],
) -> list[Any]:
    """Summaries of `kind` (performance windows: final ones) until `count` windows; every
    summary read is appended to `everything`, in topic order."""
    seen: list[dict[str, Any]] = []
    for message in reader.messages(timeout=timeout, stop=lambda: worker.poll() is not None):
        summary = orjson.loads(message.value() or b"{}")
        everything.append(summary)
        if summary["type"] == kind and summary.get("final", True):
            seen.append(summary)
            starts = {
                s.get("window_start", s.get("evaluation", {}).get("window_start")) for s in seen
            }
            if len(starts) >= count:
                break
    return seen


def test_labels_after_a_kill_9_join_their_pre_restart_predictions(
    kafka: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(
        kafka.bootstrap_servers,
        f"labelrec-{suffix}",
        references,
        TOPICS_PARTITIONS="1",
        LABELS_HORIZON_SECONDS="20",
        WORKER_BATCH_TIMEOUT_SECONDS="0.2",
        # the killed worker's partitions free after 10 s, not librdkafka's 45 s
        WORKER_SESSION_TIMEOUT_SECONDS="10",
        # s1/0 (the join index of 18,000 predictions, ~1 MB) is written in chunks: the restart
        # restores a chunked checkpoint (test_pipeline's kill -9 restores whole ones)
        WORKER_CHECKPOINT_MESSAGE_BYTES="65536",
    )
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    stream, truth = simulate(N, seed=9, start_time=START, rate_per_second=100.0)
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    summaries = TopicReader(config, config.topics.metrics, start="beginning")
    everything: list[dict[str, Any]] = []
    log_path = tmp_path / "worker.log"
    worker = start_worker_process(None, log_path, env=env)
    try:
        windows = _summaries(summaries, "window", 2, 90, worker, everything)
        assert len(windows) >= 2
        # every prediction applied and checkpointed (the join index with it), then a hard kill
        deadline = time.monotonic() + 60
        saved: dict[str, Any] = {}
        while time.monotonic() < deadline:
            values = read_checkpoints(config)
            saved = values.get("s1/0") or {}
            if saved.get("last_offset") == N - 1:
                break
            time.sleep(1)
        assert saved.get("last_offset") == N - 1, "the worker never checkpointed all predictions"
        # the join index is in segments s1/0#join/<id> (streams/segments.py), written as it grew
        joins = {k: v for k, v in values.items() if k.startswith("s1/0" + JOIN_MARK)}
        assert joins and JOIN_FIELD in saved["labels"]
        whole, _ = restore_join_segments("s1/0", saved, joins)
        assert whole is not None and len(whole["labels"]["pending"]["ids"]) == N
        assert any(k.startswith("s1/0") for k in values.chunk_keys), "nothing was chunked"
        time.sleep(3)  # one more checkpoint interval: the offsets are committed too
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

        worker = start_worker_process(None, log_path, env=env)
        for label in truth:
            label = {**label, "timestamp": label["timestamp"] + 5}
            producer.produce(
                config.topics.labels, key=label["prediction_id"], value=orjson.dumps(label)
            )
        assert producer.flush(30) == 0
        performance = _summaries(summaries, "performance_window", 2, 120, worker, everything)
    finally:
        stop_worker_processes([worker])
        summaries.close()
    # the whole metrics topic, in order (`_summaries` stops mid-batch: read it again)
    everything = []
    again = TopicReader(config, config.topics.metrics, start="beginning")
    try:
        everything = [orjson.loads(m.value() or b"{}") for m in again.messages(60, idle=5)]
    finally:
        again.close()
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "restored" in log

    per_window = Counter(int((r["timestamp"] - START) // 60) for r in stream)
    found: dict[float, set[tuple[int, Any]]] = {}
    for summary in performance:
        found.setdefault(summary["window_start"], set()).add(
            (summary["labelled"], summary["label_coverage"])
        )
    # a window published again after the crash must carry the same content: one value each
    assert found == {
        START: {(per_window[0], 1.0)},
        START + 60: {(per_window[1], 1.0)},
    }

    # provisional performance: each window published (final: false) as soon as its data window
    # closed, before any label (0 labelled), maybe again as labels came, then final, last
    for start, n in ((START, per_window[0]), (START + 60, per_window[1])):
        mine = [
            s
            for s in everything
            if s["type"] == "performance_window" and s["window_start"] == start
        ]
        first_final = next(i for i, s in enumerate(mine) if s["final"])
        provisional, final = mine[:first_final], mine[first_final:]
        assert provisional, f"window {start}: no provisional summary before the final one"
        assert (provisional[0]["labelled"], provisional[0]["label_coverage"]) == (0, 0.0)
        assert all(s["final"] for s in final)  # nothing provisional after the final
        labelled = [s["labelled"] for s in provisional]
        assert all(0 <= x <= n for x in labelled)
