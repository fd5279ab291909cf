"""The Faust application: three agents and a timer, wired to `Pipeline` (pipeline.py).

Faust gives us agents, consumer groups and producers; event-time windows stay in our own code
(Faust's windowed tables close on wall-clock time: see docs/DESIGN.md).

- `consume_predictions`: predictions topic -> `Pipeline.on_predictions` (stage 1)
- `consume_labels`: labels topic -> `Pipeline.on_labels` (the label join, stage 1)
- `consume_partials`: the partials topic (keyed by model) -> `Pipeline.on_partials` (stage 2)
- `declare_idle_partitions`: every second, consumer lag and `Pipeline.declare_idle`

Every message a batch produces (DLQ, partials, events, summaries, checkpoints) is confirmed by
the broker before the agent takes the next batch, i.e. before the batch can be acked.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import DriftThresholds, load_thresholds
from driftline.sinks import prometheus as metrics
from driftline.streams.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    checkpoint_topic,
    partials_topic,
    read_checkpoints,
)
from driftline.streams.pipeline import Message, Pipeline, Topics

log = logging.getLogger(__name__)

__all__ = ["create_app", "load_profiles"]


def _credentials(config: Config) -> Any:
    kafka = config.kafka
    context = (
        ssl.create_default_context(cafile=kafka.ssl_cafile)
        if "SSL" in kafka.security_protocol
        else None
    )
    if kafka.security_protocol.startswith("SASL"):
        password = kafka.sasl_password.reveal() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


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


def create_app(config: Config, n_sources: int) -> faust.App:
    """Build the Faust app, its agents and the pipeline from a validated config."""
    worker = config.worker
    app = faust.App(
        worker.app_id,
        broker=f"kafka://{config.kafka.bootstrap_servers}",
        broker_credentials=_credentials(config),
        store="memory://",
        datadir=worker.data_dir,
        web_enabled=False,  # metrics are served by prometheus-client on worker.metrics_port
        topic_partitions=config.topics.partitions,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=worker.batch_size,
        stream_buffer_maxsize=max(4 * worker.batch_size, 4096),
        producer_acks=-1,
        producer_max_request_size=MAX_CHECKPOINT_BYTES,
        producer_compression_type="lz4",
        consumer_max_fetch_size=MAX_CHECKPOINT_BYTES,
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw", "internal": False}
    predictions = app.topic(config.topics.predictions, **raw)  # type: ignore[arg-type]
    partials = app.topic(partials_topic(config), **raw)  # type: ignore[arg-type]
    outputs = {
        name: app.topic(name, **raw)  # type: ignore[arg-type]
        for name in (
            config.topics.dlq,
            config.topics.alerts,
            config.topics.metrics,
            partials_topic(config),
            checkpoint_topic(config),
        )
    }
    pending: list[Awaitable[Any]] = []

    async def send(
        topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes] | None
    ) -> None:
        # force=True: publish now, not as an attachment released when the source event is acked.
        pending.append(await outputs[topic].send(key=key, value=value, headers=headers, force=True))

    async def confirm() -> None:
        batch = list(pending)
        pending.clear()
        await asyncio.gather(*batch)

    async def load_checkpoints() -> dict[str, Any]:
        await confirm()  # our own checkpoints must be on the broker before we read them back
        return await asyncio.get_running_loop().run_in_executor(None, read_checkpoints, config)

    pipeline = Pipeline(
        config,
        profiles=load_profiles(worker.reference_dir),
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
    app.pipeline = pipeline  # type: ignore[attr-defined]

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        pipeline.assign_partitions((tp.topic, tp.partition) for tp in assigned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        pipeline.forget_partitions((tp.topic, tp.partition) for tp in revoked)

    def _batched(handler: Any, what: str) -> Any:
        """An agent that hands each batch of `batch_size` events (or what came within
        `batch_timeout_seconds`) to `handler`."""

        async def agent(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
            async for events in stream.take_events(
                worker.batch_size, within=worker.batch_timeout_seconds
            ):
                await run(events, handler, what)

        return agent

    async def run(events: Sequence[Any], handler: Any, what: str) -> None:
        # Catch everything: an agent that raises still acks its events, losing the batch.
        try:
            await handler([event.message for event in events])
            await confirm()
        except Exception:
            log.exception("%s batch of %d messages failed; dead-lettering it", what, len(events))
            pending.clear()
            for event in events:
                message: Message = event.message
                await pipeline.dead_letter(
                    message, "worker_error", f"worker error processing the {what} batch", None
                )
            await confirm()

    labels = app.topic(config.topics.labels, **raw)  # type: ignore[arg-type]
    for topic, handler, what in (
        (predictions, pipeline.on_predictions, "predictions"),
        (partials, pipeline.on_partials, "partials"),
        (labels, pipeline.on_labels, "labels"),
    ):
        app.agent(topic, name=f"consume_{what}")(_batched(handler, what))

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def declare_idle_partitions() -> None:
        try:
            assigned = [TP(config.topics.predictions, p) for p in pipeline.assigned_partitions()]
            if assigned:
                ends = await app.consumer.highwaters(*assigned)
                for tp, end in ends.items():
                    processed = pipeline.processed_offset(tp.partition)
                    if processed is not None:
                        metrics.CONSUMER_LAG.labels(str(tp.partition)).set(
                            max(int(end) - processed, 0)
                        )
            quiet = pipeline.quiet_partitions()
            if quiet:
                tps = [TP(config.topics.predictions, p) for p in quiet]
                ends = await app.consumer.highwaters(*tps)
                positions = {tp.partition: await app.consumer.position(tp) for tp in tps}
                await pipeline.declare_idle(
                    {tp.partition: int(o) for tp, o in ends.items()}, positions
                )
                await confirm()
        except Exception:
            log.exception("declaring idle partitions failed; retrying on the next tick")

    return app
