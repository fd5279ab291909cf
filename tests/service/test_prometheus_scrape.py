"""A worker scraped by the real Prometheus; every dashboard panel query run against it."""

from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from driftline.config import Config
from driftline.dashboards import expand_promql, promql_panels
from driftline.local import start_worker_process, stop_worker_processes
from driftline.simulate import Drift, simulate
from driftline.streams.topics import ensure_topics
from tests.conftest import worker_env

pytestmark = pytest.mark.service

N_RECORDS = 42_000  # 7 minutes at 100/s: six 60-s windows close
N_CHALLENGER = 8_400  # a second version of the model at 20/s over the same minutes (an A/B test)


def query(prometheus_url: str, promql: str) -> dict[str, Any]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        body: dict[str, Any] = orjson.loads(response.read())
    return body


@pytest.fixture(scope="module")
def scraped_worker(
    kafka: Any, prometheus_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Config]:
    """A worker on the port Prometheus scrapes (config/prometheus.yml), fed seven minutes of a
    model's traffic with labels, attributions, an error incident, a latency incident and a
    drift, so that every metric of the dashboards has data."""
    import uuid

    from driftline.config import load_config

    suffix = uuid.uuid4().hex[:8]
    references = tmp_path_factory.mktemp("references")
    env = worker_env(
        kafka.bootstrap_servers,
        f"scrape-{suffix}",
        references,
        WORKER_METRICS_PORT=os.environ.get("DRIFTLINE_WORKER_METRICS_PORT", "9108"),
        WORKER_DATA_DIR=str(tmp_path_factory.mktemp("worker")),
        LABELS_HORIZON_SECONDS="30",
    )
    model = f"scrape-{suffix}"
    _reference_with_attributions(references, model, "1")
    _reference_with_attributions(references, model, "2")
    config = load_config(Path("config/driftline.yaml"), environ=env)
    ensure_topics(config)
    producer = Producer(config.kafka.confluent_settings())
    stream, labels = simulate(
        N_RECORDS,
        seed=3,
        model=model,
        start_time=1_767_225_600.0,
        rate_per_second=100.0,
        attributions=True,  # the feature-importance board
        schedule=[
            Drift("errors", 60, 120, 0.1),
            Drift("latency", 120, 180, 50.0),
            Drift("abrupt", 180, magnitude=1.0),
        ],
    )
    challenger, challenger_labels = simulate(
        N_CHALLENGER,
        seed=4,
        model=model,
        model_version="2",
        id_prefix="c",
        start_time=1_767_225_600.0,
        rate_per_second=20.0,
        attributions=True,  # no drift: the champion's drift flags must stay its own
    )
    for record in challenger:  # the challenger leans on another feature: other importances
        record["attributions"]["amount"] *= 4.0
    pairs = sorted(
        [*zip(stream, labels, strict=True), *zip(challenger, challenger_labels, strict=True)],
        key=lambda pair: float(pair[0]["timestamp"]),
    )
    for record, label in pairs:
        producer.produce(
            config.topics.predictions, key=record["prediction_id"], value=orjson.dumps(record)
        )
        label = {**label, "timestamp": label["timestamp"] + 10}
        producer.produce(
            config.topics.labels, key=label["prediction_id"], value=orjson.dumps(label)
        )
        producer.poll(0)
    producer.produce(config.topics.predictions, key=b"bad", value=b"not json")
    assert producer.flush(30) == 0
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    worker = start_worker_process(None, log, env=env)
    try:
        yield config
    finally:
        stop_worker_processes([worker])


def _reference_with_attributions(references: Path, model: str, version: str) -> None:
    """The profile of build_reference (same records), with the records' attributions: the
    reference importances of the feature-importance board."""
    from driftline.detectors.profile import ReferenceProfile

    records, labels = simulate(20_000, seed=99, model=model, attributions=True)
    ReferenceProfile.from_records(
        records, model=model, model_version=version, labels=[x["label"] for x in labels]
    ).save(references / f"{model}@{version}.json")


def wait_for_series(prometheus_url: str, promql: str, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result: list[Any] = query(prometheus_url, promql)["data"]["result"]
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"Prometheus returned nothing for {promql} within {timeout} s")


