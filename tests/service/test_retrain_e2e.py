"""End to end on the real Kafka and PostgreSQL: simulated traffic served through the router by
scikit-learn models, an injected concept drift, the real worker detects it, `retrain serve`
fires the degradation policy, trains on post-drift labelled data from the training sample,
starts an A/B test, the router shifts traffic, the evaluator promotes the challenger, and the
realised accuracy recovers to within 2 points of the pre-drift level."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from driftline.demo import bootstrap_champion
from driftline.local import start_worker_process, stop_worker_processes
from driftline.retrain.registry import Registry
from driftline.retrain.sample import TrainingSampleSink
from driftline.retrain.service import RetrainService, ensure_control_topic, serve
from driftline.retrain.traffic import RoutedService
from driftline.router import ModelRouter, RoutingDecision
from driftline.simulate import Drift
from driftline.streams.topics import ensure_topics
from tests.conftest import worker_env
from tests.service.test_retrain_helpers import config_of, schema_store

pytestmark = pytest.mark.service

MODEL = "fraud"
RATE = 500.0  # predictions per second, wall clock and event time
ONSET = 6.0  # seconds after the start: the label relation flips
AFTER = 3000  # predictions served after the promotion, to measure the recovered accuracy
POLICIES = """
policies:
  - name: degradation
    triggers: concept_drift,performance_drop
    cooldown_seconds: 3600
    min_new_labels: 800
"""


def test_concept_drift_to_promotion_recovers_accuracy(
    kafka: Any, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"rte2e-{uuid.uuid4().hex[:8]}"
    references = tmp_path / "references"
    (tmp_path / "policies.yaml").write_text(POLICIES)
    env = worker_env(
        kafka.bootstrap_servers,
        prefix,
        references,
        WORKER_BATCH_TIMEOUT_SECONDS="0.2",
        RETRAINING_CONTROL_TOPIC=f"{prefix}.model-control",
        RETRAINING_ARTIFACT_DIR=str(tmp_path / "artifacts"),
        RETRAINING_POLICIES_FILE=str(tmp_path / "policies.yaml"),
        RETRAINING_SAMPLE_RATE="1.0",
        RETRAINING_CHALLENGER_TRAFFIC_SHARE="0.3",
        RETRAINING_AB_MIN_SAMPLES_PER_ARM="200",
    )
    config = config_of(env)
    ensure_topics(config)
    ensure_control_topic(config)
    artifact_dir = Path(config.retraining.artifact_dir)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with schema_store(postgres_url) as store:
        champion = bootstrap_champion(
            store, artifact_dir, references, training_records=4000, reason="bootstrap"
        )
        bootstrap = RetrainService(config, store)
        bootstrap.publish_routing(RoutingDecision(MODEL, "1", updated_at=time.time()))
        bootstrap.close()
        sink = TrainingSampleSink(config, store)
        threads.append(threading.Thread(target=sink.run, args=(stop,), daemon=True))
        threads.append(
            threading.Thread(
                target=serve,
                args=(config,),
                kwargs={
                    "schema": store.schema,
                    "stop": stop,
                    "start": "earliest",
                    "tick_seconds": 0.5,
                },
                daemon=True,
            )
        )
        worker = start_worker_process(None, tmp_path / "worker.log", env=env)
        for thread in threads:
            thread.start()
        registry = Registry(store)
        tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # phase, version
        marks: dict[str, float] = {}
        try:
            with ModelRouter(
                config.kafka.bootstrap_servers,
                config.retraining.control_topic,
                default_versions={MODEL: "1"},
            ) as router:
                service = RoutedService(config, registry, router, MODEL, preloaded={"1": champion})
                time.sleep(8)  # let the worker join its group before traffic starts
                start = time.time()
                served_after = 0
                index = 0
                while served_after < AFTER:
                    assert time.time() - start < 240, (dict(tally), marks)
                    assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                    decision = router.decision(MODEL)
                    promoted = decision is not None and decision.champion != "1"
                    if promoted and "promoted" not in marks:
                        marks["promoted"] = time.time()
                    if decision is not None and decision.challenger and "challenger" not in marks:
                        marks["challenger"] = time.time()
                    served = service.serve(
                        100,
                        seed=21,
                        first_index=index,
                        start_time=start,
                        rate_per_second=RATE,
                        schedule=[Drift("concept", ONSET)],
                    )
                    index += 100
                    phase = "before" if index / RATE <= ONSET else "after" if promoted else "during"
                    if phase == "during" and "onset" not in marks:
                        marks["onset"] = time.time()
                    for record, label in served:
                        key = (phase, record["model_version"])
                        tally[key][0] += int(record["prediction"] == label["label"])
                        tally[key][1] += 1
                    if phase == "after":
                        served_after += len(served)
                    lag = start + index / RATE - time.time()
                    if lag > 0:
                        time.sleep(lag)
                service.flush()
        finally:
            stop.set()
            stop_worker_processes([worker])
            for thread in threads:
                thread.join(30)
            sink.close()
        evaluations = registry.evaluations(MODEL)
        runs = registry.runs(MODEL)
        tests = registry.tests(MODEL)
        versions = {v["model_version"]: v for v in registry.versions(MODEL)}

    def accuracy(phase: str) -> float:
        right = sum(v[0] for (p, _), v in tally.items() if p == phase)
        total = sum(v[1] for (p, _), v in tally.items() if p == phase)
        return right / total

    before, after = accuracy("before"), accuracy("after")
    fired = [e for e in evaluations if e["fired"]]
    assert len(fired) == 1 and fired[0]["trigger_kind"] == "concept_drift", evaluations
    assert runs[0]["status"] == "succeeded" and runs[0]["from_version"] == "1"
    challenger = runs[0]["to_version"]
    assert tests[0]["status"] == "promoted" and tests[0]["challenger_version"] == challenger
    assert versions[challenger]["status"] == "champion" and versions["1"]["status"] == "retired"
    assert tally[("during", challenger)][1] > 0, "the challenger served traffic during the test"
    assert (references / f"{MODEL}@{challenger}.json").exists()
    print(
        f"\nE2E: accuracy before {before:.4f}, during {accuracy('during'):.4f}, after {after:.4f};"
        f" onset -> challenger {marks['challenger'] - marks['onset']:.1f} s,"
        f" onset -> promotion {marks['promoted'] - marks['onset']:.1f} s;"
        f" trained on {versions[challenger]['metrics'].get('training_rows')} rows,"
        f" offline accuracy {versions[challenger]['metrics'].get('accuracy'):.4f}"
        f" vs champion {versions[challenger]['metrics'].get('champion_holdout_accuracy')}"
    )
    assert abs(after - before) <= 0.02, (before, after)
