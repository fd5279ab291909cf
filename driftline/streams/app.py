"""Wiring: the `Pipeline` (pipeline.py) with its reference profiles, thresholds and topics.

The worker's shell around it is `consumer.py` (one confluent-kafka consumer and producer);
event-time windows stay in our own code (see docs/DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import DriftThresholds, load_thresholds
from driftline.streams.checkpoint import checkpoint_topic, partials_topic
from driftline.streams.pipeline import Pipeline, Send, Topics

log = logging.getLogger(__name__)

__all__ = ["build_pipeline", "load_profiles"]


def load_profiles(directory: str | Path) -> dict[tuple[str, str], ReferenceProfile]:
    """Every `*.json` reference profile in a directory, by (model, model_version)."""
    profiles: dict[tuple[str, str], ReferenceProfile] = {}
    path = Path(directory)
    if not path.is_dir():
        log.warning("reference directory %s does not exist: no model will be windowed", path)
        return profiles
    for file in sorted(path.glob("*.json")):
        profile = ReferenceProfile.load(file)
        profiles[(profile.model, profile.model_version)] = profile
    log.info("loaded %d reference profiles from %s", len(profiles), path)
    return profiles


def _thresholds(config: Config) -> DriftThresholds:
    path = Path(config.worker.thresholds_file)
    if path.exists():
        return load_thresholds(path)
    from driftline.detectors.thresholds import thresholds_from_dict

    log.warning("thresholds file %s does not exist: using the built-in defaults", path)
    return thresholds_from_dict({})


def build_pipeline(
    config: Config,
    n_sources: int,
    send: Send,
    load_checkpoints: Callable[[], Awaitable[dict[str, Any]]],
) -> Pipeline:
    """The pipeline of a validated config, sending through `send`."""
    return Pipeline(
        config,
        profiles=load_profiles(config.worker.reference_dir),
        thresholds=_thresholds(config),
        topics=Topics(
            predictions=config.topics.predictions,
            dlq=config.topics.dlq,
            partials=partials_topic(config),
            alerts=config.topics.alerts,
            metrics=config.topics.metrics,
            checkpoints=checkpoint_topic(config),
        ),
        n_sources=n_sources,
        send=send,
        load_checkpoints=load_checkpoints,
    )
