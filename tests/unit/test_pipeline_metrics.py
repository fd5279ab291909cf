"""The pipeline's metrics without a broker or a scrape: `Pipeline` built with its own
`WorkerMetrics` registry, driven as in test_pipeline_flow.py (fake `send`, the partials fed back
to stage 2), then read with `registry.get_sample_value`: counters the stages increment, and the
label-join outcomes and consumer lag read from the pipeline when the registry is collected."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.simulate import Drift, simulate
from driftline.sinks.prometheus import WorkerMetrics
from driftline.streams.pipeline import Pipeline, Topics
from tests.unit.test_pipeline_input import Broker, Message

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
NOW = START + 3600.0


@pytest.fixture(scope="module")
def profile(fraud_profile: ReferenceProfile) -> ReferenceProfile:
    return fraud_profile


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(
        ROOT / "config" / "driftline.yaml",
        environ={"DRIFTLINE_WINDOWS_SIZE_SECONDS": "60", "DRIFTLINE_LABELS_HORIZON_SECONDS": "30"},
    )


def test_the_stages_count_in_the_registry_they_are_given(
    config: Config, profile: ReferenceProfile
) -> None:
    registry = CollectorRegistry()
    broker = Broker()

    async def no_checkpoints() -> dict[str, Any]:
        return {}

    pipeline = Pipeline(
        config,
        profiles={("fraud", "1"): profile},
        thresholds=thresholds_from_dict({}),
        topics=Topics("predictions", "dlq", "partials", "alerts", "metrics", "ckpt"),
        n_sources=1,
        send=broker.send,
        load_checkpoints=no_checkpoints,
        clock=lambda: NOW,
        metrics=WorkerMetrics(registry),
    )
    sample = registry.get_sample_value
    # 250 s at 10/s, drifting from 120 s: windows [0, 60), [60, 120), [120, 180) close
    stream, truth = simulate(
        2_500, seed=5, start_time=START, rate_per_second=10.0, schedule=[Drift("abrupt", 120.0)]
    )
    unprofiled = [{**r, "model_version": "2"} for r in stream[:7]]
    late = [{**stream[0], "prediction_id": "late-1"}]  # its window [0, 60) has closed
    offsets = {"predictions": 0, "labels": 0}
    replayed = 0

    async def feed(topic: str, values: list[bytes]) -> None:
        nonlocal replayed
        first = offsets[topic]
        batch = [Message(topic, 0, first + i, b"k", v) for i, v in enumerate(values)]
        offsets[topic] += len(batch)
        if topic == "predictions":
            await pipeline.on_predictions(batch)
        else:
            await pipeline.on_labels(batch)
        partials = broker.sent.get("partials", [])[replayed:]
        replayed += len(partials)
        await pipeline.on_partials(
            [Message("partials", 0, i, key, value) for i, (key, value, _) in enumerate(partials)]
        )

    async def scenario() -> None:
        for first in range(0, len(stream), 500):
            await feed("predictions", [orjson.dumps(r) for r in stream[first : first + 500]])
        await feed("predictions", [b"not json", orjson.dumps(unprofiled), orjson.dumps(late)])
        labels = [{**label, "timestamp": label["timestamp"] + 5} for label in truth]
        await feed("labels", [orjson.dumps(labels[i : i + 100]) for i in range(0, 2_500, 100)])

    asyncio.run(scenario())

    # counters, incremented by the stages as things happen
    assert sample("driftline_records_processed_total", {"topic": "predictions"}) == 2_500 + 7 + 1
    dead = {"topic": "predictions", "reason": "invalid_json"}
    assert sample("driftline_dlq_records_total", dead) == 1
    assert sample("driftline_records_without_reference_total") == 7
    assert sample("driftline_late_records_total") == 1
    assert sample("model_predictions_total", {"model_name": "fraud"}) == 2_500 + 1
    assert sample("model_inference_latency_seconds_count", {"model_name": "fraud"}) == 2_501
    assert sample("driftline_labels_processed_total") == 2_500
    summaries = [orjson.loads(v) for _, v, _ in broker.sent["metrics"]]
    windows = [s for s in summaries if s["type"] == "window"]
    assert len(windows) == 3
    assert sample("driftline_windows_closed_total", {"status": "evaluated"}) == 3
    alerts = [orjson.loads(v) for _, v, _ in broker.sent["alerts"]]
    data_drift = [e for e in alerts if e["type"] == "data_drift"]
    assert data_drift and sum(
        sample("driftline_drift_events_total", {"type": "data_drift", "severity": s}) or 0
        for s in ("warning", "critical")
    ) == len(data_drift)
    # the gauges of a closed window's verdict
    drifted = [name for name, f in windows[-1]["evaluation"]["features"].items() if f["drifted"]]
    assert drifted
    for name in drifted:
        labels = {"model_name": "fraud", "model_version": "1", "feature_name": name}
        assert sample("model_drift_detected", labels) == 1.0

    # state read when the registry is collected: no checkpoint, no set() since the batch
    joins = pipeline.labels[0]
    assert joins.joined > 0
    assert sample("driftline_label_join_records", {"outcome": "joined"}) == joins.joined
    assert sample("driftline_label_join_records", {"outcome": "evicted"}) == 0
    assert sample("driftline_consumer_lag_records", {"partition": "0"}) is None  # no end yet
    processed = pipeline.processed_offset(0)
    assert processed == offsets["predictions"]
    pipeline.end_offsets = {0: processed + 40}  # what the shell does every second
    assert sample("driftline_consumer_lag_records", {"partition": "0"}) == 40
    pipeline.forget_partitions([("predictions", 0)])  # revoked: neither lag nor joins left
    assert sample("driftline_consumer_lag_records", {"partition": "0"}) is None
    assert sample("driftline_label_join_records", {"outcome": "joined"}) == 0

    exposition = generate_latest(registry).decode()
    assert "# TYPE driftline_label_join_records gauge" in exposition
    assert "# TYPE driftline_consumer_lag_records gauge" in exposition


def test_each_pipeline_has_its_own_registry_unless_given_one(
    config: Config, profile: ReferenceProfile
) -> None:
    async def no_checkpoints() -> dict[str, Any]:
        return {}

    async def send(topic: str, key: bytes | None, value: bytes, headers: Any) -> None:
        return None

    def build() -> Pipeline:
        return Pipeline(
            config,
            profiles={("fraud", "1"): profile},
            thresholds=thresholds_from_dict({}),
            topics=Topics("predictions", "dlq", "partials", "alerts", "metrics", "ckpt"),
            n_sources=1,
            send=send,
            load_checkpoints=no_checkpoints,
        )

    first, second = build(), build()  # no "Duplicated timeseries" between them
    assert first.metrics.registry is not second.metrics.registry
    first.metrics.records_processed.labels("predictions").inc(5)
    read = "driftline_records_processed_total"
    assert second.metrics.registry.get_sample_value(read, {"topic": "predictions"}) is None


def _window(version: str, drifted: bool, start: float = START) -> dict[str, Any]:
    """A closed window's evaluation (`WindowEvaluation.to_dict()`), the parts the gauges read."""
    test = {"statistic": 0.4 if drifted else 0.01}
    return {
        "model": "ab",
        "model_version": version,
        "window_start": start,
        "window_end": start + 60.0,
        "features": {"amount": {"drifted": drifted, "tests": {"ks": test}}},
        "multivariate": {"drifted": drifted},
        "output": {"severity": "warning" if drifted else None, "signals": {}},
        "data_quality": {"missing_rate": {"amount": 0.1}, "issues": {"absent": 0}},
        "importance": {
            "status": "evaluated",
            "drifted": drifted,
            "features": [{"feature": "amount", "share": 1.0}],
        },
    }


