"""Drift to page, for real: a worker scraped by Prometheus, the shipped rules, Alertmanager
routing to a webhook receiver this test runs on 127.0.0.1:9097 (config/alertmanager.yml)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from driftline.simulate import Drift, simulate
from tests.service.e2e import START, Receiver, model_run, produce, query, worker_events

pytestmark = pytest.mark.service


def test_drift_reaches_the_alertmanager_webhook(
    kafka: Any, prometheus_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    run = model_run(
        kafka,
        tmp_path,
        f"e2e-{suffix}",
        f"fraud-{suffix}",
        # the port config/prometheus.yml scrapes
        WORKER_METRICS_PORT=os.environ.get("DRIFTLINE_WORKER_METRICS_PORT", "9108"),
    )
    stream, _ = simulate(
        30_000,
        seed=4,
        model=run.model,
        start_time=START,
        rate_per_second=100.0,
        schedule=[Drift("abrupt", 180, magnitude=1.0)],
    )
    produce(run.config, stream)

    with worker_events(run) as events:
        event_seen_at = None
        for event in events:
            if event["type"] == "data_drift":
                event_seen_at = time.time()
                break
        assert event_seen_at is not None, run.log.read_text()[-3000:]
        delivery = receiver.wait_for(run.model, {"ModelDataDrift"})
        # While the worker still runs: once it stops, Prometheus marks its series stale.
        result = query(prometheus_url, f'model_drift_detected{{model_name="{run.model}"}} == 1')
    assert delivery is not None, (
        f"no ModelDataDrift for {run.model} reached the webhook: {receiver.deliveries[-3:]}"
    )
    received_at, path, alert = delivery
    assert path == "/alertmanager/warning"  # warnings route to chat, not to the pager
    assert alert["labels"]["feature_name"] == "amount" and alert["status"] == "firing"
    assert {r["metric"]["feature_name"] for r in result} >= {"amount"}
    print(
        f"drift event on the alerts topic -> Alertmanager webhook: {received_at - event_seen_at:.1f} s"
    )
