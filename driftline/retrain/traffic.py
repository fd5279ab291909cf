"""A simulated inference service that routes through the router: what `driftline simulate` and
`driftline demo` need so that traffic really shifts during an A/B test.

:class:`RoutedService` takes blocks of simulated records (:func:`driftline.simulate.simulate`),
asks the :class:`~driftline.router.ModelRouter` which version serves each prediction, predicts
with that version's registered artifact (loaded once, after its SHA-256 check, from the
artifact directory), and publishes the predictions (with the serving ``model_version``) and
their labels. It counts correct predictions per version for the caller.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from driftline.config import Config
from driftline.retrain.pipeline import ArtifactError, load_model
from driftline.retrain.registry import Registry
from driftline.router import ModelRouter
from driftline.simulate import Drift, simulate

__all__ = ["RoutedService"]

Predict = Callable[[Any, Sequence[dict[str, Any]]], tuple[list[Any], list[float]]]


class RoutedService:
    def __init__(
        self,
        config: Config,
        registry: Registry,
        router: ModelRouter,
        model: str,
        *,
        predict: Predict | None = None,
        preloaded: dict[str, Any] | None = None,
    ) -> None:
        """``predict(model_object, features) -> (classes, scores)``: defaults to the sklearn
        example pipeline's. ``preloaded``: model objects by version (e.g. a bootstrap one)."""
        if predict is None:
            from driftline.retrain.sklearn_pipeline import predict as sklearn_predict

            predict = sklearn_predict
        self.config = config
        self.registry = registry
        self.router = router
        self.model = model
        self.predict = predict
        self.models: dict[str, Any] = dict(preloaded or {})
        self.artifact_dir = Path(config.retraining.artifact_dir)
        self.producer = Producer({**config.kafka.confluent_settings(), "linger.ms": 5})
        self.correct: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # version: right, n

    def _model_of(self, version: str) -> Any:
        if version not in self.models:
            row = self.registry.version(self.model, version)
            if row is None:
                raise ArtifactError(f"{self.model}@{version}: routed to, but not in the registry")
            self.models[version] = load_model(self.artifact_dir, row)
        return self.models[version]

    def serve(
        self,
        n: int,
        *,
        seed: int,
        first_index: int,
        start_time: float,
        rate_per_second: float,
        schedule: Sequence[Drift] = (),
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Serve records ``first_index .. first_index + n`` of the simulated stream; returns
        (prediction record, label) pairs as published."""
        records, labels = simulate(
            n,
            seed=seed,
            first_index=first_index,
            start_time=start_time,
            rate_per_second=rate_per_second,
            schedule=schedule,
            model=self.model,
        )
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            by_version[self.router.route(self.model, record["prediction_id"])].append(i)
        for version, positions in by_version.items():
            predicted, scores = self.predict(
                self._model_of(version), [records[i]["features"] for i in positions]
            )
            for i, p, s in zip(positions, predicted, scores, strict=True):
                records[i].update(model_version=version, prediction=p, score=round(s, 6))
        topics = self.config.topics
        for record, label in zip(records, labels, strict=True):
            tally = self.correct[record["model_version"]]
            tally[0] += int(record["prediction"] == label["label"])
            tally[1] += 1
            key = record["prediction_id"]
            self.producer.produce(topics.predictions, key=key, value=orjson.dumps(record))
            self.producer.produce(topics.labels, key=key, value=orjson.dumps(label))
        self.producer.poll(0)
        return list(zip(records, labels, strict=True))

    def flush(self, timeout: float = 30.0) -> None:
        self.producer.flush(timeout)