def test_champion_and_challenger_keep_their_own_window_and_performance_gauges() -> None:
    """An A/B test: both versions of a model are windowed side by side; a quiet challenger
    must not clear the champion's drift flag, nor its accuracy overwrite the champion's."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.export_window(_window("1", drifted=True), 0.81)
    metrics.export_window(_window("2", drifted=False), 0.93)
    window = (START, START + 60.0)
    metrics.export_performance("ab", "1", {"accuracy": 0.8}, 0.5, 0.9, window)
    metrics.export_performance("ab", "2", {"accuracy": 0.95}, 0.6, 0.92, window)
    metrics.export_provisional_performance("ab", "1", 0.7, 0.2, (START + 60, START + 120))
    metrics.export_provisional_performance("ab", "2", 0.9, 0.3, (START + 60, START + 120))

    def values(name: str, **labels: str) -> dict[str, float]:
        return {
            s.labels["model_version"]: s.value
            for metric in registry.collect()
            for s in metric.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        }

    amount = {"model_name": "ab", "feature_name": "amount"}
    assert values("model_drift_detected", **amount) == {"1": 1.0, "2": 0.0}
    multivariate = {**amount, "feature_name": "__multivariate__"}
    assert values("model_drift_detected", **multivariate) == {"1": 1.0, "2": 0.0}
    assert values("model_drift_score", **amount, test_type="ks") == {"1": 0.4, "2": 0.01}
    assert values("model_estimated_accuracy", model_name="ab") == {"1": 0.81, "2": 0.93}
    assert values("model_output_drift_severity", model_name="ab") == {"1": 1.0, "2": 0.0}
    assert values("model_feature_missing_ratio", **amount) == {"1": 0.1, "2": 0.1}
    assert values("model_accuracy", model_name="ab") == {"1": 0.8, "2": 0.95}
    assert values("model_baseline_accuracy", model_name="ab") == {"1": 0.9, "2": 0.92}
    assert values("model_label_coverage", model_name="ab") == {"1": 0.5, "2": 0.6}
    assert values("model_provisional_accuracy", model_name="ab") == {"1": 0.7, "2": 0.9}


def test_a_retired_version_loses_every_window_gauge_at_once() -> None:
    """One rule for every gauge of a closed window (drift, output, quality, importance,
    estimate): once another version has been judged STALE_VERSION_WINDOWS window lengths after
    a version's last window, all that version's series go, and nothing of it keeps an alert
    firing. Performance gauges retire on performance windows (they turn final later)."""
    from driftline.sinks.prometheus import STALE_VERSION_WINDOWS

    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.export_window(_window("1", drifted=True), 0.8)
    metrics.export_performance("ab", "1", {"accuracy": 0.8}, 1.0, 0.9, (START, START + 60))

    def series_of(version: str) -> set[str]:
        return {
            metric.name
            for metric in registry.collect()
            for s in metric.samples
            if s.labels.get("model_version") == version
        }

    window_gauges = series_of("1") - {"model_accuracy", "model_label_coverage"}
    window_gauges -= {"model_baseline_accuracy"}
    assert len(window_gauges) >= 8, window_gauges  # drift, score, output, quality, importance
    for k in range(1, STALE_VERSION_WINDOWS + 2):
        metrics.export_window(_window("2", drifted=False, start=START + k * 60.0), 0.9)
        stale = k > STALE_VERSION_WINDOWS
        assert (series_of("1") & window_gauges == set()) is stale, k
    # judged on closed windows only: v1's realised accuracy is still the last it had ...
    assert series_of("1") == {"model_accuracy", "model_label_coverage", "model_baseline_accuracy"}
    late = (START + 10 * 60.0, START + 11 * 60.0)
    metrics.export_performance("ab", "2", {"accuracy": 0.9}, 1.0, 0.9, late)
    assert series_of("1") == set()  # ... until v2's performance windows pass it as well
    assert "model_accuracy" in series_of("2") and "model_drift_detected" in series_of("2")
