"""Concept drift through the pipeline, on one partition: the worker's detections are at exactly
the indices the default suite (`ConceptStage`, river's ADWIN) gives on the same ordered error
stream; performance windows show the drop with full label coverage. Also with every record on
one partition of four and the default 1-h label horizon: three idle partitions with nothing
pending must not hold the outcomes back (review 2026-12-02: before the fix, no event)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT, ConceptStage
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference, worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
N = 24_000  # 240 s at 100/s
ONSET = 120.0


def _wait_for(
    reader: TopicReader, predicate: Any, timeout: float, worker: Any
) -> list[dict[str, Any]]:
    seen = []
    for message in reader.messages(timeout=timeout, stop=lambda: worker.poll() is not None):
        seen.append(orjson.loads(message.value() or b"{}"))
        if predicate(seen):
            break
    return seen


def _final_performance(summary: dict[str, Any]) -> bool:
    """A final performance window (provisional ones come first, `final: false`)."""
    return bool(summary["type"] == "performance_window" and summary["final"])


@pytest.mark.parametrize(
    ("partitions", "horizon"),
    [
        ("1", {"LABELS_HORIZON_SECONDS": "20"}),
        # every record keyed to one partition of four, the default 1-h label horizon: the three
        # idle partitions (nothing pending) must not hold the outcomes back by the horizon
        ("4", {}),
    ],
)
def test_concept_drift_indices_match_river_on_one_partition(
    kafka: Any, tmp_path: Path, partitions: str, horizon: dict[str, str]
) -> None:

    suffix = uuid.uuid4().hex[:8]
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(
        kafka.bootstrap_servers,
        f"concept-{suffix}",
        references,
        TOPICS_PARTITIONS=partitions,
        WORKER_BATCH_TIMEOUT_SECONDS="0.2",
        **horizon,
    )
    key = None if partitions == "1" else b"fraud"  # one partition of the four
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    stream, truth = simulate(
        N, seed=5, start_time=START, rate_per_second=100.0, schedule=[Drift("concept", ONSET)]
    )
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        producer.produce(
            config.topics.predictions,
            key=key or record["prediction_id"],
            value=orjson.dumps(record),
        )
    assert producer.flush(30) == 0

    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    summaries = TopicReader(config, config.topics.metrics, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    try:
        # All predictions processed first (the windows up to 180 s closed), so that the join
        # order is the label order and the error stream is known exactly.
        _wait_for(summaries, lambda seen: sum(s["type"] == "window" for s in seen) >= 3, 90, worker)
        time.sleep(1)
        for label in truth:
            label = {**label, "timestamp": label["timestamp"] + 5}
            producer.produce(
                config.topics.labels, key=key or label["prediction_id"], value=orjson.dumps(label)
            )
        assert producer.flush(30) == 0
        performance = []
        if key is None:  # (with a 1-h horizon no performance window is final within the test)
            performance = _wait_for(
                summaries,
                lambda seen: sum(_final_performance(s) for s in seen) >= 3,
                90,
                worker,
            )

        def enough(seen: list[dict[str, Any]]) -> bool:  # 1 partition: wait for any extra
            return key is not None and any(e["type"] == "concept_drift" for e in seen)

        events = [
            e
            for e in _wait_for(alerts, enough, 15 if key is None else 60, worker)
            if e["type"] == "concept_drift"
        ]
    finally:
        stop_worker_processes([worker])
        alerts.close()
        summaries.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]

    errors = [
        float(str(label["label"]) != str(record["prediction"]))
        for record, label in zip(stream, truth, strict=True)
    ]
    stage = ConceptStage(DEFAULT_CONCEPT_DRIFT)  # outcomes ordered by (label time, id)
    ids = [r["prediction_id"] for r in stream]
    expected = stage.update(ids, [r["timestamp"] for r in stream], {"error": errors})
    assert expected and min(d.index for d in expected) >= ONSET * 100, "the suite flags the onset"
    found = sorted((e["evidence"]["index"], e["test"], e["event_id"]) for e in events)
    assert [(i, d) for i, d, _ in found] == [(d.index, d.detector) for d in expected]
    assert len({e for _, _, e in found}) == len(found)
    for event in events:
        index = event["evidence"]["index"]
        assert event["evidence"]["prediction_id"] == stream[index]["prediction_id"]
        assert event["evidence"]["labels_seen"] == index + 1
        assert event["evidence"]["error_after"] > event["evidence"]["error_before"]

    if key is not None:
        return
    windows = {p["window_start"]: p for p in performance if _final_performance(p)}
    before, after = windows[START], windows[START + ONSET]
    assert before["label_coverage"] == 1.0 and after["label_coverage"] == 1.0
    assert before["accuracy_drop"] < 0.05 and not before.get("event_ids")
    assert after["accuracy_drop"] > 0.5 and after["event_ids"]
