"""`driftline worker`: check the topics, expose metrics, run the Faust worker."""

from __future__ import annotations

import logging

from driftline.config import Config
from driftline.sinks import prometheus as metrics
from driftline.streams.app import create_app
from driftline.streams.checkpoint import ensure_internal_topics
from driftline.streams.topics import check_copartitioned

log = logging.getLogger(__name__)

__all__ = ["run_worker"]


def run_worker(config: Config) -> int:
    """Run until SIGTERM/SIGINT. Refuses to start when predictions and labels aren't co-partitioned."""
    from faust.worker import Worker

    partitions = check_copartitioned(config)
    log.info("predictions and labels co-partitioned over %d partitions", partitions)
    ensure_internal_topics(config)
    metrics.serve(config.worker.metrics_port)
    log.info("metrics on http://127.0.0.1:%d/metrics", config.worker.metrics_port)
    app = create_app(config, n_sources=partitions)
    # Faust's Worker installs signal handlers and stops cleanly on SIGTERM.
    Worker(app, loglevel="info").execute_from_commandline()
    return 0
