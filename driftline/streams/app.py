"""The Faust application: agents on the predictions topic, wired to parsing and the DLQ.

Faust gives us agents, consumer groups and producers; event-time windows stay in our own code
(Faust's windowed tables close on wall-clock time: see docs/DESIGN.md).
Data flow here: topic -> `take_events` batch -> `parse_predictions` -> accepted batch / DLQ.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter as Tally
from typing import Any

import faust
import orjson

from driftline.config import Config
from driftline.sinks import prometheus as metrics
from driftline.streams.records import parse_predictions

log = logging.getLogger(__name__)

__all__ = ["create_app"]


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


def create_app(config: Config) -> faust.App:
    """Build the Faust app and its agents from a validated config."""
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
    )
    predictions = app.topic(
        config.topics.predictions, key_serializer="raw", value_serializer="raw", internal=False
    )
    dlq = app.topic(config.topics.dlq, key_serializer="raw", value_serializer="raw", internal=False)
    summaries = app.topic(
        config.topics.metrics, key_serializer="raw", value_serializer="raw", internal=False
    )

    @app.agent(predictions)
    async def consume_predictions(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
        async for events in stream.take_events(
            worker.batch_size, within=worker.batch_timeout_seconds
        ):
            # Catch everything: an agent that raises still acks its events, losing the batch.
            try:
                await _process_batch(events, dlq, summaries)
            except Exception:
                log.exception("batch of %d events failed; sending it to the DLQ", len(events))
                for event in events:
                    await _to_dlq(
                        dlq, event, "worker_error", "worker error while processing the batch", None
                    )

    return app


async def _process_batch(events: Any, dlq: faust.TopicT, summaries: faust.TopicT) -> None:
    per_model: Tally[str] = Tally()
    per_partition: dict[int, list[int]] = {}
    accepted = 0
    for event in events:
        message = event.message
        valid, rejected = parse_predictions(message.value)
        for reject in rejected:
            await _to_dlq(dlq, event, reject.kind, reject.reason, reject.index)
        for record in valid:
            per_model[f"{record['model']}@{record['model_version']}"] += 1
        accepted += len(valid)
        span = per_partition.setdefault(message.partition, [0, message.offset, message.offset])
        span[0] += len(valid)
        span[1] = min(span[1], message.offset)
        span[2] = max(span[2], message.offset)
    topic = events[0].message.topic if events else ""
    metrics.RECORDS_PROCESSED.labels(topic).inc(accepted)
    summary = {
        "type": "batch_summary",
        "records": accepted,
        "messages": len(events),
        "per_model": dict(per_model),
        "partitions": {str(p): span for p, span in per_partition.items()},
        "processed_at": time.time(),
    }
    await summaries.send(key=b"batch_summary", value=orjson.dumps(summary))


async def _to_dlq(dlq: faust.TopicT, event: Any, kind: str, reason: str, index: int | None) -> None:
    message = event.message
    headers = {
        "driftline.reason.kind": kind.encode(),
        "driftline.reason": reason.encode(),
        "driftline.source.topic": message.topic.encode(),
        "driftline.source.partition": str(message.partition).encode(),
        "driftline.source.offset": str(message.offset).encode(),
    }
    if index is not None:
        headers["driftline.source.index"] = str(index).encode()
    metrics.DLQ_RECORDS.labels(message.topic, kind).inc()
    await dlq.send(key=message.key, value=message.value, headers=headers)
