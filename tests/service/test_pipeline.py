"""The streaming pipeline on the real broker: drift end to end, scale-out, kill -9 recovery,
and window results equal to the detection core's computed offline on the same records.

One input stream serves every test (module fixture): 7 minutes of event time at 100
predictions/s (windows of 60 s, 6,000 records each), `amount` shifted by 1 std from minute 3,
a few malformed messages mixed in; a label for every prediction 5 s later, wrong 5 % of the
time until record 24,000 (240 s) and 40 % after (a concept drift). Four consumer groups read it:
  A: one worker;  B: two workers;  C: one worker killed with SIGKILL mid-stream and restarted;
  D: one worker, joined by a second one while traffic flows, which then leaves (SIGTERM):
     two rebalances, each moving predictions, labels and partials partitions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config, load_config
from driftline.detectors.batch import RecordBatch
from driftline.detectors.concept import DEFAULT_CONCEPT_DRIFT, ConceptStage
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import load_thresholds
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.streams.pipeline import record_key
from driftline.streams.reader import TopicReader
from driftline.streams.records import parse_predictions
from driftline.streams.topics import ensure_topics
from tests.conftest import build_reference

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
RATE = 100.0
WINDOW = 60.0
PHASE_1 = 19_000  # 190 s: the kill happens inside window [180, 240)
PHASE_2 = 29_000  # D's second worker is in the group while [190, 290) s are produced
TOTAL = 42_000  # 420 s: windows [0, 360) close (watermark 415 s), [360, 420) stays open
ONSET = 180.0
CONCEPT_AT = 24_000  # labels wrong 5 % of the time before this record, 40 % from it
LABEL_DELAY = 5.0
CLOSED_WINDOWS = 6
MALFORMED = [b"{not json", b'{"model": "fraud"}', b'[{"prediction_id": 1}]']


@dataclass
class Group:
    name: str
    config: Config
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]]
    logs: Path


@dataclass
class Run:
    input: Config
    groups: dict[str, Group]
    reference: ReferenceProfile
    summaries: dict[str, list[dict[str, Any]]]
    alerts: dict[str, list[dict[str, Any]]]


def _env(
    base: dict[str, str], group: str, suffix: str, tmp: Path, metrics_port: int
) -> dict[str, str]:
    return {
        **base,
        "DRIFTLINE_WORKER_APP_ID": f"pipe-{suffix}-{group}",
        "DRIFTLINE_TOPICS_ALERTS": f"pipe-{suffix}-{group}.alerts",
        "DRIFTLINE_TOPICS_METRICS": f"pipe-{suffix}-{group}.metrics",
        "DRIFTLINE_TOPICS_DLQ": f"pipe-{suffix}-{group}.dlq",
        "DRIFTLINE_WORKER_METRICS_PORT": str(metrics_port),
        "DRIFTLINE_WORKER_DATA_DIR": str(tmp / group),
    }


def _produce(config: Config, first: int, n: int, malformed: list[bytes]) -> None:
    producer = Producer({**config.kafka.confluent_settings(), "partitioner": "murmur2_random"})
    schedule = [Drift("abrupt", ONSET, magnitude=1.0)]
    # Blocks of 5,000 from PHASE_1 on: the same records whether phase 2 is cut at PHASE_2 or not.
    for block in range(first, first + n, 5_000):
        records, _ = simulate(
            min(5_000, first + n - block),
            seed=11,
            first_index=block,
            start_time=START,
            rate_per_second=RATE,
            schedule=schedule,
        )
        for record in records:
            producer.produce(
                config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
            )
        for record, wrong in zip(records, _wrong_labels(block, len(records)), strict=True):
            label = {
                "prediction_id": record["prediction_id"],
                "label": 1 - int(record["prediction"]) if wrong else int(record["prediction"]),
                "timestamp": record["timestamp"] + LABEL_DELAY,
            }
            producer.produce(
                config.topics.labels, key=record["prediction_id"], value=orjson.dumps(label)
            )
        producer.poll(0)
    for payload in malformed:
        producer.produce(config.topics.predictions, key=b"malformed", value=payload)
    assert producer.flush(30) == 0


def _wrong_labels(first: int, n: int) -> list[bool]:
    """Which labels of records `first .. first + n` disagree with the prediction."""
    rng = np.random.default_rng([7, first])
    rate = np.where(np.arange(first, first + n) < CONCEPT_AT, 0.05, 0.4)
    return (rng.random(n) < rate).tolist()  # type: ignore[no-any-return]


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _processed(port: int) -> float:
    """driftline_records_processed_total of a worker (0 until it serves metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("driftline_records_processed_total")
    )


