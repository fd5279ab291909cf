"""Stage 1 of the pipeline: per source partition (predictions and labels are co-partitioned),
parse and check records (intake.py), window them (`PartitionWindows`), join labels to their
predictions (`PartitionLabels`), and hand closed partial windows, performance partials and
outcomes on to stage 2 over the partials topic (payloads.py, keyed by model).

    predictions -> parse, bounds, columns (intake.py) -> DLQ for rejects
                -> PartitionWindows + PartitionLabels -> partials topic
    labels      -> PartitionLabels (join) -> performance partials, outcomes -> partials topic

A batch counts entirely or not at all per partition: phase 1 (parse, check) touches no state,
phase 2 (apply) cannot fail on a record; a bug half-way rewinds the partition (`rewind`).

Longer than ~400 lines on purpose: the predictions path, the labels path and idleness share
one per-partition state and one rule (a batch counts entirely or not at all, `rewind`); split,
each half would need the other's internals. The pure parts are in intake.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.streams.context import Message, Shared
from driftline.streams.formats import label_decoder, prediction_decoder
from driftline.streams.formats.structs import field_values
from driftline.streams.intake import (
    FAILED_BATCH,
    MAX_RECORDS_PER_MESSAGE,
    Reject,
    by_partition,
    columns_of,
    dead_letter_headers,
    restore_partition,
    time_reason,
    versions_as_text,
)
from driftline.streams.labels import Outcome, PartitionLabels
from driftline.streams.outcomes import outcome_payloads
from driftline.streams.payloads import PartialMessage, PerformanceMessage, WatermarkMessage
from driftline.streams.segments import (
    JOIN_FIELD,
    JOIN_MARK,
    SEGMENT_MARK,
    JoinSegments,
    ReservoirSegments,
    restore_join_segments,
    restore_segments,
)
from driftline.streams.windows import PartitionWindows, WindowSizes

log = logging.getLogger(__name__)

__all__ = ["PartitionStage"]

WATERMARK_INTERVAL_SECONDS = 1.0
PIECE_BYTES = 1 << 19
"""A partition's predictions are decoded, put into columns and applied in pieces of about this
many message bytes (~1,100 records of ~470 bytes). Every step makes one pass over the records
per field: over a whole consumed batch (~17,000 records per partition with batch messages,
~20 MB of decoded objects) each pass missed the CPU caches, and the whole cost 1.5-2x as much
CPU per record as in pieces of 128 KiB-1 MiB (docs/BENCHMARKS.md). Each piece counts entirely
or not at all, as a batch did.

