"""Feature-importance drift through the real worker on the real Kafka, stored in PostgreSQL.

Predictions carry exact SHAP values of the simulated fraud model (amount 1.2, device_risk 0.8,
merchant_risk 0.6 on the logit). From SWAP_AT on, the model served under the same version
relies on device_risk as much as it relied on amount and the other way round (a model pushed
without a version bump): the features keep their distribution, only the attributions move.
The worker must publish one `importance_drift` event for the first window after the swap (and
none before), naming both features, and the window summaries must map to `feature_importance`
rows that PostgreSQL (migration 0005) takes.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import simulate
from driftline.sinks.rows import rows_from_message
from driftline.sinks.store import PostgresStore
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import worker_env

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0  # a minute boundary: 60-s windows start here
SWAP_AT = 120.0  # seconds after START: windows 0 and 1 as the reference, 2 and later swapped
RATE = 50.0  # records per second: 3,000 per window


def _swap_roles(record: dict[str, Any]) -> None:
    features, shap = record["features"], record["attributions"]
    shap["amount"] = round(0.8 * features["amount"], 6)
    shap["device_risk"] = round(1.2 * features["device_risk"], 6)


def test_swapped_importances_raise_one_event_in_the_first_window_and_are_stored(
    kafka: Any, postgres_url: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    model = f"imp-{suffix}"
    references = tmp_path / "references"
    references.mkdir()
    training, labels = simulate(20_000, seed=99, model=model, attributions=True)
    ReferenceProfile.from_records(
        training, model=model, model_version="1", labels=[x["label"] for x in labels]
    ).save(references / f"{model}@1.json")
    env = worker_env(kafka.bootstrap_servers, f"e2e-imp-{suffix}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    stream, _ = simulate(
        int(RATE * 300), seed=5, model=model, start_time=START, rate_per_second=RATE,
        attributions=True,
    )  # fmt: skip
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        if record["timestamp"] - START >= SWAP_AT:
            _swap_roles(record)
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    metrics = TopicReader(config, config.topics.metrics, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    events: list[dict[str, Any]] = []
    try:
        for message in alerts.messages(timeout=60, stop=lambda: worker.poll() is not None):
            event = orjson.loads(message.value() or b"{}")
            if event["type"] == "importance_drift":
                events.append(event)
                break
        windows: list[bytes | None] = []
        for message in metrics.messages(timeout=20, stop=lambda: len(windows) >= 3):
            summary = orjson.loads(message.value() or b"{}")
            if summary.get("type") == "window":
                windows.append(message.value())
    finally:
        stop_worker_processes([worker])
        alerts.close()
        metrics.close()
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert events, f"no importance_drift event; worker log: {log}"
    (event,) = events
    # within two windows of the swap: here the first window after it
    assert event["window_start"] == START + SWAP_AT, event
    evidence = event["evidence"]
    assert set(evidence["changed_features"]) == {"amount", "device_risk"}, evidence
    assert evidence["source"] == "attributions"
    assert event["feature"] in ("amount", "device_risk")
    assert evidence["current_top_k"][0] == "device_risk"
    assert evidence["reference_top_k"][0] == "amount"

    # the window summaries (before and after the swap) as feature_importance rows in PostgreSQL
    rows = [rows_from_message("metrics", value) for value in windows]
    assert all("feature_importance" in r for r in rows), "a window without importance rows"
    with PostgresStore(postgres_url, schema=f"test_imp_{suffix}") as store:
        store.upgrade()
        try:
            for r in rows:
                store.write(r)
            with store.pool.connection() as conn:
                found = conn.execute(
                    "SELECT extract(epoch FROM window_start) - %s, feature, changed, rank"
                    " FROM feature_importance WHERE feature IN ('amount', 'device_risk')"
                    " ORDER BY 1, 2",
                    [START],
                ).fetchall()
        finally:
            store.drop_schema()
    by_window = {(float(t), f): (changed, rank) for t, f, changed, rank in found}
    assert by_window[(0.0, "amount")] == (False, 1)
    assert by_window[(SWAP_AT, "amount")] == (True, 2)
    assert by_window[(SWAP_AT, "device_risk")] == (True, 1)


def test_windows_without_attributions_are_judged_by_the_prediction_proxy(
    kafka: Any, tmp_path: Path
) -> None:
    """Predictions without attributions: the worker judges each window by the mutual information
    of its reservoir rows with their predictions (``prediction_mi``); stationary traffic raises
    no ``importance_drift`` event."""
    suffix = uuid.uuid4().hex[:8]
    model = f"imp-proxy-{suffix}"
    references = tmp_path / "references"
    references.mkdir()
    training, labels = simulate(20_000, seed=98, model=model)
    profile = ReferenceProfile.from_records(
        training, model=model, model_version="1", labels=[x["label"] for x in labels]
    )
    assert "prediction_mi" in profile.importance and "attributions" not in profile.importance
    profile.save(references / f"{model}@1.json")
    env = worker_env(kafka.bootstrap_servers, f"e2e-imp-proxy-{suffix}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    stream, _ = simulate(
        int(RATE * 240), seed=6, model=model, start_time=START, rate_per_second=RATE
    )
    producer = Producer(config.kafka.confluent_settings())
    for record in stream:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
    assert producer.flush(30) == 0

    metrics = TopicReader(config, config.topics.metrics, start="beginning")
    alerts = TopicReader(config, config.topics.alerts, start="beginning")
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    verdicts: list[dict[str, Any]] = []
    importance_events: list[dict[str, Any]] = []
    try:
        for message in metrics.messages(
            timeout=60, stop=lambda: len(verdicts) >= 2 or worker.poll() is not None
        ):
            summary = orjson.loads(message.value() or b"{}")
            if summary.get("type") == "window":
                verdicts.append(summary["evaluation"]["importance"])
        for message in alerts.messages(timeout=5):
            event = orjson.loads(message.value() or b"{}")
            if event["type"] == "importance_drift":
                importance_events.append(event)
    finally:
        stop_worker_processes([worker])
        alerts.close()
        metrics.close()
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert len(verdicts) >= 2, f"window summaries: {verdicts}; worker log: {log}"
    for verdict in verdicts:
        assert verdict is not None, f"a window was not judged; worker log: {log}"
        assert (verdict["source"], verdict["status"]) == ("prediction_mi", "evaluated"), verdict
        assert verdict["drifted"] is False, verdict
        assert 1_900 <= verdict["n"] <= 2_000  # the reservoir's rows, each with its prediction
    assert importance_events == []
