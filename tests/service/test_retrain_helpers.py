"""Shared pieces of the retraining service tests: settings, sample data, test pipelines
(named by entry point in `retraining.pipeline`). No tests here."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftline.config import Config, load_config
from driftline.retrain.pipeline import TrainingData, TrainingResult
from driftline.retrain.sample import write_batch
from driftline.simulate import Drift, simulate
from driftline.sinks.store import PostgresStore

ROOT = Path(__file__).resolve().parents[2]


def retrain_env(base: dict[str, str], tmp: Path, **overrides: str) -> dict[str, str]:
    """The isolated config's variables plus retraining settings of a test."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **base,
        "DRIFTLINE_RETRAINING_CONTROL_TOPIC": f"test-{suffix}.model-control",
        "DRIFTLINE_RETRAINING_ARTIFACT_DIR": str(tmp / "artifacts"),
        "DRIFTLINE_RETRAINING_POLICIES_FILE": str(tmp / "policies.yaml"),
        "DRIFTLINE_RETRAINING_SAMPLE_RATE": "1.0",
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(tmp / "references"),
    }
    env.update({f"DRIFTLINE_{k}": v for k, v in overrides.items()})
    return env


def config_of(env: dict[str, str]) -> Config:
    return load_config(ROOT / "config" / "driftline.yaml", environ=env)


@contextmanager
def schema_store(url: str) -> Iterator[PostgresStore]:
    """A store in a schema of its own, dropped afterwards."""
    store = PostgresStore(url, schema=f"rt_{uuid.uuid4().hex[:10]}")
    try:
        store.upgrade()
        yield store
    finally:
        store.drop_schema()
        store.close()


def add_sample(
    store: PostgresStore,
    n: int,
    *,
    model: str,
    version: str,
    seed: int = 0,
    concept: bool = False,
    accuracy: float | None = None,
    start_time: float | None = None,
    error_share: float = 0.0,
    latency_ms: float | None = None,
) -> None:
    """n labelled sample rows of one version. Predictions are the simulator's (score >= 0.5)
    unless ``accuracy`` is given: then exactly that share is right (first rows right)."""
    schedule = [Drift("concept", 0.0)] if concept else []
    records, labels = simulate(
        n,
        seed=seed,
        model=model,
        model_version=version,
        schedule=schedule,
        start_time=start_time or time.time(),
        id_prefix=f"{version}-{uuid.uuid4().hex[:6]}-",
    )
    right = round((accuracy or 0.0) * n)
    for i, (record, label) in enumerate(zip(records, labels, strict=True)):
        if accuracy is not None:
            record["prediction"] = label["label"] if i < right else 1 - label["label"]
        if i < int(error_share * n):
            record["error"] = "http_5xx"
            record.pop("prediction")
        if latency_ms is not None:
            record["latency_ms"] = latency_ms
    write_batch(store, records, labels, max_rows_per_version=1_000_000)


# -- pipelines named by entry point ----------------------------------------------------------


def slow_train(model: str, reason: str, data: TrainingData) -> TrainingResult:
    """The sklearn pipeline, once the file named by RETRAIN_TEST_RELEASE exists (the test
    creates it when the competing process is done), so that two processes surely overlap."""
    from driftline.retrain.sklearn_pipeline import train

    release = Path(os.environ["RETRAIN_TEST_RELEASE"])
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return train(model, reason, data)


def failing_train(model: str, reason: str, data: TrainingData) -> TrainingResult:
    raise RuntimeError("feature store unreachable")


def sklearn_train(model: str, reason: str, data: TrainingData) -> Any:
    from driftline.retrain.sklearn_pipeline import train

    return train(model, reason, data)
