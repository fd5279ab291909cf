"""What the worker does with each batch, independent of Faust (app.py only wires it).

Data flow, in the order of the methods below:

    predictions batch -> parse (records.py) -> DLQ for rejects
                      -> per partition, per model version: RecordBatch -> PartitionWindows (stage 1)
                      -> closed partial sketches + watermarks -> partials topic (keyed by model)
    partials batch    -> ModelWindows (stage 2) -> merged window -> evaluate_window (the core)
                      -> drift events -> alerts topic;  window summary -> metrics topic

State changed by a batch is marked dirty; `Pipeline.checkpoint` writes every dirty partition
and model to the checkpoint topic (checkpoint.py). The shell (consumer.py) calls it on an
interval and on revoke/shutdown, confirms every output with the broker, and only then commits
the input offsets: committed offsets are never ahead of the checkpointed state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from driftline.config import Config
from driftline.detectors.batch import RecordBatch
from driftline.detectors.concept import ConceptDriftConfig, ConceptSettings
from driftline.detectors.estimation import expected_confusion_from_histogram
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.performance import binary_metrics, relative_drop, roc_auc_from_histograms
from driftline.detectors.profile import SCORE_BINS, ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import DriftThresholds
from driftline.sinks import prometheus as metrics
from driftline.streams.events import (
    estimated_performance_drop_event,
    operational_event,
    performance_drop_event,
    service_events,
    suppress_combined,
    window_events,
)
from driftline.streams.formats import label_decoder, prediction_decoder
from driftline.streams.labels import Outcome, PartitionLabels, PerformancePartial
from driftline.streams.outcomes import concept_event, load_concept_config, outcome_payloads
from driftline.streams.profiles import ProfileDirectory
from driftline.streams.windows import ClosedWindow, ModelWindows, PartitionWindows

log = logging.getLogger(__name__)

__all__ = ["Message", "Pipeline", "Topics", "record_key"]

Send = Callable[[str, bytes | None, bytes, Mapping[str, bytes] | None], Awaitable[None]]
LoadCheckpoints = Callable[[], Awaitable[dict[str, Any]]]
WATERMARK_INTERVAL_SECONDS = 1.0


class Message(Protocol):
    """The part of a Kafka message the pipeline reads (`consumer.KafkaMessage` fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


MAX_RECORDS_PER_MESSAGE = 1 << 16  # record keys hold 16 bits of the index in a message


def record_key(partition: int, offset: int, index: int) -> int:
    """A stable 64-bit identity per record: (partition, offset, index inside a batch message),
    12, 36 and 16 bits: unique for 4,096 partitions, 6.9e10 offsets per partition and 65,536
    records per message (a message of Kafka's default 1 MB holds at most ~17,000 valid
    records; a message with more is dead-lettered whole).

    Sketch samples are chosen by a hash of it, so the sample of a window does not depend on
    which worker read the record or how the stream was cut into batches.

    >>> record_key(1, 2, 3) == (1 << 52) | (2 << 16) | 3
    True
    >>> record_key(0, 0, 4096) != record_key(0, 1, 0)
    True
    """
    return ((partition & 0xFFF) << 52) | ((offset & 0xFFFFFFFFF) << 16) | (index & 0xFFFF)


Reject = tuple[str, str, int | None]  # kind, reason, index in the message (None: all of it)


@dataclass(frozen=True)
class Topics:
    predictions: str
    dlq: str
    partials: str
    alerts: str
    metrics: str
    checkpoints: str


class Pipeline:
    def __init__(
        self,
        config: Config,
        profiles: Mapping[tuple[str, str], ReferenceProfile],
        thresholds: DriftThresholds,
        topics: Topics,
        n_sources: int,
        send: Send,
        load_checkpoints: LoadCheckpoints,
        clock: Callable[[], float] = time.time,
        profile_directory: ProfileDirectory | None = None,
        concept: ConceptDriftConfig | None = None,
    ) -> None:
        self.config = config
        # concept-drift suites (`concept_drift` in the thresholds file): a bad key fails here
        self.concept = concept or load_concept_config(config.worker.thresholds_file)
        self.profiles = dict(profiles)
        self.models = sorted({model for model, _ in self.profiles})
        self._profile_directory = profile_directory  # new model versions, without a restart
        self._unprofiled: set[tuple[str, str]] = set()  # logged once each (bounded below)
        self.thresholds = thresholds
        self.topics = topics
        self.n_sources = n_sources
        self._send = send
        self._load_checkpoints = load_checkpoints
        self._clock = clock
        # built once: a joining format (oip) keeps its pending request/response halves in it
        self._predictions_in = prediction_decoder(config)
        self._labels_in = label_decoder(config)
        self._checkpoints: dict[str, Any] | None = None  # cache, reset on rebalance
        self.stage1: dict[int, PartitionWindows] = {}
        self.labels: dict[int, PartitionLabels] = {}
        self.stage2: dict[str, ModelWindows] = {}
        self._stage2_partition: dict[str, int] = {}
        self._watermark_sent_at: dict[int, float] = {}
        self._provisional_sent_at: dict[int, float] = {}
        self._last_record_at: dict[int, float] = {}  # assigned source partitions -> wall clock
        self._idle: set[int] = set()
        self._stage1_lock = asyncio.Lock()
        self._stage2_lock = asyncio.Lock()
        self._dirty_partitions: set[int] = set()  # changed since the last checkpoint
        self._poisoned: dict[tuple[str, int], list[tuple[int, int]]] = {}  # see `rewind`
        self.rewound: set[int] = set()  # partitions the shell must re-read (then clears it)
        self._dirty_models: set[str] = set()

    # -- rebalance ---------------------------------------------------------------------------

    def assign_partitions(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Newly assigned source partitions get `idle_timeout` of grace before being idle."""
        now = self._clock()
        for topic, partition in topic_partitions:
            if topic == self.topics.predictions:
                self._last_record_at.setdefault(partition, now)

    def forget_partitions(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Drop in-memory state of revoked partitions; whoever gets them restores the checkpoint."""
        for topic, partition in topic_partitions:
            if topic == self.topics.partials:
                for model in [m for m, p in self._stage2_partition.items() if p == partition]:
                    self.stage2.pop(model, None)
                    self._stage2_partition.pop(model, None)
                    self._dirty_models.discard(model)
            elif topic == self.topics.predictions:
                self.stage1.pop(partition, None)
                self._dirty_partitions.discard(partition)
                self.labels.pop(partition, None)
                self._last_record_at.pop(partition, None)
                self._idle.discard(partition)
        self._checkpoints = None

    def rewind(self, topic: str, partition: int, first: int, last: int) -> None:
        """A batch (offsets `first`..`last` of `topic`, source partition `partition`) failed
        half-way through phase 2 (a bug: bad records are rejected before). Drop the partition's
        in-memory state, so that the next batch restores its checkpoint: the caller re-reads
        predictions and labels of the partition from the committed offset. The messages of the
        failed batch are dead-lettered (`worker_error`) when they come again, the others are
        applied once: a batch counts entirely or not at all."""
        self._poisoned.setdefault((topic, partition), []).append((first, last))
        self.rewound.add(partition)
        self.stage1.pop(partition, None)
        self.labels.pop(partition, None)
        self._dirty_partitions.discard(partition)
        self._idle.discard(partition)
        self._checkpoints = None

    def _poisoned_offsets(self, topic: str, partition: int, fresh: list[Message]) -> set[int]:
        """Offsets in `fresh` of a batch that failed before (see `rewind`); forgets ranges
        that `fresh` goes past."""
        ranges = self._poisoned.get((topic, partition))
        if not ranges:
            return set()
        found = {m.offset for m in fresh if any(a <= m.offset <= b for a, b in ranges)}
        remaining = [(a, b) for a, b in ranges if b > fresh[-1].offset]
        if remaining:
            self._poisoned[(topic, partition)] = remaining
        else:
            del self._poisoned[(topic, partition)]
        return found

    async def _checkpoint(self, key: str) -> Any:
        if self._checkpoints is None:
            self._checkpoints = await self._load_checkpoints()
        return self._checkpoints.get(key)

    async def _partition_state(self, partition: int) -> PartitionWindows:
        state = self.stage1.get(partition)
        if state is None:
            windows = self.config.windows
            model_sizes = {model: float(size) for model, size in windows.model_sizes.items()}
            saved = await self._checkpoint(f"s1/{partition}")
            labels = self.config.labels

            def fresh_joins() -> PartitionLabels:
                return PartitionLabels(
                    partition,
                    float(windows.size_seconds),
                    labels.horizon_seconds,
                    labels.ttl_seconds,
                    labels.max_pending_per_partition,
                    model_sizes,
                    labels.max_pending_bytes_per_partition,
                    labels.max_checkpointed_pending,
                )

            joins = fresh_joins()
            restored, error = _restore_partition(partition, saved, joins)
            if restored is not None:
                state = restored
                log.info(
                    "partition %d: restored %d open windows, last offset %d",
                    partition,
                    len(state.open),
                    state.last_offset,
                )
            else:
                state = PartitionWindows(
                    partition,
                    float(windows.size_seconds),
                    float(windows.allowed_lateness_seconds),
                    model_sizes,
                )
                if saved is not None:  # unrestorable: start fresh from the committed offset
                    joins = fresh_joins()
                    await self._checkpoint_dropped("stage1", f"s1/{partition}", saved, error)
            # The config decides window sizes, also for a restored state: a changed size applies
            # to windows opened from now on (open ones keep their own end).
            state.size, state.model_sizes = float(windows.size_seconds), model_sizes
            self.labels[partition] = joins
            self.stage1[partition] = state
        return state

    # -- stage 1: predictions ------------------------------------------------------------------

    def add_profiles(self, profiles: Mapping[tuple[str, str], ReferenceProfile]) -> None:
        """Monitor more model versions from now on (their records so far were not windowed)."""
        self.profiles.update(profiles)
        self.models = sorted({model for model, _ in self.profiles})

    async def on_predictions(self, messages: list[Message]) -> None:
        async with self._stage1_lock:
            if self._profile_directory is not None:
                self.add_profiles(self._profile_directory.new_profiles(self._clock()))
            for partition, part in _by_partition(messages).items():
                self._last_record_at[partition] = self._clock()
                try:
                    await self._partition_batch(partition, part)
                except Exception:
                    log.exception(
                        "partition %d: %d predictions failed; re-reading from the last commit",
                        partition,
                        len(part),
                    )
                    self.rewind(part[0].topic, partition, part[0].offset, part[-1].offset)

    def _time_bounds(self) -> tuple[float, float]:
        """Accepted event times: (earliest, latest) by the worker's clock."""
        windows, now = self.config.windows, self._clock()
        age = windows.max_event_age_seconds
        return (now - age if age > 0 else -np.inf), now + windows.max_future_skew_seconds

    async def _partition_batch(self, partition: int, messages: list[Message]) -> None:
        """One partition's messages: phase 1 (parse, bounds, columns) touches no state and
        rejects bad records one by one; phase 2 applies what was accepted."""
        state = await self._partition_state(partition)
        last = state.last_offset
        fresh = [m for m in messages if m.offset > last]  # skip what the checkpoint has
        if not fresh:
            return
        topic = fresh[0].topic
        earliest, latest = self._time_bounds()
        # (model, model_version as sent) -> (records, record keys), in offset order
        groups: dict[tuple[str, Any], tuple[list[dict[str, Any]], list[int]]] = {}
        rejects: dict[int, list[Reject]] = {}  # by position in `fresh`
        partition_key = (partition & 0xFFF) << 52  # record_key, inlined: once per record
        poisoned = self._poisoned_offsets(topic, partition, fresh)
        for position, message in enumerate(fresh):
            if poisoned and message.offset in poisoned:
                rejects[position] = [("worker_error", _FAILED_BATCH, None)]
                continue
            valid, rejected = self._predictions_in.decode(message.value, message.headers)
            if rejected:
                rejects[position] = [(r.kind, r.reason, r.index) for r in rejected]
            if len(valid) > MAX_RECORDS_PER_MESSAGE:
                reason = f"{len(valid)} records in one message (at most {MAX_RECORDS_PER_MESSAGE})"
                rejects.setdefault(position, []).append(("invalid_shape", reason, None))
                continue
            message_key = partition_key | ((message.offset & 0xFFFFFFFFF) << 16)
            for i, record in enumerate(valid):
                t = record["timestamp"]
                if not earliest <= t <= latest:
                    rejects.setdefault(position, []).append(
                        ("timestamp_out_of_range", _time_reason(i, t, earliest, latest), i)
                    )
                    continue
                key = (record["model"], record["model_version"])
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ([], [])
                group[0].append(record)
                group[1].append(message_key | i)
        prepared: list[tuple[str, str, ReferenceProfile, RecordBatch, list[dict[str, Any]]]] = []
        accepted = 0
        for (model, version), (records, keys) in _versions_as_text(groups).items():
            profile = self.profiles.get((model, version))
            if profile is None:
                if (model, version) not in self._unprofiled and len(self._unprofiled) < 1000:
                    self._unprofiled.add((model, version))
                    log.warning(
                        "records of %s@%s have no reference profile in %s: counted "
                        "(driftline_records_without_reference_total), not windowed",
                        model,
                        version,
                        self.config.worker.reference_dir,
                    )
                state.unknown_records += len(records)
                metrics.RECORDS_WITHOUT_REFERENCE.inc(len(records))
                accepted += len(records)
                continue
            batch, records = _columns(records, keys, profile, fresh, rejects)
            if batch is not None:
                prepared.append((model, version, profile, batch, records))
                accepted += len(records)
        for position, found in sorted(rejects.items()):
            await self._dead_letter(fresh[position], found)
        metrics.RECORDS_PROCESSED.labels(topic).inc(accepted)
        # phase 2: apply (no record can fail here: what could is rejected above)
        joins = self.labels[partition]
        max_time = -np.inf
        outcomes: list[Outcome] = []
        for model, version, profile, batch, records in prepared:
            metrics.export_predictions(model, batch.latency_seconds, batch.error)
            late_before = state.late_records
            state.add(model, version, batch, profile)
            metrics.LATE_RECORDS.inc(state.late_records - late_before)
            outcomes += joins.add_columns(
                model,
                version,
                [str(r["prediction_id"]) for r in records],
                batch.event_time,
                batch.prediction.tolist(),
                batch.score,
            )
            # the watermark moves only with records accepted for a profiled model
            max_time = max(max_time, float(batch.event_time.max()))
        await self._send_outcomes(state, outcomes)
        state.advance(max_time, fresh[-1].offset)
        was_idle = partition in self._idle
        self._idle.discard(partition)
        await self._hand_on(state, force_watermark=was_idle)

    async def _hand_on(self, state: PartitionWindows, force_watermark: bool = False) -> None:
        """Send closed partials and (at most every second) the watermark; checkpoint."""
        partition = state.partition
        idle = partition in self._idle
        joins = self.labels[partition]
        closed = state.close_ready()
        for sketch in closed:
            payload = {
                "kind": "partial",
                "source": partition,
                "watermark": state.watermark,
                "idle": idle,
                "sketch": sketch.to_dict(),
            }
            await self._send(
                self.topics.partials, sketch.model.encode(), orjson.dumps(payload), None
            )
            joins.expect_window(sketch.model, sketch.model_version, sketch.window_start)
        for partial in joins.close_ready(state.watermark, state.open):
            payload = {
                "kind": "performance",
                "source": partition,
                "watermark": None,
                "idle": idle,
                "partial": partial.to_dict(),
                "final": True,
            }
            await self._send(
                self.topics.partials, partial.model.encode(), orjson.dumps(payload), None
            )
        now = self._clock()
        # provisional performance: at once when a data window closes, then as labels come
        # (at most every `labels.provisional_interval_seconds` per partition)
        interval = self.config.labels.provisional_interval_seconds
        if closed or now - self._provisional_sent_at.get(partition, -1e18) >= interval:
            provisional = joins.provisional_ready(state.open)
            if provisional:
                self._provisional_sent_at[partition] = now
            for partial in provisional:
                payload = {
                    "kind": "performance",
                    "source": partition,
                    "watermark": None,
                    "idle": idle,
                    "partial": partial.to_dict(),
                    "final": False,
                }
                await self._send(
                    self.topics.partials, partial.model.encode(), orjson.dumps(payload), None
                )
        if (
            force_watermark
            or now - self._watermark_sent_at.get(partition, -1e18) >= WATERMARK_INTERVAL_SECONDS
        ):
            self._watermark_sent_at[partition] = now
            wm = state.watermark if np.isfinite(state.watermark) else None
            for model in self.models:
                payload = {
                    "kind": "watermark",
                    "source": partition,
                    "watermark": wm,
                    "idle": idle,
                    "outcome_watermark": self._outcome_watermark(state),
                }
                await self._send(self.topics.partials, model.encode(), orjson.dumps(payload), None)
        await self._save_partition(partition)

    def _export_join_counts(self) -> None:
        states = self.labels.values()
        for outcome in ("joined", "evicted", "expired", "unmatched_labels", "late_labels"):
            metrics.LABEL_JOIN.labels(outcome).set(sum(getattr(s, outcome) for s in states))

    async def _save_partition(self, partition: int) -> None:
        self._dirty_partitions.add(partition)  # written by the next `checkpoint()`

    async def checkpoint(self) -> int:
        """Write the state of every partition and model changed since the last call to the
        checkpoint topic; returns how many were written. The caller confirms the sends with
        the broker before it commits any input offset."""
        async with self._stage1_lock, self._stage2_lock:
            partitions = sorted(self._dirty_partitions & self.stage1.keys())
            models = sorted(self._dirty_models & self.stage2.keys())
            self._dirty_partitions.clear()
            self._dirty_models.clear()
            if partitions:
                self._export_join_counts()
            for partition in partitions:
                value = {
                    **self.stage1[partition].to_dict(),
                    "labels": self.labels[partition].to_dict(),
                }
                await self._send(
                    self.topics.checkpoints, f"s1/{partition}".encode(), orjson.dumps(value), None
                )
            for model in models:
                saved = orjson.dumps(self.stage2[model].to_dict())
                await self._send(self.topics.checkpoints, f"s2/{model}".encode(), saved, None)
            return len(partitions) + len(models)

    # -- stage 1: labels -------------------------------------------------------------------------

    async def on_labels(self, messages: list[Message]) -> None:
        """Join labels to their predictions (same partition number: co-partitioned topics)."""
        async with self._stage1_lock:
            for partition, part in _by_partition(messages).items():
                try:
                    await self._partition_labels(partition, part)
                except Exception:
                    log.exception(
                        "partition %d: %d labels failed; re-reading from the last commit",
                        partition,
                        len(part),
                    )
                    self.rewind(part[0].topic, partition, part[0].offset, part[-1].offset)

    async def _partition_labels(self, partition: int, part: list[Message]) -> None:
        """One partition's labels; what `rewind` undoes if it fails half-way."""
        await self._partition_state(partition)
        joins = self.labels[partition]
        fresh = [m for m in part if m.offset > joins.last_label_offset]
        if not fresh:
            return
        labels = []
        earliest, latest = self._time_bounds()
        poisoned = self._poisoned_offsets(fresh[0].topic, partition, fresh)
        for message in fresh:
            if poisoned and message.offset in poisoned:
                await self._dead_letter(message, [("worker_error", _FAILED_BATCH, None)])
                continue
            valid, rejected = self._labels_in.decode(message.value, message.headers)
            rejects: list[Reject] = [(r.kind, r.reason, r.index) for r in rejected]
            for i, label in enumerate(valid):
                t = label["timestamp"]
                if earliest <= t <= latest:
                    labels.append(label)
                else:
                    reason = _time_reason(i, t, earliest, latest)
                    rejects.append(("timestamp_out_of_range", reason, i))
            if rejects:
                await self._dead_letter(message, rejects)
        metrics.LABELS_PROCESSED.inc(len(labels))
        await self._send_outcomes(self.stage1[partition], joins.add_labels(labels))
        joins.last_label_offset = fresh[-1].offset
        await self._hand_on(self.stage1[partition])  # label time may close performance

    def _outcome_watermark(self, state: PartitionWindows) -> float | None:
        lateness = float(self.config.windows.allowed_lateness_seconds)
        mark = self.labels[state.partition].outcome_watermark(state.watermark, lateness)
        return mark if np.isfinite(mark) else None

    async def _send_outcomes(self, state: PartitionWindows, outcomes: list[Outcome]) -> None:
        """Joined predictions to their model's stage 2 (concept drift, `outcomes.py`)."""
        idle, mark = state.partition in self._idle, self._outcome_watermark(state)
        for model, payload in outcome_payloads(
            outcomes, state.partition, state.watermark, idle, mark
        ):
            await self._send(self.topics.partials, model.encode(), payload, None)

    def assigned_partitions(self) -> list[int]:
        return sorted(self._last_record_at)

    def processed_offset(self, partition: int) -> int | None:
        """Next offset to process on a source partition (None before its state is loaded)."""
        state = self.stage1.get(partition)
        return None if state is None else state.last_offset + 1

    def quiet_partitions(self) -> list[int]:
        """Assigned source partitions that delivered no record for `idle_timeout` seconds."""
        now = self._clock()
        timeout = self.config.windows.idle_timeout_seconds
        return sorted(p for p, at in self._last_record_at.items() if now - at > timeout)

    async def declare_idle(
        self, end_offsets: Mapping[int, int], positions: Mapping[int, int | None]
    ) -> None:
        """Quiet partitions that are also caught up (nothing left to read: a quiet partition
        with a backlog is only slow) are idle: catch their watermark up with the worker's
        highest, hand on the windows that closes, and tell stage 2 they are idle."""
        async with self._stage1_lock:
            idle = []
            for p in self.quiet_partitions():
                state = self.stage1.get(p)
                processed = state.last_offset + 1 if state is not None else positions.get(p)
                if p in end_offsets and processed is not None and processed >= end_offsets[p]:
                    idle.append(p)
            await self._declare_idle(idle)

    async def _declare_idle(self, partitions: list[int]) -> None:
        if not partitions:
            return
        states = [await self._partition_state(p) for p in partitions]
        highest = max((s.watermark for s in self.stage1.values()), default=-np.inf)
        for state in states:
            newly_idle = state.partition not in self._idle
            self._idle.add(state.partition)
            before = state.max_event_time
            state.mark_idle(highest)
            if newly_idle or state.max_event_time != before:  # else nothing to hand on or save
                await self._hand_on(state, force_watermark=newly_idle)

    async def dead_letter(
        self, message: Message, kind: str, reason: str, index: int | None
    ) -> None:
        """Send one message to the DLQ for one reason (see `_dead_letter`)."""
        await self._dead_letter(message, [(kind, reason, index)])

    async def _dead_letter(self, message: Message, rejects: list[Reject]) -> None:
        """One DLQ message per bad source message, whatever the number of bad records in it.

        Headers: the first reject's kind, reason and index (`driftline.reason.kind`,
        `driftline.reason`, `driftline.source.index`), the source topic/partition/offset, every
        reject as JSON in `driftline.rejects` (truncated to 16 KiB, `driftline.rejects.count`
        says how many), and the payload's original size and SHA-256; the value is the payload,
        truncated to `worker.dlq_max_payload_bytes` (`driftline.payload.truncated`)."""
        kind, reason, index = rejects[0]
        payload = message.value or b""
        limit = self.config.worker.dlq_max_payload_bytes
        listed = orjson.dumps([{"index": i, "kind": k, "reason": r} for k, r, i in rejects])
        headers = {
            "driftline.reason.kind": kind.encode(),
            "driftline.reason": reason.encode()[:4096],
            "driftline.source.topic": message.topic.encode(),
            "driftline.source.partition": str(message.partition).encode(),
            "driftline.source.offset": str(message.offset).encode(),
            "driftline.rejects.count": str(len(rejects)).encode(),
            "driftline.rejects": listed[:16384],
            "driftline.payload.size": str(len(payload)).encode(),
            "driftline.payload.sha256": hashlib.sha256(payload).hexdigest().encode(),
            "driftline.payload.truncated": b"true" if len(payload) > limit else b"false",
        }
        if index is not None:
            headers["driftline.source.index"] = str(index).encode()
        for k, _, _ in rejects:
            metrics.DLQ_RECORDS.labels(message.topic, k).inc()
        await self._send(self.topics.dlq, message.key, payload[:limit], headers)

    # -- stage 2: partials ---------------------------------------------------------------------

    async def _model_state(self, model: str, partition: int) -> ModelWindows:
        state = self.stage2.get(model)
        if state is None:
            saved = await self._checkpoint(f"s2/{model}")
            state = ModelWindows(model, self.n_sources)
            if saved is not None:
                try:
                    state = ModelWindows.from_dict(saved)
                except Exception as exc:  # never stick: start fresh, windows re-fill
                    log.warning(
                        "model %s: stage-2 checkpoint dropped, it cannot be restored (%s: %s)",
                        model,
                        type(exc).__name__,
                        exc,
                    )
                    metrics.CHECKPOINTS_DROPPED.labels("stage2").inc()
                    error = f"{type(exc).__name__}: {exc}"
                    await self._checkpoint_dropped("stage2", f"s2/{model}", saved, error, model)
            self.stage2[model] = state
        self._stage2_partition[model] = partition
        return state

    async def _checkpoint_dropped(
        self, stage: str, key: str, saved: Any, error: str | None, model: str = ""
    ) -> None:
        """An `operational` event on the alerts topic: state was lost and re-fills from here."""
        detail = {"stage": stage, "checkpoint_key": key, "error": error, "checkpoint": saved}
        event = operational_event("checkpoint_dropped", key, detail, self._clock(), model)
        await self._send(self.topics.alerts, (model or key).encode(), orjson.dumps(event), None)
        metrics.DRIFT_EVENTS.labels("operational", "warning").inc()

    async def on_partials(self, messages: list[Message]) -> None:
        async with self._stage2_lock:
            changed: set[str] = set()
            touched: set[str] = set()
            for message in messages:
                model = (message.key or b"").decode()
                payload = orjson.loads(message.value or b"{}")
                state = await self._model_state(model, message.partition)
                source, watermark = int(payload["source"]), payload["watermark"]
                state.add_watermark(
                    source,
                    -np.inf if watermark is None else float(watermark),
                    bool(payload.get("idle")),
                )
                if payload["kind"] == "partial":
                    state.add_partial(source, payload["sketch"])
                    changed.add(model)
                elif payload["kind"] == "performance":
                    state.add_performance(
                        source, payload["partial"], bool(payload.get("final", True))
                    )
                    changed.add(model)
                elif payload["kind"] == "outcomes":
                    late = state.outcome_state().add(payload["outcomes"])
                    metrics.CONCEPT_OUTCOMES_LATE.inc(late)
                    changed.add(model)
                if "outcome_watermark" in payload:  # re-sent every second: not worth a save
                    state.outcome_state().add_watermark(source, payload["outcome_watermark"])
                touched.add(model)
            for model in sorted(touched):
                if await self._close_windows(model) | await self._concept_drift(model):
                    changed.add(model)
            for model in sorted(changed):
                await self._save_model(model)

    async def _concept_drift(self, model: str) -> bool:
        """Feed the outcomes every source's watermark has passed to the model versions'
        concept-drift suites, in order; one event per detection (`outcomes.py`). True if any
        outcome was fed."""
        outcomes = self.stage2[model].outcomes
        if outcomes is None:
            return False
        frontier = outcomes.frontier

        def suite(version: str) -> tuple[ConceptSettings, bool]:
            profile = self.profiles.get((model, version))
            regression = profile is not None and profile.prediction_values is not None
            return self.concept.for_model(model), regression

        for version, found in outcomes.release(suite):
            event = concept_event(model, version, found, self._clock())
            await self._send(self.topics.alerts, model.encode(), orjson.dumps(event), None)
            metrics.DRIFT_EVENTS.labels("concept_drift", event["severity"]).inc()
        return outcomes.frontier != frontier

    async def _save_model(self, model: str) -> None:
        self._dirty_models.add(model)  # written by the next `checkpoint()`

    async def _close_windows(self, model: str) -> bool:
        state = self.stage2[model]
        closed = state.close_ready()
        for window in closed:
            await self._publish_window(state, window)
        performance = state.close_performance_ready()
        for partials, n_records in performance:
            await self._publish_performance(state, partials, n_records, final=True)
        interval = self.config.labels.provisional_interval_seconds
        provisional = state.provisional_performance_ready(self._clock(), interval)
        for partials, n_records in provisional:
            await self._publish_performance(state, partials, n_records, final=False)
        return bool(closed or performance or provisional)

    async def _publish_performance(
        self,
        state: ModelWindows,
        partials: Mapping[int, Mapping[str, Any]],
        n_records: int,
        final: bool,
    ) -> None:
        """Realised performance of one window, provisional (`final: false`, the labels so far
        of the sources that reported) or final (every contributing source past the horizon).
        The metrics topic key and the PostgreSQL row key are the window's: a later summary
        replaces an earlier one."""
        sources = sorted(partials)
        merged = PerformancePartial.from_dict(partials[sources[0]])
        for source in sources[1:]:
            merged = merged.merge(PerformancePartial.from_dict(partials[source]))
        realised = dict(binary_metrics(merged.confusion, positive_label="1"))
        realised["roc_auc"] = roc_auc_from_histograms(
            merged.positive_scores, merged.negative_scores
        )
        profile = self.profiles.get((merged.model, merged.model_version))
        baseline = (profile.performance or {}).get("accuracy") if profile else None
        drop = relative_drop(realised["accuracy"], baseline)
        labelled = merged.confusion.n
        coverage = labelled / n_records if n_records else None
        summary = {
            "type": "performance_window",
            "model": merged.model,
            "model_version": merged.model_version,
            "window_start": merged.window_start,
            "window_end": merged.window_end,
            "sources": sources,
            "labelled": labelled,
            "label_coverage": coverage,
            "metrics": realised,
            "baseline_accuracy": baseline,
            "accuracy_drop": drop,
            "final": final,
        }
        if final:
            metrics.export_performance(merged.model, realised, coverage, baseline)
        else:
            metrics.export_provisional_performance(merged.model, realised["accuracy"], coverage)
        labels = self.config.labels
        event = performance_drop_event(
            model=merged.model,
            model_version=merged.model_version,
            window_start=merged.window_start,
            window_end=merged.window_end,
            accuracy=realised["accuracy"],
            baseline=baseline,
            drop=drop,
            limit=labels.max_accuracy_drop,
            labelled=labelled,
            coverage=coverage,
            final=final,
            min_coverage=labels.provisional_min_coverage,
            min_labelled=labels.provisional_min_labelled,
            detected_at=self._clock(),
        )
        if event is not None:
            # sent once per window; every later summary of it still names it (still degraded)
            if state.alert_performance_once(merged.model_version, merged.window_start):
                await self._send(
                    self.topics.alerts, merged.model.encode(), orjson.dumps(event), None
                )
                metrics.DRIFT_EVENTS.labels(event["type"], event["severity"]).inc()
            summary["event_ids"] = [event["event_id"]]
        await self._send(self.topics.metrics, merged.model.encode(), orjson.dumps(summary), None)

    async def _publish_window(self, state: ModelWindows, window: ClosedWindow) -> None:
        sketch = window.sketch
        carried = state.carry.pop(sketch.model_version, None)
        if carried is not None:  # too few records last time: merged forward into this window
            sketch = WindowSketch.from_dict(carried).merge(sketch)
        key = (sketch.model, sketch.model_version)
        if key not in self.profiles and self._profile_directory is not None:
            # stage 1 (maybe another worker) already windows a version this one has not seen
            self.add_profiles(self._profile_directory.new_profiles(self._clock(), force=True))
        profile = self.profiles.get(key)
        if profile is None:
            log.warning("window of %s@%s without its reference profile: not evaluated", *key)
            return
        thresholds = self.thresholds.for_model(sketch.model)
        evaluation = evaluate_window(profile, sketch, thresholds)
        if evaluation.status == "insufficient_samples":
            state.carry[sketch.model_version] = sketch.to_dict()
        detected_at = self._clock()
        events = window_events(evaluation, detected_at) + service_events(
            evaluation, thresholds, detected_at
        )
        estimate = _estimated_performance(sketch)
        baseline = (profile.performance or {}).get("accuracy")
        estimated_drop = relative_drop(estimate.get("accuracy"), baseline)
        estimated = estimated_performance_drop_event(
            evaluation,
            estimate,
            baseline,
            estimated_drop,
            self.config.labels.max_accuracy_drop,
            detected_at,
        )
        if estimated is not None:
            events.append(estimated)
        events = suppress_combined(events)  # output drift + CBPE drop: one page, not two
        for event in events:
            await self._send(self.topics.alerts, sketch.model.encode(), orjson.dumps(event), None)
            metrics.DRIFT_EVENTS.labels(event["type"], event["severity"]).inc()
        evaluated = evaluation.to_dict()
        summary = {
            "type": "window",
            "sources": list(window.sources),
            "event_ids": [e["event_id"] for e in events],
            "estimated_performance": estimate,
            "evaluation": evaluated,
        }
        if evaluation.status == "evaluated":
            metrics.export_window(evaluated, estimate.get("accuracy"))
        await self._send(
            self.topics.metrics,
            sketch.model.encode(),
            orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY),
            None,
        )
        metrics.WINDOWS_CLOSED.labels(evaluation.status).inc()
        log.info(
            "window %s/%s [%s, %s) closed: %d records, %s%s",
            sketch.model,
            sketch.model_version,
            sketch.window_start,
            sketch.window_end,
            sketch.n_records,
            evaluation.status,
            f", drift: {', '.join(evaluation.reasons)}" if evaluation.drifted else "",
        )


_SCORE_MIDPOINTS = (np.arange(SCORE_BINS) + 0.5) / SCORE_BINS


def _versions_as_text(
    groups: dict[tuple[str, Any], tuple[list[dict[str, Any]], list[int]]],
) -> dict[tuple[str, str], tuple[list[dict[str, Any]], list[int]]]:
    """Groups keyed by model_version as sent (3 or "3") merged under its text, offset order
    kept by merging on the record keys."""
    merged: dict[tuple[str, str], tuple[list[dict[str, Any]], list[int]]] = {}
    for (model, version), (records, keys) in groups.items():
        key = (model, str(version))
        if key not in merged:
            merged[key] = (records, keys)
            continue
        rows = sorted(zip(merged[key][1] + keys, merged[key][0] + records, strict=True))
        merged[key] = ([r for _, r in rows], [k for k, _ in rows])
    return merged


def _columns(
    records: list[dict[str, Any]],
    keys: list[int],
    profile: ReferenceProfile,
    messages: list[Message],
    rejects: dict[int, list[Reject]],
) -> tuple[RecordBatch | None, list[dict[str, Any]]]:
    """One model version's records as columns, and the records kept. A record the core cannot
    take (say probabilities as a list) is rejected on its own into `rejects` (by position of
    its message in `messages`); the others are kept."""
    try:
        batch = RecordBatch.from_records(
            records, profile.feature_types, record_keys=np.array(keys, dtype=np.uint64)
        )
        if _usable(batch):
            return batch, records
    except Exception:  # found record by record below
        pass
    position = {m.offset & 0xFFFFFFFFF: i for i, m in enumerate(messages)}
    kept, kept_keys = [], []
    for record, key in zip(records, keys, strict=True):
        try:
            if _usable(RecordBatch.from_records([record], profile.feature_types)):
                kept.append(record)
                kept_keys.append(key)
                continue
            reason = (
                "a number is out of range (finite values up to 1e15 are accepted), "
                "or 'prediction'/'error' is not a scalar"
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:500]
        index = key & 0xFFFF
        rejects.setdefault(position[(key >> 16) & 0xFFFFFFFFF], []).append(
            ("schema_violation", f"record {index}: {reason}", index)
        )
    if not kept:
        return None, []
    batch = RecordBatch.from_records(
        kept, profile.feature_types, record_keys=np.array(kept_keys, dtype=np.uint64)
    )
    return batch, kept


MAX_MAGNITUDE = 1e15  # larger numbers would overflow a window's sums of squares


def _usable(batch: RecordBatch) -> bool:
    """No value that would make a window's moments or sums infinite (NaN = missing is fine)."""
    columns = [*batch.numeric.values(), batch.event_time, batch.latency_seconds]
    if batch.score is not None:
        columns.append(batch.score)
    if batch.attributions is not None:
        columns.extend(batch.attributions.values())
    # +/-inf is how the core marks a value that is not a number (counted as invalid): keep it
    if any((np.abs(c[np.isfinite(c)]) > MAX_MAGNITUDE).any() for c in columns):
        return False
    # prediction and error are counted by value: scalars only (the schema says so)
    return all(type(v) in _SCALARS for v in batch.prediction.tolist()) and all(
        type(v) in _SCALARS for v in batch.error.tolist()
    )


_FAILED_BATCH = "the worker failed on the batch holding this message (see its log)"
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _time_reason(index: int, t: float, earliest: float, latest: float) -> str:
    if t > latest:
        bound = "later than now + windows.max_future_skew_seconds"
    else:
        bound = "earlier than now - windows.max_event_age_seconds"
    return f"record {index}: timestamp {t} is {bound}"


def _restore_partition(
    partition: int, saved: Mapping[str, Any] | None, joins: PartitionLabels
) -> tuple[PartitionWindows | None, str | None]:
    """A partition's state from its checkpoint; None (with a warning and a metric) if it has
    none or it cannot be restored (corrupt, written by another version): the partition then
    starts fresh from its committed offset instead of failing every batch."""
    if saved is None:
        return None, None
    try:
        state = PartitionWindows.from_dict(saved)
        if "labels" in saved:
            joins.restore(saved["labels"])
        return state, None
    except Exception as exc:
        log.warning(
            "partition %d: checkpoint dropped, it cannot be restored (%s: %s); starting fresh",
            partition,
            type(exc).__name__,
            exc,
        )
        metrics.CHECKPOINTS_DROPPED.labels("stage1").inc()
        return None, f"{type(exc).__name__}: {exc}"


def _by_partition(messages: list[Message]) -> dict[int, list[Message]]:
    """A batch's messages per partition, each partition's in offset order."""
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_partition[message.partition].append(message)
    return {p: sorted(part, key=lambda m: m.offset) for p, part in by_partition.items()}


def _estimated_performance(sketch: WindowSketch) -> dict[str, float | None]:
    """Label-free estimate (CBPE, expected confusion matrix) from the window's score
    histogram, assuming calibrated scores and a 0.5 decision threshold."""
    if sketch.score_n == 0:
        return {}
    confusion = expected_confusion_from_histogram(
        sketch.score_counts, _SCORE_MIDPOINTS, _SCORE_MIDPOINTS >= 0.5
    )
    return confusion.metrics()