def test_prometheus_scrapes_the_worker(scraped_worker: Config, prometheus_url: str) -> None:
    topic = scraped_worker.topics.predictions
    up = wait_for_series(prometheus_url, 'up{job="driftline"} == 1')
    assert up[0]["metric"]["instance"].startswith("127.0.0.1:")
    total = N_RECORDS + N_CHALLENGER
    accepted = wait_for_series(
        prometheus_url, f'driftline_records_processed_total{{topic="{topic}"}} >= {total}'
    )
    assert float(accepted[0]["value"][1]) == total
    dead = wait_for_series(prometheus_url, f'driftline_dlq_records_total{{topic="{topic}"}}')
    assert dead[0]["metric"]["reason"] == "invalid_json"
    assert float(dead[0]["value"][1]) == 1
    # state the pipeline holds, read by the worker's collector when Prometheus scrapes: every
    # label joined (timestamps 10 s after the prediction's), a lag per partition it owns
    instance = up[0]["metric"]["instance"]
    joined = f'driftline_label_join_records{{instance="{instance}", outcome="joined"}}'
    wait_for_series(prometheus_url, f"{joined} == {total}")
    lag = wait_for_series(
        prometheus_url, f'driftline_consumer_lag_records{{instance="{instance}"}}'
    )
    assert {s["metric"]["partition"] for s in lag} == {str(p) for p in range(len(lag))}


def test_champion_and_challenger_have_their_own_importance_series(
    scraped_worker: Config, prometheus_url: str
) -> None:
    """Two versions of one model judged in the same windows: two sets of importance series,
    with the challenger's own shares (its attributions lean on `amount`), not one overwritten."""
    model = scraped_worker.worker.app_id  # the fixture names the model after its app id
    amount = f'model_feature_importance{{model_name="{model}", feature_name="amount"}}'
    shares = wait_for_series(prometheus_url, f"count by (model_version) ({amount}) == 1")
    assert {s["metric"]["model_version"] for s in shares} == {"1", "2"}
    by_version = {
        s["metric"]["model_version"]: float(s["value"][1])
        for s in query(prometheus_url, amount)["data"]["result"]
    }
    assert by_version["2"] > by_version["1"] + 0.1, by_version
    flags = query(prometheus_url, f'model_importance_drift_detected{{model_name="{model}"}}')
    assert {s["metric"]["model_version"] for s in flags["data"]["result"]} == {"1", "2"}


def test_the_champion_drifts_and_the_quiet_challenger_does_not_clear_it(
    scraped_worker: Config, prometheus_url: str
) -> None:
    """Every window gauge carries the version: the champion's drift (from minute 3) and the
    challenger's clean windows are two series, not one overwritten by whichever closed last."""
    model = scraped_worker.worker.app_id
    amount = f'model_name="{model}", feature_name="amount"'
    champion = f'model_drift_detected{{{amount}, model_version="1"}} == 1'
    wait_for_series(prometheus_url, champion, timeout=90)
    flags = {
        s["metric"]["model_version"]: float(s["value"][1])
        for s in query(prometheus_url, f"model_drift_detected{{{amount}}}")["data"]["result"]
    }
    assert flags == {"1": 1.0, "2": 0.0}, flags
    for gauge in ("model_estimated_accuracy", "model_accuracy", "model_score_drift"):
        series = wait_for_series(
            prometheus_url, f'count by (model_version) ({gauge}{{model_name="{model}"}})'
        )
        assert {s["metric"]["model_version"] for s in series} == {"1", "2"}, gauge


@pytest.mark.parametrize(
    "panel", [p for _, p in promql_panels(with_data=True)], ids=lambda p: p.title
)
def test_every_dashboard_query_runs_on_prometheus(
    scraped_worker: Config, prometheus_url: str, panel: Any
) -> None:
    promql = expand_promql(panel.query, ".+", ["1", "2"])  # any model; the versions fed
    body = query(prometheus_url, promql)
    assert body["status"] == "success", body  # the query parses and runs
    # rate() needs two scrapes of the worker, so data may take a scrape interval to appear.
    assert wait_for_series(prometheus_url, promql), f"panel '{panel.title}' shows no data"
