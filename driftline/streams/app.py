"""Wiring: the `Pipeline` (pipeline.py) with its reference profiles, thresholds and topics.

The worker's shell around it is `consumer.py` (one confluent-kafka consumer and producer);
event-time windows stay in our own code (see docs/DESIGN.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from driftline.config import Config
from driftline.detectors.thresholds import DriftThresholds, load_thresholds
from driftline.sinks.prometheus import WorkerMetrics
from driftline.streams.checkpoint import checkpoint_topic, partials_topic
from driftline.streams.pipeline import Pipeline, Send, Topics
from driftline.streams.profiles import ProfileDirectory

log = logging.getLogger(__name__)

__all__ = ["build_pipeline"]


def _thresholds(config: Config) -> DriftThresholds:
    path = Path(config.worker.thresholds_file)
    if path.exists():
        return load_thresholds(path)
    from driftline.detectors.thresholds import thresholds_from_dict

    log.warning("thresholds file %s does not exist: using the built-in defaults", path)
    return thresholds_from_dict({})


def _clock() -> Callable[[], float]:
    """The pipeline's wall clock. For tests only: DRIFTLINE_TEST_CLOCK_SKEW_SECONDS shifts it
    (the fault suite's worker whose clock is minutes off; docs/OPERATIONS.md, "Faults")."""
    skew = float(os.environ.get("DRIFTLINE_TEST_CLOCK_SKEW_SECONDS") or 0.0)
    if not skew:
        return time.time
    log.warning("wall clock skewed by %+.0f s (DRIFTLINE_TEST_CLOCK_SKEW_SECONDS)", skew)
    return lambda: time.time() + skew


def build_pipeline(
    config: Config,
    n_sources: int,
    send: Send,
    load_checkpoints: Callable[[], Awaitable[dict[str, Any]]],
    metrics: WorkerMetrics | None = None,
) -> Pipeline:
    """The pipeline of a validated config, sending through `send`, counting in `metrics`."""
    profiles = ProfileDirectory(config.worker.reference_dir, config.worker.reference_rescan_seconds)
    return Pipeline(
        config,
        profiles=profiles.load(),
        profile_directory=profiles,
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
        clock=_clock(),
        metrics=metrics,
    )
