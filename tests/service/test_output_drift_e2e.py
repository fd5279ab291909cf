"""Output drift to page, for real: scores pushed up while the features stay put produce an
`output_drift` event on the alerts topic, the `model_score_drift` metric in Prometheus and an
output-drift alert at the Alertmanager webhook.

As test_alerting_e2e.py, with one difference: the test runs a Prometheus of its own (the
`own_prometheus` fixture: free port, temp dir) that loads this checkout's
config/alert_rules.yml and scrapes this test's worker, and sends to the shared Alertmanager.
The shared Prometheus loads the rules it was started with and scrapes one fixed port, so it can
neither see new rules nor tell concurrent workers apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftline.simulate import simulate
from tests.service.e2e import START, Receiver, model_run, produce, query, worker_events

pytestmark = pytest.mark.service

DRIFT_FROM = 180.0  # seconds after the start: windows 4 and 5 of 60 s carry the change
OUTPUT_ALERTS = {"ModelOutputDrift", "ModelOutputDriftWithEstimatedDrop"}


def _outputs_moved(stream: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in stream:
        if record["timestamp"] - START >= DRIFT_FROM:  # the model's outputs move, not its inputs
            record["score"] = round(min(1.0, record["score"] + 0.1), 6)
            record["prediction"] = int(record["score"] >= 0.5)
        yield record


def test_output_drift_reaches_the_topic_prometheus_and_the_webhook(
    kafka: Any, own_prometheus: tuple[str, int], receiver: Receiver, tmp_path: Path
) -> None:
    prometheus_url, metrics_port = own_prometheus
    suffix = uuid.uuid4().hex[:8]
    run = model_run(
        kafka,
        tmp_path,
        f"e2e-out-{suffix}",
        f"fraud-out-{suffix}",
        WORKER_METRICS_PORT=str(metrics_port),
    )
    stream, _ = simulate(30_000, seed=5, model=run.model, start_time=START, rate_per_second=100.0)
    produce(run.config, _outputs_moved(stream))

    with worker_events(run) as events:
        event = next((e for e in events if e["type"] == "output_drift"), None)
        assert event is not None, run.log.read_text()[-3000:]
        delivery = receiver.wait_for(run.model, OUTPUT_ALERTS)
    assert event["window_start"] >= START + DRIFT_FROM
    evidence = event["evidence"]
    assert "score" in evidence["drifted_signals"], evidence
    assert (
        evidence["signals"]["score"]["window"]["mean"]
        > evidence["signals"]["score"]["reference"]["mean"]
    )
    assert delivery is not None, (
        f"no output-drift alert for {run.model}: {receiver.deliveries[-3:]}"
    )
    _, path, alert = delivery
    assert alert["status"] == "firing"
    assert path == (
        "/alertmanager/critical"
        if alert["labels"]["alertname"] == "ModelOutputDriftWithEstimatedDrop"
        else "/alertmanager/warning"
    )
    # the worker is stopped: its series are stale now, hence last_over_time
    result = query(
        prometheus_url, f'last_over_time(model_score_drift{{model_name="{run.model}"}}[10m])'
    )
    assert result and float(result[0]["value"][1]) > 0.02
