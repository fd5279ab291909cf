"""The pluggable training pipeline: its contract, its data accessor, and artifact storage.

A pipeline is a function named by ``retraining.pipeline`` (``package.module:function``)::

    def train(model: str, reason: str, data: TrainingData) -> TrainingResult: ...

``data`` gives the labelled sample (stratified by label and time; the newest
``holdout_fraction`` by event time held out) and the champion's reference profile. The function
returns the artifact bytes, its offline metrics **on the held-out recent slice**, and the
records it trained on (with the new model's predictions and scores), from which the new
version's reference profile is built. Raising is allowed: the runner records the error, alerts,
and promotes nothing.

Artifacts are written under ``retraining.artifact_dir`` with their SHA-256 in the registry.
:func:`load_artifact` reads only a path inside that directory whose checksum matches; only then
may the bytes be unpickled (:func:`load_model`). Never unpickle from anywhere else: a pickle
runs code when loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from driftline.detectors.profile import ReferenceProfile
from driftline.sinks.store import PostgresStore

__all__ = [
    "ArtifactError",
    "PipelineError",
    "TrainingData",
    "TrainingResult",
    "load_artifact",
    "load_model",
    "load_pipeline",
    "store_artifact",
]


class PipelineError(RuntimeError):
    """The configured pipeline cannot be loaded, or returned something else than a result."""


class ArtifactError(RuntimeError):
    """An artifact outside the artifact directory, missing, or with the wrong checksum."""


@dataclass
class TrainingResult:
    """What a pipeline returns. ``metrics`` must hold ``accuracy`` on the held-out slice (the
    candidate is compared with the champion on it); ``training_records`` are prediction-shaped
    dicts (``features``, ``prediction``, ``score``) of the training data, ``training_labels``
    their labels, for the new version's reference profile."""

    artifact: bytes
    metrics: dict[str, float]
    training_records: list[dict[str, Any]]
    training_labels: list[Any]
    format: str = "pickle"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingData:
    """The data accessor handed to a pipeline (reads PostgreSQL; see
    :func:`driftline.retrain.sample.read_stratified`)."""

    store: PostgresStore
    model: str
    champion_version: str | None
    since: datetime | None
    holdout_fraction: float
    reference_dir: Path
    _cache: list[dict[str, Any]] | None = None

    def labelled(self) -> list[dict[str, Any]]:
        """The stratified labelled sample since ``since`` (e.g. the drift onset), oldest first."""
        from driftline.retrain.sample import read_stratified

        if self._cache is None:
            self._cache = read_stratified(self.store, self.model, since=self.since)
        return self._cache

    def split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(train, holdout): the holdout is the newest ``holdout_fraction`` by event time."""
        rows = self.labelled()
        cut = len(rows) - max(1, int(len(rows) * self.holdout_fraction)) if rows else 0
        return rows[:cut], rows[cut:]

    def reference_profile(self) -> ReferenceProfile | None:
        """The champion's reference profile (the training data of the model in production)."""
        if self.champion_version is None:
            return None
        path = self.reference_dir / f"{self.model}@{self.champion_version}.json"
        return ReferenceProfile.load(path) if path.exists() else None


Pipeline = Callable[[str, str, TrainingData], TrainingResult]


def load_pipeline(entry_point: str) -> Pipeline:
    """The function named ``package.module:function``.

    >>> load_pipeline("driftline.nothing_here:train")
    Traceback (most recent call last):
    ...
    driftline.retrain.pipeline.PipelineError: retraining.pipeline 'driftline.nothing_here:train': cannot import driftline.nothing_here (No module named 'driftline.nothing_here')
    """
    module_name, _, function = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"retraining.pipeline {entry_point!r}: cannot import {module_name} ({exc})"
        ) from exc
    target = getattr(module, function, None)
    if not callable(target):
        raise PipelineError(f"retraining.pipeline {entry_point!r}: {function} is not a function")
    return target  # type: ignore[no-any-return]


def store_artifact(artifact_dir: Path, model: str, version: str, data: bytes) -> tuple[str, str]:
    """Write ``data`` to ``<artifact_dir>/<model>/<version>/model.bin`` (atomically); returns
    (path relative to ``artifact_dir``, SHA-256 hex)."""
    for part in (model, version):
        if not part or part in {".", ".."} or "/" in part or "\\" in part:
            raise ArtifactError(f"{part!r}: not usable in an artifact path")
    relative = Path(model) / version / "model.bin"
    target = artifact_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return str(relative), hashlib.sha256(data).hexdigest()


def load_artifact(artifact_dir: Path, relative_path: str, sha256: str) -> bytes:
    """The bytes of an artifact, after checking that it lies inside ``artifact_dir`` and that
    its SHA-256 is the registered one.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> path, digest = store_artifact(root, "fraud", "2", b"model")
    >>> load_artifact(root, path, digest)
    b'model'
    >>> load_artifact(root, "../../etc/passwd", digest)
    Traceback (most recent call last):
    ...
    driftline.retrain.pipeline.ArtifactError: artifact ../../etc/passwd: outside the artifact directory
    """
    root = artifact_dir.resolve()
    path = (root / relative_path).resolve()
    if not path.is_relative_to(root):
        raise ArtifactError(f"artifact {relative_path}: outside the artifact directory")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"artifact {relative_path}: {exc.strerror}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"artifact {relative_path}: SHA-256 {actual} does not match the registry's {sha256}"
        )
    return data


def load_model(artifact_dir: Path, version_row: dict[str, Any]) -> Any:
    """Unpickle a registered version's artifact, after :func:`load_artifact`'s checks."""
    path, digest = version_row.get("artifact_path"), version_row.get("artifact_sha256")
    if not path or not digest:
        raise ArtifactError(
            f"{version_row.get('model')}@{version_row.get('model_version')}: no artifact registered"
        )
    return pickle.loads(load_artifact(artifact_dir, path, digest))


def build_profile(result: TrainingResult, model: str, version: str, reference_dir: Path) -> Path:
    """Build the new version's reference profile from its training data and write it where
    the workers load profiles (``<reference_dir>/<model>@<version>.json``)."""
    profile = ReferenceProfile.from_records(
        result.training_records,
        model=model,
        model_version=version,
        labels=result.training_labels or None,
    )
    reference_dir.mkdir(parents=True, exist_ok=True)
    path = reference_dir / f"{model}@{version}.json"
    profile.save(path)
    return path


def champion_holdout_accuracy(
    holdout: Sequence[dict[str, Any]], champion_version: str | None
) -> float | None:
    """Realised accuracy of the champion's own predictions on the held-out slice (None when
    the champion served none of it).

    >>> rows = [{"model_version": "1", "prediction": 1, "label": 1},
    ...         {"model_version": "1", "prediction": 0, "label": 1},
    ...         {"model_version": "2", "prediction": 1, "label": 1}]
    >>> champion_holdout_accuracy(rows, "1")
    0.5
    """
    own = [r for r in holdout if r.get("model_version") == champion_version]
    if not own:
        return None
    return float(sum(r.get("prediction") == r.get("label") for r in own) / len(own))
