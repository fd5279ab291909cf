"""`driftline worker`: check the topics, expose metrics, run the ingest loop (consumer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal

from driftline.config import Config
from driftline.sinks import prometheus as metrics
from driftline.streams.app import build_pipeline
from driftline.streams.checkpoint import ensure_internal_topics
from driftline.streams.consumer import IngestWorker
from driftline.streams.topics import check_copartitioned

log = logging.getLogger(__name__)

__all__ = ["run_worker"]


def run_worker(config: Config) -> int:
    """Run until SIGTERM/SIGINT. Refuses to start when predictions and labels aren't co-partitioned."""
    partitions = check_copartitioned(config)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the worker's log): a stuck
    # worker explains itself without a debugger. (Not possible when stderr is no file, e.g.
    # captured in a test: then it is simply not there.)
    with contextlib.suppress(AttributeError, OSError, ValueError):  # io.UnsupportedOperation too
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    log.info("predictions and labels co-partitioned over %d partitions", partitions)
    ensure_internal_topics(config)
    pipeline_metrics = metrics.WorkerMetrics(metrics.REGISTRY)  # once: names are unique in it
    metrics.serve(config.worker.metrics_port)
    log.info("metrics on http://127.0.0.1:%d/metrics", config.worker.metrics_port)
    worker = IngestWorker(
        config,
        lambda send, load: build_pipeline(config, partitions, send, load, pipeline_metrics),
    )
    asyncio.run(worker.run())  # SIGTERM/SIGINT: checkpoint, commit, leave the group, exit 0
    return 0
