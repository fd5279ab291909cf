"""Stage 1's checks of incoming records, pure functions (no state, no I/O): record identity,
grouping by model version, columns the core can take, event-time bounds, dead-letter headers,
restoring a partition's checkpoint."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.sinks.deadletter import dead_letter_headers as sinks_dead_letter_headers
from driftline.streams.context import Message
from driftline.streams.labels import PartitionLabels
from driftline.streams.windows import PartitionWindows

log = logging.getLogger(__name__)

__all__ = [
    "FAILED_BATCH",
    "MAX_RECORDS_PER_MESSAGE",
    "Reject",
    "by_partition",
    "columns_of",
    "dead_letter_headers",
    "record_key",
    "restore_partition",
    "time_reason",
    "versions_as_text",
]

MAX_RECORDS_PER_MESSAGE = 1 << 16  # record keys hold 16 bits of the index in a message
Reject = tuple[str, str, int | None]  # kind, reason, index in the message (None: all of it)


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


def versions_as_text(
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


def columns_of(
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
    # (all columns at once: a few numpy calls per batch instead of four per column)
    magnitude = np.abs(np.concatenate(columns))
    if (np.isfinite(magnitude) & (magnitude > MAX_MAGNITUDE)).any():
        return False
    # prediction and error are counted by value: scalars only (the schema says so)
    # (a set of the types, built in C: no Python step per record)
    return set(map(type, batch.prediction)) <= _SCALARS and set(map(type, batch.error)) <= _SCALARS


FAILED_BATCH = "the worker failed on the batch holding this message (see its log)"
_SCALARS = frozenset({str, int, float, bool, type(None)})


def time_reason(index: int, t: float, earliest: float, latest: float) -> str:
    if t > latest:
        bound = "later than now + windows.max_future_skew_seconds"
    else:
        bound = "earlier than now - windows.max_event_age_seconds"
    return f"record {index}: timestamp {t} is {bound}"


def restore_partition(
    partition: int, saved: Mapping[str, Any] | None, joins: PartitionLabels
) -> tuple[PartitionWindows | None, str | None]:
    """A partition's state from its checkpoint; None if it has none, or (with a warning and
    the error) if it cannot be restored (corrupt, written by another version): the partition
    then starts fresh from its committed offset instead of failing every batch (the caller
    reports it: `Shared.checkpoint_dropped`)."""
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
        return None, f"{type(exc).__name__}: {exc}"


def by_partition(messages: list[Message]) -> dict[int, list[Message]]:
    """A batch's messages per partition, each partition's in offset order."""
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_partition[message.partition].append(message)
    return {p: sorted(part, key=lambda m: m.offset) for p, part in by_partition.items()}


def dead_letter_headers(message: Message, rejects: list[Reject], limit: int) -> dict[str, bytes]:
    """Headers of the DLQ copy of a bad message: the first reject's kind, reason and index
    (`driftline.reason.kind`, `driftline.reason`, `driftline.source.index`), the source
    topic/partition/offset, every reject as JSON in `driftline.rejects` (truncated to 16 KiB,
    `driftline.rejects.count` says how many), and the payload's original size and SHA-256
    (`driftline.payload.truncated`: longer than `limit`)."""
    kind, reason, index = rejects[0]
    payload = message.value or b""
    listed = orjson.dumps([{"index": i, "kind": k, "reason": r} for k, r, i in rejects])
    headers = sinks_dead_letter_headers(
        kind, reason, message.topic, message.partition, message.offset, index,
        original=message.headers,
    )  # fmt: skip
    headers |= {
        "driftline.rejects.count": str(len(rejects)).encode(),
        "driftline.rejects": listed[:16384],
        "driftline.payload.size": str(len(payload)).encode(),
        "driftline.payload.sha256": hashlib.sha256(payload).hexdigest().encode(),
        "driftline.payload.truncated": b"true" if len(payload) > limit else b"false",
    }
    return headers