def _wait(
    condition: Any, workers: list[subprocess.Popen[bytes]], log: Path, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert all(w.poll() is None for w in workers), f"a worker exited:\n{_text(log)[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{_text(log)[-3000:]}"
        time.sleep(0.2)


def _read_windows(
    config: Config, until: int, workers: list[subprocess.Popen[bytes]], timeout: float = 120
) -> list[dict[str, Any]]:
    reader = TopicReader(config, config.topics.metrics, start="beginning")
    seen: list[dict[str, Any]] = []
    try:
        for message in reader.messages(
            timeout=timeout, stop=lambda: all(w.poll() is not None for w in workers)
        ):
            summary = orjson.loads(message.value() or b"{}")
            if summary["type"] != "window":  # performance windows (labels) come too
                continue
            seen.append(summary)
            if len({w["evaluation"]["window_start"] for w in seen}) >= until:
                break
    finally:
        reader.close()
    return seen


def _read_all(config: Config, topic: str) -> list[dict[str, Any]]:
    reader = TopicReader(config, topic, start="beginning")
    try:
        return [orjson.loads(m.value() or b"{}") for m in reader.messages(timeout=20, idle=3)]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def run(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:

    tmp = tmp_path_factory.mktemp("pipeline")
    suffix = uuid.uuid4().hex[:8]
    references = tmp / "references"
    reference = build_reference(references)
    base = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DRIFTLINE_TOPICS_PREDICTIONS": f"pipe-{suffix}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"pipe-{suffix}.labels",
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(references),
        "DRIFTLINE_WORKER_THRESHOLDS_FILE": str(ROOT / "config" / "drift_thresholds.yaml"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": str(int(WINDOW)),
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "5",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "5",
        "DRIFTLINE_WORKER_BATCH_TIMEOUT_SECONDS": "0.2",
    }
    groups: dict[str, Group] = {}
    for name in ("A", "B", "C", "D"):
        env = _env(base, name, suffix, tmp, free_port())
        config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
        ensure_topics(config)
        groups[name] = Group(name, config, env, [], tmp / f"{name}.log")
    input_config = groups["A"].config
    _produce(input_config, 0, PHASE_1, MALFORMED[:2])
    try:
        for name, count in (("A", 1), ("B", 2), ("C", 1), ("D", 1)):
            group = groups[name]
            for i in range(count):
                env = {**group.env, "DRIFTLINE_WORKER_METRICS_PORT": str(free_port())}
                group.workers.append(start_worker_process(None, tmp / f"{name}{i}.log", env=env))
        # C: wait until it has closed windows and is inside [180, 240), then SIGKILL it.
        c = groups["C"]
        first_windows = _read_windows(c.config, until=3, workers=c.workers)
        assert len({w["evaluation"]["window_start"] for w in first_windows}) >= 3, (
            tmp / "C0.log"
        ).read_text()[-3000:]
        time.sleep(1.0)
        c.workers[0].send_signal(signal.SIGKILL)
        c.workers[0].wait(10)
        # D: a second worker joins; once it holds partitions and has processed records of the
        # next part of the stream, it leaves cleanly while the rest is produced.
        d = groups["D"]
        d_port = free_port()
        d.workers.append(
            start_worker_process(
                None, tmp / "D1.log", env={**d.env, "DRIFTLINE_WORKER_METRICS_PORT": str(d_port)}
            )
        )
        joined = f"{input_config.topics.predictions} ["
        _wait(lambda: joined in _text(tmp / "D1.log"), d.workers, tmp / "D1.log")
        _produce(input_config, PHASE_1, PHASE_2 - PHASE_1, [])
        _wait(lambda: _processed(d_port) > 0, d.workers, tmp / "D1.log")
        d.workers[1].send_signal(signal.SIGTERM)
        assert d.workers[1].wait(30) == 0, _text(tmp / "D1.log")[-3000:]
        _produce(input_config, PHASE_2, TOTAL - PHASE_2, MALFORMED[2:])
        c.workers.append(
            start_worker_process(
                None,
                tmp / "C1.log",
                env={**c.env, "DRIFTLINE_WORKER_METRICS_PORT": str(free_port())},
            )
        )
        summaries = {}
        for name, group in groups.items():
            running = [w for w in group.workers if w.poll() is None]
            summaries[name] = _read_windows(group.config, until=CLOSED_WINDOWS, workers=running)
        time.sleep(3)  # let duplicates, if any, arrive
        # The eight topics read at once: each read ends only after 3 s without a message.
        with ThreadPoolExecutor(2 * len(groups)) as pool:
            reads = {
                (name, topic): pool.submit(_read_all, g.config, getattr(g.config.topics, topic))
                for name, g in groups.items()
                for topic in ("metrics", "alerts")
            }
        summaries = {name: reads[name, "metrics"].result() for name in groups}
        alerts = {name: reads[name, "alerts"].result() for name in groups}
        yield Run(input_config, groups, reference, summaries, alerts)
    finally:  # every worker signalled at once, then awaited
        stop_worker_processes([w for group in groups.values() for w in group.workers])


def _by_window(summaries: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    windows: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for summary in summaries:
        if summary["type"] == "window":
            windows[summary["evaluation"]["window_start"]].append(summary)
    return windows


def _verdicts(summary: dict[str, Any]) -> dict[str, Any]:
    evaluation = summary["evaluation"]
    return {
        "status": evaluation["status"],
        "drifted": evaluation["drifted"],
        "drifted_features": evaluation["drifted_features"],
        "n_records": evaluation["summary"]["n_records"],
        "event_ids": summary["event_ids"],
    }


def _close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 relative (partial moments merge in a different order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_drift_is_detected_in_the_first_window_after_onset(run: Run) -> None:
    windows = _by_window(run.summaries["A"])
    starts = sorted(windows)[:CLOSED_WINDOWS]
    assert starts == [START + WINDOW * i for i in range(CLOSED_WINDOWS)]
    for start in starts:
        (summary,) = windows[start]
        assert summary["evaluation"]["summary"]["n_records"] == 6_000
        before_onset = start + WINDOW <= START + ONSET
        assert summary["evaluation"]["drifted"] is (not before_onset), summary["evaluation"][
            "reasons"
        ]
    first_after = windows[START + ONSET][0]
    assert "amount" in first_after["evaluation"]["drifted_features"]
    events = [e for e in run.alerts["A"] if e["window_start"] == START + ONSET]
    assert any(e["type"] == "data_drift" and e["feature"] == "amount" for e in events)
    assert {e["event_id"] for e in events if e["type"] != "performance_drop"} == set(
        first_after["event_ids"]
    )
    data = [e for e in run.alerts["A"] if e["type"] not in ("concept_drift", "performance_drop")]
    assert all(e["window_start"] >= START + ONSET for e in data)


def test_malformed_records_go_to_the_dead_letter_topic(run: Run) -> None:
    group = run.groups["A"]
    reader = TopicReader(group.config, group.config.topics.dlq, start="beginning")
    try:
        dead = list(reader.messages(timeout=20, idle=3))
    finally:
        reader.close()
    assert sorted(m.value() for m in dead) == sorted(MALFORMED)
    kinds = sorted(dict(m.headers() or [])["driftline.reason.kind"] for m in dead)
    assert kinds == [b"invalid_json", b"schema_violation", b"schema_violation"]


def test_two_workers_give_the_same_windows_as_one(run: Run) -> None:
    one = _by_window(run.summaries["A"])
    two = _by_window(run.summaries["B"])
    assert sorted(one) == sorted(two)
    for start in one:
        assert len(two[start]) == 1, f"window {start} closed {len(two[start])} times by two workers"
        _close(one[start][0], two[start][0], f"window {start}")


def test_a_worker_joining_and_leaving_changes_nothing(run: Run) -> None:
    """Two rebalances during traffic (range assignor: each partition number of predictions,
    labels and partials moves together): every window exactly once, as with one worker."""
    one = _by_window(run.summaries["A"])
    rebalanced = _by_window(run.summaries["D"])
    assert sorted(one) == sorted(rebalanced)
    for start in one:
        assert len(rebalanced[start]) == 1, f"window {start} closed {len(rebalanced[start])} times"
        _close(one[start][0], rebalanced[start][0], f"window {start}")
    log = (run.groups["D"].logs.parent / "D1.log").read_text()
    assert "revoked" in log and "assigned" in log


def test_kill_9_mid_window_loses_nothing_and_duplicates_nothing(run: Run) -> None:
    reference = _by_window(run.summaries["A"])
    recovered = _by_window(run.summaries["C"])
    assert sorted(recovered) == sorted(reference)
    for start, summaries in recovered.items():
        for summary in summaries:  # a replayed close may repeat a window, with the same content
            _close(summary, reference[start][0], f"window {start}")


def test_concept_drift_is_one_event_the_same_for_every_group(run: Run) -> None:
    """One, two, killed (-9) and rebalanced workers: the same concept_drift event (same id, same
    index), the one the default suite gives offline on the ordered outcome stream."""
    phases = [(0, PHASE_1), (PHASE_1, PHASE_2 - PHASE_1), (PHASE_2, TOTAL - PHASE_2)]
    wrong = [  # block by block, as `_produce` drew them
        w
        for first, n in phases
        for block in range(first, first + n, 5_000)
        for w in _wrong_labels(block, min(5_000, first + n - block))
    ]
    expected = ConceptStage(DEFAULT_CONCEPT_DRIFT).update(
        [str(i) for i in range(TOTAL)], np.arange(TOTAL, dtype=np.float64), {"error": wrong}
    )
    assert len(expected) == 1 and CONCEPT_AT <= expected[0].index < CONCEPT_AT + 200
    found = {}
    for name, alerts in run.alerts.items():
        events = [e for e in alerts if e["type"] == "concept_drift"]
        ids = {e["event_id"] for e in events}
        assert len(ids) == 1, (name, events)
        if name != "C":  # a worker killed after sending may send it again: same id
            assert len(events) == 1, (name, events)
        event = events[0]
        assert event["evidence"]["index"] == expected[0].index, name
        assert event["evidence"]["change_index"] == expected[0].change_index, name
        found[name] = ids
    assert found["B"] == found["C"] == found["D"] == found["A"]


def test_window_results_equal_the_core_offline(run: Run) -> None:
    """Read the records back with their partitions and offsets, build each window's sketch with
    the core directly (per partition in offset order, merged in partition order) and evaluate."""
    partials: dict[float, dict[int, WindowSketch]] = defaultdict(dict)
    reader = TopicReader(run.input, run.input.topics.predictions, start="beginning")
    per_partition: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    try:
        for message in reader.messages(timeout=30, idle=3):
            valid, _ = parse_predictions(message.value() or b"")
            for i, record in enumerate(valid):
                per_partition[message.partition()].append(
                    (record_key(message.partition(), message.offset(), i), record)
                )
    finally:
        reader.close()
    profile = run.reference
    for partition, items in per_partition.items():
        by_window: dict[float, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for key, record in items:
            by_window[np.floor(record["timestamp"] / WINDOW) * WINDOW].append((key, record))
        for start, rows in by_window.items():
            sketch = WindowSketch.empty(profile, start, start + WINDOW, seed=partition)
            sketch.update(
                RecordBatch.from_records(
                    [r for _, r in rows],
                    profile.feature_types,
                    record_keys=np.array([k for k, _ in rows], dtype=np.uint64),
                )
            )
            partials[start][partition] = sketch
    thresholds = load_thresholds(ROOT / "config" / "drift_thresholds.yaml").for_model("fraud")
    pipeline = _by_window(run.summaries["A"])
    for start, summaries in pipeline.items():
        parts = partials[start]
        merged = parts[min(parts)]
        for partition in sorted(parts)[1:]:
            merged = merged.merge(parts[partition])
        offline = evaluate_window(profile, merged, thresholds)
        _close(
            summaries[0]["evaluation"],
            orjson.loads(orjson.dumps(offline.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)),
            f"window {start}",
        )
        assert summaries[0]["sources"] == sorted(parts)


def test_worker_logs_have_no_errors(run: Run) -> None:
    for group in run.groups.values():
        for log in group.logs.parent.glob(f"{group.name}*.log"):
            text = log.read_text()
            assert "Traceback" not in text, f"{log.name}:\n{text[-4000:]}"
    if os.environ.get("DRIFTLINE_DEBUG_LOGS"):
        print(next(iter(run.groups.values())).logs.parent)