Per model version: the columns are built per (model, version) group, so a piece holds this many
bytes for each group the partition's previous piece had. With 100 models in one partition,
pieces of 512 KiB left groups of ~9 records, whose fixed costs (columns, window update, label
index) then took 1.8x the CPU per record of whole batches (docs/BENCHMARKS.md)."""


def _texts(ids: list[Any]) -> list[str]:
    """Prediction ids as text (ids may be sent as integers); a list of `str` as it is."""
    return ids if set(map(type, ids)) == _STR else list(map(str, ids))


_STR = {str}


def _pieces(messages: list[Message], limit: int | Callable[[], int]) -> Iterator[list[Message]]:
    """`messages` cut into runs of about `limit` bytes of values (at least one message each);
    a callable `limit` is asked again for each piece.

    >>> from types import SimpleNamespace as M
    >>> [len(p) for p in _pieces([M(value=b"x" * 40)] * 5, 100)]
    [3, 2]
    >>> limits = iter([40, 1000])
    >>> [len(p) for p in _pieces([M(value=b"x" * 40)] * 5, lambda: next(limits))]
    [1, 4]
    """
    limit_now = limit if callable(limit) else (lambda: limit)
    size, first, bound = 0, 0, limit_now()
    for i, message in enumerate(messages):
        size += len(message.value or b"")
        if size >= bound:
            yield messages[first : i + 1]
            size, first = 0, i + 1
            if first < len(messages):
                bound = limit_now()
    if first < len(messages):
        yield messages[first:] if first else messages


class PartitionStage:
    """Stage-1 state of the source partitions assigned to this worker."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # built once: a joining format (oip) keeps its pending request/response halves in it
        self._predictions_in = prediction_decoder(shared.config, for_windows=True)
        self._labels_in = label_decoder(shared.config)
        self._unprofiled: set[tuple[str, str]] = set()  # logged once each (bounded below)
        self.partitions: dict[int, PartitionWindows] = {}
        self.joins: dict[int, PartitionLabels] = {}
        self._watermark_sent_at: dict[int, float] = {}
        self._provisional_sent_at: dict[int, float] = {}
        self._last_record_at: dict[int, float] = {}  # assigned source partitions -> wall clock
        self._idle: set[int] = set()
        # (model, version) groups in each partition's last piece (`_piece_bytes`)
        self._piece_groups: dict[int, int] = {}
        self.lock = asyncio.Lock()
        self.dirty: set[int] = set()  # changed since the last checkpoint
        self.segments: dict[int, ReservoirSegments] = {}  # each partition's, on the topic
        self.join_segments: dict[int, JoinSegments] = {}  # each partition's join index, too
        self._poisoned: dict[tuple[str, int], list[tuple[int, int]]] = {}  # see `rewind`
        self.rewound: set[int] = set()  # partitions the shell must re-read (then clears it)

    def checkpoint_messages(self) -> Iterator[list[tuple[bytes, bytes | None]]]:
        """Per partition changed since the last call, one at a time (so that one partition's
        value is in memory at once), the messages that store it, in the order to send them:
        its new reservoir and join index segments, its head `s1/<p>` (chunked when large), then
        tombstones of the segments the head no longer references (streams/segments.py). The caller sends a
        partition's messages before asking for the next: the bookkeeping of its segments
        advances only then (a failed send leaves it as the topic has it)."""
        checkpoints = self.shared.checkpoints
        for p in sorted(self.dirty & self.partitions.keys()):
            self.dirty.discard(p)
            state, key = self.partitions[p], f"s1/{p}"
            state.flush()
            segments = self.segments.setdefault(p, ReservoirSegments(key))
            plan = segments.plan(state.open)
            joins = self.joins[p]
            join_segments = self.join_segments.setdefault(p, JoinSegments(key))
            join_plan = join_segments.plan(joins.pending, joins.max_checkpointed)
            labels = {**joins.to_dict(pending=False), JOIN_FIELD: join_plan.head}
            value = orjson.dumps({**state.to_dict(plan.sketch_dict), "labels": labels})
            written = plan.segments + join_plan.segments
            messages = [m for k, v in written for m in checkpoints.messages(k, v)]
            messages += checkpoints.messages(key, value)
            del value, written
            gone = plan.tombstones + join_plan.tombstones
            messages += [m for k in gone for m in checkpoints.tombstones(k)]
            yield messages
            segments.commit(plan)
            join_segments.commit(join_plan)

    async def _save_partition(self, partition: int) -> None:
        self.dirty.add(partition)  # written by the next checkpoint

    def assign_partitions(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Newly assigned source partitions get `idle_timeout` of grace before being idle."""
        now = self.shared.clock()
        for topic, partition in topic_partitions:
            if topic == self.shared.topics.predictions:
                self._last_record_at.setdefault(partition, now)

    def _drop_state(self, partition: int) -> None:
        """Drop a partition's in-memory state (windows, join index, what its checkpoints
        wrote): the next batch of it restores the checkpoint."""
        self.partitions.pop(partition, None)
        self.segments.pop(partition, None)
        self.join_segments.pop(partition, None)
        self.joins.pop(partition, None)
        self.dirty.discard(partition)
        self._idle.discard(partition)

    def forget(self, partition: int) -> None:
        """Drop a revoked source partition's state; whoever gets it restores the checkpoint."""
        self._drop_state(partition)
        self._last_record_at.pop(partition, None)
        self._piece_groups.pop(partition, None)

    def rewind(self, topic: str, partition: int, first: int, last: int) -> None:
        """A batch (offsets `first`..`last` of `topic`, source partition `partition`) failed
        half-way through phase 2 (a bug: bad records are rejected before). Drop the partition's
        in-memory state, so that the next batch restores its checkpoint: the caller re-reads
        predictions and labels of the partition from the committed offset. The messages of the
        failed batch are dead-lettered (`worker_error`) when they come again, the others are
        applied once: a batch counts entirely or not at all."""
        self._poisoned.setdefault((topic, partition), []).append((first, last))
        self.rewound.add(partition)
        self._drop_state(partition)
        self.shared.checkpoints.reset()

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

    async def _partition_state(self, partition: int) -> PartitionWindows:
        state = self.partitions.get(partition)
        if state is None:
            windows = self.shared.config.windows
            sizes = WindowSizes.from_config(windows)
            key = f"s1/{partition}"
            saved = await self.shared.checkpoints.get(key)
            on_topic = self.shared.checkpoints.under(key + SEGMENT_MARK)
            join_on_topic = self.shared.checkpoints.under(key + JOIN_MARK)
            labels = self.shared.config.labels

            def fresh_joins() -> PartitionLabels:
                return PartitionLabels(
                    partition,
                    sizes,
                    labels.horizon_seconds,
                    labels.ttl_seconds,
                    labels.max_pending_per_partition,
                    labels.max_pending_bytes_per_partition,
                    labels.max_checkpointed_pending,
                )

            joins = fresh_joins()
            try:  # the reservoirs from their segments (a checkpoint of an older version has none)
                whole, segments = restore_segments(key, saved, on_topic)
                whole, join_segments = restore_join_segments(key, whole, join_on_topic)
                restored, error = restore_partition(partition, whole, joins)
            except ValueError as exc:
                restored, error = None, f"{type(exc).__name__}: {exc}"
            if restored is None:  # what is on the topic is stale: tombstoned after the next head
                segments = ReservoirSegments(key, stale=sorted(on_topic))
                join_segments = JoinSegments(key, stale=sorted(join_on_topic))
            self.segments[partition] = segments
            self.join_segments[partition] = join_segments
            # in memory from here on
            self.shared.checkpoints.discard([key, *on_topic, *join_on_topic])
            if restored is not None:
                state = restored
                log.info(
                    "partition %d: restored %d open windows, last offset %d",
                    partition,
                    len(state.open),
                    state.last_offset,
                )
            else:
                state = PartitionWindows(partition, sizes, float(windows.allowed_lateness_seconds))
                if saved is not None:  # unrestorable: start fresh from the committed offset
                    joins = fresh_joins()
                    await self.shared.checkpoint_dropped("stage1", key, saved, error)
            # The config decides window sizes, also for a restored state: a changed size applies
            # to windows opened from now on (open ones keep their own end).
            state.sizes = sizes
            self.joins[partition] = joins
            self.partitions[partition] = state
        return state

    async def on_predictions(self, messages: list[Message]) -> None:
        async with self.lock:
            self.shared.monitored.refresh(self.shared.clock())
            for partition, part in by_partition(messages).items():
                self._last_record_at[partition] = self.shared.clock()
                limit = functools.partial(self._piece_bytes, partition)
                for piece in _pieces(part, limit):
                    await self._isolated("predictions", partition, piece, self._partition_batch)
                    if partition in self.rewound:  # re-read from the last commit: stop here
                        break

    def _piece_bytes(self, partition: int) -> int:
        return PIECE_BYTES * self._piece_groups.get(partition, 1)

    def _time_bounds(self) -> tuple[float, float]:
        """Accepted event times: (earliest, latest) by the worker's clock."""
        windows, now = self.shared.config.windows, self.shared.clock()
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
                rejects[position] = [("worker_error", FAILED_BATCH, None)]
                continue
            valid, rejected = self._predictions_in.decode(message.value, message.headers)
            if rejected:
                rejects[position] = [(r.kind, r.reason, r.index) for r in rejected]
            if len(valid) > MAX_RECORDS_PER_MESSAGE:
                reason = f"{len(valid)} records in one message (at most {MAX_RECORDS_PER_MESSAGE})"
                rejects.setdefault(position, []).append(("invalid_shape", reason, None))
                continue
            message_key = partition_key | ((message.offset & 0xFFFFFFFFF) << 16)
            if not valid:
                continue
            times, models, versions = field_values(valid, "timestamp", "model", "model_version")
            if (
                len(set(models)) == 1
                and len(set(versions)) == 1
                and earliest <= min(times)
                and max(times) <= latest
            ):
                # the usual message: one model version, every time in bounds (read in C)
                group = groups.get(key := (models[0], versions[0]))
                if group is None:
                    group = groups[key] = ([], [])
                group[0].extend(valid)
                group[1].extend(range(message_key, message_key + len(valid)))
                continue
            for i, (record, t, model, version) in enumerate(
                zip(valid, times, models, versions, strict=True)
            ):
                if not earliest <= t <= latest:
                    rejects.setdefault(position, []).append(
                        ("timestamp_out_of_range", time_reason(i, t, earliest, latest), i)
                    )
                    continue
                key = (model, version)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ([], [])
                group[0].append(record)
                group[1].append(message_key | i)
        self._piece_groups[partition] = max(1, len(groups))
        prepared: list[tuple[str, str, ReferenceProfile, RecordBatch, list[dict[str, Any]]]] = []
        accepted = 0
        for (model, version), (records, keys) in versions_as_text(groups).items():
            profile = self.shared.monitored.profiles.get((model, version))
            if profile is None:
                if (model, version) not in self._unprofiled and len(self._unprofiled) < 1000:
                    self._unprofiled.add((model, version))
                    log.warning(
                        "records of %s@%s have no reference profile in %s: counted "
                        "(driftline_records_without_reference_total), not windowed",
                        model,
                        version,
                        self.shared.config.worker.reference_dir,
                    )
                state.unknown_records += len(records)
                self.shared.metrics.records_without_reference.inc(len(records))
                accepted += len(records)
                continue
            batch, records = columns_of(records, keys, profile, fresh, rejects)
            if batch is not None:
                prepared.append((model, version, profile, batch, records))
                accepted += len(records)
        for position, found in sorted(rejects.items()):
            await self._dead_letter(fresh[position], found)
        self.shared.metrics.records_processed.labels(topic).inc(accepted)
        # phase 2: apply (no record can fail here: what could is rejected above)
        joins = self.joins[partition]
        max_time = -np.inf
        outcomes: list[Outcome] = []
        for model, version, profile, batch, records in prepared:
            self.shared.metrics.export_predictions(model, batch.latency_seconds, batch.error)
            late_before = state.late_records
            state.add(model, version, batch, profile)
            self.shared.metrics.late_records.inc(state.late_records - late_before)
            outcomes += joins.add_columns(
                model,
                version,
                _texts(field_values(records, "prediction_id")[0]),
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
        """Send closed partials, performance partials (final at the label horizon, provisional
        before it) and (at most every second) the watermark; mark the partition dirty."""
        partition = state.partition
        idle = partition in self._idle
        joins = self.joins[partition]
        partials = self.shared.topics.partials
        send = self.shared.send
        closed = state.close_ready()
        for sketch in closed:
            message = PartialMessage(partition, state.watermark, idle, sketch.to_dict())
            await send(partials, sketch.model.encode(), message.encode(), None)
            joins.expect_window(sketch.model, sketch.model_version, sketch.window_start)
        for partial in joins.close_ready(state.watermark, state.open):
            final = PerformanceMessage(partition, idle, partial.to_dict(), final=True)
            await send(partials, partial.model.encode(), final.encode(), None)
        now = self.shared.clock()
        # provisional performance: at once when a data window closes, then as labels come
        # (at most every `labels.provisional_interval_seconds` per partition)
        interval = self.shared.config.labels.provisional_interval_seconds
        if closed or now - self._provisional_sent_at.get(partition, -1e18) >= interval:
            provisional = joins.provisional_ready(state.open)
            if provisional:
                self._provisional_sent_at[partition] = now
            for partial in provisional:
                update = PerformanceMessage(partition, idle, partial.to_dict(), final=False)
                await send(partials, partial.model.encode(), update.encode(), None)
        if (
            force_watermark
            or now - self._watermark_sent_at.get(partition, -1e18) >= WATERMARK_INTERVAL_SECONDS
        ):
            self._watermark_sent_at[partition] = now
            mark = WatermarkMessage(
                partition, state.watermark, idle, self._outcome_watermark(state)
            ).encode()
            for model in self.shared.monitored.models:
                await send(partials, model.encode(), mark, None)
        await self._save_partition(partition)

    async def on_labels(self, messages: list[Message]) -> None:
        """Join labels to their predictions (same partition number: co-partitioned topics)."""
        async with self.lock:
            for partition, part in by_partition(messages).items():
                await self._isolated("labels", partition, part, self._partition_labels)

    async def _isolated(
        self,
        what: str,
        partition: int,
        part: list[Message],
        apply: Callable[[int, list[Message]], Awaitable[None]],
    ) -> None:
        """One partition's batch, applied by `apply`; if it fails, `rewind` has the shell re-read
        it from the last commit (the rest of the batch's partitions go on)."""
        try:
            await apply(partition, part)
        except Exception:
            log.exception(
                "partition %d: %d %s failed; re-reading from the last commit",
                partition,
                len(part),
                what,
            )
            self.rewind(part[0].topic, partition, part[0].offset, part[-1].offset)

    async def _partition_labels(self, partition: int, part: list[Message]) -> None:
        """One partition's labels; what `rewind` undoes if it fails half-way."""
        await self._partition_state(partition)
        joins = self.joins[partition]
        fresh = [m for m in part if m.offset > joins.last_label_offset]
        if not fresh:
            return
        labels = []
        earliest, latest = self._time_bounds()
        poisoned = self._poisoned_offsets(fresh[0].topic, partition, fresh)
        for message in fresh:
            if poisoned and message.offset in poisoned:
                await self._dead_letter(message, [("worker_error", FAILED_BATCH, None)])
                continue
            valid, rejected = self._labels_in.decode(message.value, message.headers)
            rejects: list[Reject] = [(r.kind, r.reason, r.index) for r in rejected]
            for i, label in enumerate(valid):
                t = label["timestamp"]
                if earliest <= t <= latest:
                    labels.append(label)
                else:
                    reason = time_reason(i, t, earliest, latest)
                    rejects.append(("timestamp_out_of_range", reason, i))
            if rejects:
                await self._dead_letter(message, rejects)
        self.shared.metrics.labels_processed.inc(len(labels))
        await self._send_outcomes(self.partitions[partition], joins.add_labels(labels))
        joins.last_label_offset = fresh[-1].offset
        await self._hand_on(self.partitions[partition])  # label time may close performance

    def _outcome_watermark(self, state: PartitionWindows) -> float | None:
        lateness = float(self.shared.config.windows.allowed_lateness_seconds)
        mark = self.joins[state.partition].outcome_watermark(state.watermark, lateness)
        return mark if np.isfinite(mark) else None

    async def _send_outcomes(self, state: PartitionWindows, outcomes: list[Outcome]) -> None:
        """Joined predictions to their model's stage 2 (concept drift, `outcomes.py`)."""
        idle, mark = state.partition in self._idle, self._outcome_watermark(state)
        for model, payload in outcome_payloads(
            outcomes, state.partition, state.watermark, idle, mark
        ):
            await self.shared.send(self.shared.topics.partials, model.encode(), payload, None)

    def assigned_partitions(self) -> list[int]:
        return sorted(self._last_record_at)

    def processed_offset(self, partition: int) -> int | None:
        """Next offset to process on a source partition (None before its state is loaded)."""
        state = self.partitions.get(partition)
        return None if state is None else state.last_offset + 1

    def quiet_partitions(self) -> list[int]:
        """Assigned source partitions that delivered no record for `idle_timeout` seconds."""
        now = self.shared.clock()
        timeout = self.shared.config.windows.idle_timeout_seconds
        return sorted(p for p, at in self._last_record_at.items() if now - at > timeout)

    async def declare_idle(
        self, end_offsets: Mapping[int, int], positions: Mapping[int, int | None]
    ) -> None:
        """Quiet partitions that are also caught up (nothing left to read: a quiet partition
        with a backlog is only slow) are idle: catch their watermark up with the worker's
        highest, hand on the windows that closes, and tell stage 2 they are idle."""
        async with self.lock:
            idle = []
            for p in self.quiet_partitions():
                state = self.partitions.get(p)
                processed = state.last_offset + 1 if state is not None else positions.get(p)
                if p in end_offsets and processed is not None and processed >= end_offsets[p]:
                    idle.append(p)
            await self._declare_idle(idle)

    async def _declare_idle(self, partitions: list[int]) -> None:
        if not partitions:
            return
        states = [await self._partition_state(p) for p in partitions]
        highest = max((s.watermark for s in self.partitions.values()), default=-np.inf)
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
        """One DLQ message per bad source message, whatever the number of bad records in it
        (headers: `intake.dead_letter_headers`); the value is the payload, truncated to
        `worker.dlq_max_payload_bytes`."""
        payload = message.value or b""
        limit = self.shared.config.worker.dlq_max_payload_bytes
        headers = dead_letter_headers(message, rejects, limit)
        for k, _, _ in rejects:
            self.shared.metrics.dlq_records.labels(message.topic, k).inc()
        await self.shared.send(self.shared.topics.dlq, message.key, payload[:limit], headers)
