"""Incremental checkpoints of the window reservoirs: append-only segments per open window.

A window's reservoir (up to 2,000 rows x every numeric feature) is most of a stage-1
checkpoint, and between two checkpoints only a few of its rows change. So the partition's head
value (`s1/<p>`) carries every open window without its reservoir, plus the keys of the
*segments* that hold the reservoir's rows (``reservoir_segments``), each segment an ordinary
checkpoint value under its own key `s1/<p>#seg/<id>` (chunked like any value when large). A
checkpoint appends one segment per window holding the rows that entered its reservoir since the
window's last segment (found by their keys), writes the segments first and the head last, then
tombstones what the head no longer references: the segments of windows that closed, of windows
whose segments were consolidated, and (once, after a restore) segments left on the topic that no
head references (a crash between segments and head, another worker's).

Why it is exact: the reservoir is the k smallest keys of every record the window has seen (its
keys are distinct). Every row that was in the reservoir at a checkpoint is in a segment (the
segments written so far hold exactly the rows of the reservoir at each checkpoint), so the
union U of the segments satisfies current reservoir ⊆ U ⊆ records seen, and the k smallest
keys of U are the current reservoir, bit for bit (`WindowSketch.with_reservoir_union`). The
segments of a window are consolidated into one (the current reservoir) when they hold more than
`MAX_ROWS_FACTOR` x k rows or `MAX_SEGMENTS` segments, which bounds what is read back.

A window whose reservoir holds two equal keys (never with record keys in practice: 2^-53 per
pair) is written whole inside the head, as before segments existed, and so is every window of a
checkpoint written by an older version: readers take both forms.

The label join's index of waiting predictions (`joinindex.PendingIndex`, up to
`labels.max_checkpointed_pending` newest entries in a checkpoint) is checkpointed the same way
(`JoinSegments`): segments `s1/<p>#join/<id>` of the entries that entered the checkpointed
newest-N since the last checkpoint (column-wise, as `PendingIndex.to_columns`, with each
entry's arrival number), and in the head (`labels.pending_segments`) per segment its key and a
mask of its entries still in the checkpoint. An entry joined, evicted, expired, replaced or
pushed out of the newest N is cleared from its mask; a segment with none left is tombstoned;
an entry that comes back into the newest N (newer ones were joined) is written again. Restored,
the masked entries of all segments sorted by arrival number are the newest N, bit for bit. The
segments are consolidated into one when they hold more than `MAX_ROWS_FACTOR` x the
checkpointed entries or there would be more than `MAX_SEGMENTS`.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from driftline.detectors.sketch import WindowSketch
from driftline.streams.joinindex import PendingIndex

__all__ = [
    "EDGES_FIELD",
    "JOIN_FIELD",
    "JOIN_MARK",
    "MAX_ROWS_FACTOR",
    "MAX_SEGMENTS",
    "SEGMENTS_FIELD",
    "SEGMENT_MARK",
    "JoinSegments",
    "ReservoirSegments",
    "SegmentPlan",
    "restore_join_segments",
    "restore_segments",
]

SEGMENT_MARK = "#seg/"  # in the keys of segments: `<head key>#seg/<id>`
SEGMENTS_FIELD = "reservoir_segments"  # in a window of the head: its segment keys, in order
EDGES_FIELD = "numeric_edges"  # in a window of the head: the key of its bin edges' segment
EDGE_FIELDS = ("cuts", "fine_cuts")  # of each numeric feature, moved to that segment
MAX_ROWS_FACTOR = 2.0  # consolidate a window's segments above this many reservoirs of rows
MAX_SEGMENTS = 32  # ... or above this many segments
JOIN_MARK = "#join/"  # in the keys of the join index's segments: `<head key>#join/<id>`
JOIN_FIELD = "pending_segments"  # in the head's labels: the join index's segments and masks

WindowKey = tuple[str, str, float]  # (model, model version, window start), as in windows.py


@dataclass(frozen=True)
class WindowSegments:
    """The segments of one open window on the topic: their keys in order, their rows in all,
    and the sorted keys of those rows (what the next segment leaves out)."""

    keys: tuple[str, ...] = ()
    rows: int = 0
    written: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    edges: str | None = None  # the key of the segment with its bin edges


@dataclass
class SegmentPlan:
    """One checkpoint of a partition's reservoirs: the segments to send before the head, the
    sketch of each window as the head stores it, the keys to tombstone after the head, and the
    bookkeeping once the head is sent (`ReservoirSegments.commit`)."""

    segments: list[tuple[str, bytes]]
    sketches: dict[WindowKey, dict[str, Any]]
    tombstones: list[str]
    windows: dict[WindowKey, WindowSegments]
    edges: set[str]

    def sketch_dict(self, sketch: WindowSketch) -> dict[str, Any]:
        """The head's form of an open window (for `PartitionWindows.to_dict`)."""
        return self.sketches[(sketch.model, sketch.model_version, sketch.window_start)]


def _consolidate(segments: int, rows: int, live: int) -> bool:
    """Whether a window's (or a join index's) segments, with the one about to be appended,
    are to be replaced by one segment of what is live now: above `MAX_SEGMENTS` segments or
    `MAX_ROWS_FACTOR` x the `live` rows (the reservoir's size, the checkpointed entries).

    >>> _consolidate(32, 10, 10), _consolidate(3, 4_001, 2_000), _consolidate(3, 4_000, 2_000)
    (False, True, False)
    >>> _consolidate(33, 10, 10)
    True
    """
    return segments > MAX_SEGMENTS or rows > MAX_ROWS_FACTOR * live


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class ReservoirSegments:
    """The reservoir segments of one partition's open windows on the checkpoint topic.

    >>> from driftline.detectors.batch import RecordBatch
    >>> from driftline.detectors.profile import ReferenceProfile
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.from_columns({"x": rng.normal(size=100)},
    ...                                         model="m", model_version="1", bins=4)
    >>> sketch = WindowSketch.empty(profile, 0.0, 60.0, reservoir_size=4)
    >>> def add(n):
    ...     sketch.update(RecordBatch({"x": rng.normal(size=n)}, {}, np.zeros(n),
    ...                               np.array(["a"] * n, dtype=object)))
    >>> log, topic = ReservoirSegments("s1/0"), {}
    >>> for n in (3, 2, 10):
    ...     add(n)
    ...     plan = log.plan({("m", "1", 0.0): sketch})
    ...     topic.update({k: orjson.loads(v) for k, v in plan.segments})
    ...     head = {"open": [plan.sketch_dict(sketch)]}
    ...     log.commit(plan)
    >>> len(head["open"][0]["reservoir_segments"]), len(topic)  # and one of bin edges
    (3, 4)
    >>> restored, _ = restore_segments("s1/0", head, topic)
    >>> again = WindowSketch.from_dict(restored["open"][0])
    >>> bool((again.reservoir_keys == sketch.reservoir_keys).all())
    True
    """

    head: str
    windows: dict[WindowKey, WindowSegments] = field(default_factory=dict)
    edges: set[str] = field(default_factory=set)
    """Keys of the bin-edge segments on the topic (each referenced by an open window)."""
    stale: list[str] = field(default_factory=list)
    """Segment keys on the topic that no head of this partition references: tombstoned after
    the next head."""

    def plan(
        self,
        open_windows: Mapping[WindowKey, WindowSketch],
        new_id: Callable[[], str] = _new_id,
    ) -> SegmentPlan:
        """What the next checkpoint of these open windows (their rows flushed) writes."""
        segments: list[tuple[str, bytes]] = []
        sketches: dict[WindowKey, dict[str, Any]] = {}
        tombstones = list(self.stale)
        windows: dict[WindowKey, WindowSegments] = {}
        written_edges = set(self.edges)
        for key, sketch in open_windows.items():
            before = self.windows.get(key, WindowSegments())
            keys = sketch.reservoir_keys
            ordered = keys if bool(np.all(keys[1:] >= keys[:-1])) else np.sort(keys)
            if bool(np.any(ordered[1:] == ordered[:-1])):
                sketches[key] = sketch.to_dict()  # equal keys: the union would be ambiguous
                tombstones += before.keys
                continue
            window = before
            new = ~_found(keys, before.written)
            n_new = int(new.sum())
            if n_new:
                k = sketch.reservoir_size
                if _consolidate(len(before.keys) + 1, before.rows + n_new, k):
                    tombstones += before.keys  # consolidated: one segment, the reservoir now
                    before = WindowSegments(edges=before.edges)
                    new[:] = True
                segment = sketch.reservoir_segment(before.written)
                assert segment is not None  # new rows exist
                segment_key = f"{self.head}{SEGMENT_MARK}{new_id()}"
                segments.append((segment_key, orjson.dumps(segment)))
                window = WindowSegments(
                    (*before.keys, segment_key),
                    before.rows + int(new.sum()),
                    np.sort(np.concatenate([before.written, keys[new]])),  # disjoint
                    before.edges,
                )
            edges_key = window.edges
            if edges_key is None or edges_key not in written_edges:
                value = orjson.dumps(sketch.numeric_edges())  # content-addressed, once
                edges_key = (
                    f"{self.head}{SEGMENT_MARK}edges-{hashlib.sha256(value).hexdigest()[:32]}"
                )
                window = replace(window, edges=edges_key)
                if edges_key not in written_edges:
                    segments.append((edges_key, value))
                    written_edges.add(edges_key)
            windows[key] = window
            sketches[key] = {
                **sketch.to_dict(reservoir=False, edges=False),
                SEGMENTS_FIELD: list(window.keys),
                EDGES_FIELD: edges_key,
            }
        for key, gone in self.windows.items():
            if key not in windows:
                tombstones += gone.keys  # closed (handed on), dropped, or stored whole
        edges_used = {w.edges for w in windows.values() if w.edges is not None}
        tombstones += sorted(written_edges - edges_used)
        return SegmentPlan(segments, sketches, tombstones, windows, edges_used)

    def commit(self, plan: SegmentPlan) -> None:
        """The plan's segments, head and tombstones are sent (in that order)."""
        self.windows = plan.windows
        self.edges = plan.edges
        self.stale = []

    def keys(self) -> Iterable[str]:
        """Every segment key this partition's head references."""
        for window in self.windows.values():
            yield from window.keys
        yield from self.edges


def _found(keys: NDArray[Any], written: NDArray[Any]) -> NDArray[np.bool_]:
    """Which of ``keys`` are in ``written`` (sorted): `np.isin` in one binary search.

    >>> _found(np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.5, 0.9])).tolist()
    [False, True, True]
    """
    if written.size == 0:
        return np.zeros(keys.size, dtype=bool)
    at = np.minimum(np.searchsorted(written, keys), written.size - 1)
    found: NDArray[np.bool_] = written[at] == keys
    return found


def _with_edges(d: Mapping[str, Any], edges: Mapping[str, Any]) -> dict[str, Any]:
    numeric = {name: {**feature, **edges[name]} for name, feature in d["numeric"].items()}
    return {**d, "numeric": numeric}


def restore_segments(
    head: str, saved: Mapping[str, Any] | None, on_topic: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, ReservoirSegments]:
    """A stage-1 checkpoint value with every window's reservoir reassembled from its segments
    (``on_topic``: the decoded segment values of this head on the topic), and the bookkeeping
    that continues them; windows stored whole (older checkpoints) pass as they are. Raises
    ValueError when a listed segment is missing or damaged (the caller drops the checkpoint)."""
    if saved is None:
        return None, ReservoirSegments(head, stale=sorted(on_topic))
    opened: list[Any] = []
    windows: dict[WindowKey, WindowSegments] = {}
    try:
        for window in saved["open"]:
            listed = window.get(SEGMENTS_FIELD)
            if listed is None:
                opened.append(window)
                continue
            edges = window[EDGES_FIELD]
            missing = [k for k in [*listed, edges] if k not in on_topic]
            if missing:
                raise ValueError(f"{len(missing)} of {len(listed) + 1} segments missing")
            plain = {k: v for k, v in window.items() if k not in (SEGMENTS_FIELD, EDGES_FIELD)}
            plain = _with_edges(plain, on_topic[edges])
            whole, written = WindowSketch.with_reservoir_union(plain, [on_topic[k] for k in listed])
            opened.append(whole)
            key = (
                str(window["model"]),
                str(window["model_version"]),
                float(window["window_start"]),
            )
            windows[key] = WindowSegments(
                tuple(map(str, listed)), len(written), written, str(edges)
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"reservoir segments: {type(exc).__name__}: {exc}") from exc
    restored = ReservoirSegments(head, windows, {w.edges for w in windows.values() if w.edges})
    referenced = set(restored.keys())
    restored.stale = sorted(k for k in on_topic if k not in referenced)
    return {**saved, "open": opened}, restored


# -- the label join's index ------------------------------------------------------------------


@dataclass(frozen=True)
class JoinSegment:
    """One segment of the join index on the topic: its key, the arrival numbers of its
    entries (increasing) and which of them the head lists as checkpointed."""

    key: str
    seqs: NDArray[np.int64]
    live: NDArray[np.bool_]


@dataclass
class JoinPlan:
    """One checkpoint of a partition's join index: the segments to send before the head, the
    head's `labels.pending_segments`, the keys to tombstone after the head, and the segments
    on the topic once the head is sent (`JoinSegments.commit`)."""

    segments: list[tuple[str, bytes]]
    head: list[dict[str, Any]]
    tombstones: list[str]
    parts: list[JoinSegment]


def _finder(written: NDArray[np.int64]) -> Callable[[NDArray[np.int64]], NDArray[np.bool_]]:
    """`_found` for arrival numbers, against ``written`` (sorted, unique) many times: by a table
    over its range when that is dense (a checkpoint's newest entries: contiguous but for the
    joined ones), several times faster than a binary search per value.

    >>> _finder(np.array([5, 6, 9]))(np.array([3, 5, 9, 12])).tolist()
    [False, True, True, False]
    """
    if not written.size:
        return lambda values: np.zeros(values.size, dtype=bool)
    low, high = int(written[0]), int(written[-1])
    if high - low + 1 > 8 * written.size:
        return lambda values: _found(values, written)
    table = np.zeros(high - low + 1, dtype=bool)
    table[written - low] = True

    def found(values: NDArray[np.int64]) -> NDArray[np.bool_]:
        inside = (values >= low) & (values <= high)
        result = np.zeros(values.size, dtype=bool)
        result[inside] = table[values[inside] - low]
        return result

    return found


def _mask_text(live: NDArray[np.bool_]) -> str | None:
    """A segment's mask in the head: None when every entry is in, else base64 of its bits."""
    return None if bool(live.all()) else base64.b64encode(np.packbits(live).tobytes()).decode()


def _mask_of(text: str | None, count: int) -> NDArray[np.bool_]:
    if text is None:
        return np.ones(count, dtype=bool)
    bits = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if bits.size != -(-count // 8):
        raise ValueError("join index segment: mask of the wrong length")
    return np.unpackbits(bits, count=count).astype(bool)


@dataclass
class JoinSegments:
    """The join index's segments of one partition on the checkpoint topic.

    >>> index = PendingIndex()
    >>> code = index.code_of("m", "1")
    >>> def add(*ids):
    ...     n = len(ids)
    ...     index.append(code, list(ids), np.zeros(n), ["1"] * n, np.full(n, 0.5), np.zeros(n))
    >>> log, topic = JoinSegments("s1/0"), {}
    >>> for step in (["a", "b", "c"], ["d"]):
    ...     add(*step)
    ...     if step == ["d"]:
    ...         _ = index.take([index.pop_slot("b")])  # joined
    ...     plan = log.plan(index, limit=3)
    ...     topic.update({k: orjson.loads(v) for k, v in plan.segments})
    ...     head = {"pending_segments": plan.head}
    ...     log.commit(plan)
    >>> restored, _ = restore_join_segments("s1/0", {"labels": head}, topic)
    >>> again = PendingIndex()
    >>> again.restore_columns(restored["labels"]["pending"])
    >>> list(again), len(topic)
    (['a', 'c', 'd'], 2)
    """

    head: str
    parts: list[JoinSegment] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    """Join segment keys on the topic that no head of this partition references."""

    def plan(
        self, index: PendingIndex, limit: int, new_id: Callable[[], str] = _new_id
    ) -> JoinPlan:
        """What the next checkpoint of the newest `limit` entries of `index` writes."""
        slots = index.newest_slots(limit)
        seqs = index.seqs(slots)  # increasing
        tombstones = list(self.stale)
        kept: list[JoinSegment] = []
        held = 0  # entries in the kept segments, checkpointed or not
        checkpointed = _finder(seqs)
        for part in self.parts:
            live = checkpointed(part.seqs)  # joined, evicted, pushed out of the newest N: out
            if not live.any():
                tombstones.append(part.key)
                continue
            kept.append(JoinSegment(part.key, part.seqs, live))
            held += part.seqs.size
        if kept:
            written = np.concatenate([p.seqs[p.live] for p in kept])
            new = ~_finder(np.sort(written, kind="stable"))(seqs)
        else:
            new = np.ones(seqs.size, dtype=bool)
        n_new = int(new.sum())
        if kept and _consolidate(len(kept) + (n_new > 0), held + n_new, seqs.size):
            tombstones += [p.key for p in kept]  # consolidated: one segment, the checkpoint now
            kept, new, n_new = [], np.ones(seqs.size, dtype=bool), seqs.size
        segments: list[tuple[str, bytes]] = []
        if n_new:
            rows = slots[new]
            numbers = seqs[new]
            value = index.columns(index.at(rows))
            value["seq"] = np.diff(numbers, prepend=0).tolist()  # steps: small numbers
            key = f"{self.head}{JOIN_MARK}{new_id()}"
            segments.append((key, orjson.dumps(value)))
            kept.append(JoinSegment(key, numbers, np.ones(numbers.size, dtype=bool)))
        head = [{"key": p.key, "count": int(p.seqs.size), "live": _mask_text(p.live)} for p in kept]
        return JoinPlan(segments, head, tombstones, kept)

    def commit(self, plan: JoinPlan) -> None:
        """The plan's segments, head and tombstones are sent (in that order)."""
        self.parts = plan.parts
        self.stale = []


def restore_join_segments(
    head: str, saved: dict[str, Any] | None, on_topic: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, JoinSegments]:
    """A stage-1 checkpoint value whose join index (`labels.pending_segments`) is reassembled
    from its segments (``on_topic``: the decoded join segments of this head on the topic) into
    `labels.pending`, the columns `PendingIndex.restore_columns` reads (with `seq`), and the
    bookkeeping that continues them; a checkpoint with the index inside the head (older
    versions) passes as it is. Raises ValueError when a listed segment is missing or damaged
    (the caller drops the checkpoint)."""
    labels = None if saved is None else saved.get("labels")
    if saved is None or labels is None or JOIN_FIELD not in labels:
        return saved, JoinSegments(head, stale=sorted(on_topic))
    parts: list[JoinSegment] = []
    pairs: dict[tuple[str, str], int] = {}
    columns: dict[str, list[Any]] = {
        "ids": [],
        "version": [],
        "start": [],
        "prediction": [],
        "score": [],
        "time": [],
    }
    numbers: list[NDArray[np.int64]] = []
    try:
        for listed in labels[JOIN_FIELD]:
            key = str(listed["key"])
            if key not in on_topic:
                raise ValueError(f"join index segment {key} missing")
            value = on_topic[key]
            seqs = np.cumsum(np.asarray(value["seq"], dtype=np.int64))
            count = int(listed["count"])
            if seqs.size != count or len(value["ids"]) != count:
                raise ValueError(f"join index segment {key}: {seqs.size} entries, not {count}")
            live = _mask_of(listed["live"], count)
            parts.append(JoinSegment(key, seqs, live))
            codes = [pairs.setdefault((str(m), str(v)), len(pairs)) for m, v in value["versions"]]
            rows = np.flatnonzero(live).tolist()
            numbers.append(seqs[live])
            columns["version"] += [codes[value["version"][i]] for i in rows]
            for name in ("ids", "start", "prediction", "score", "time"):
                column = value[name]
                if len(column) != count:
                    raise ValueError(f"join index segment {key}: columns of different lengths")
                columns[name] += [column[i] for i in rows]
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"join index segments: {type(exc).__name__}: {exc}") from exc
    seq = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
    order = np.argsort(seq, kind="stable").tolist()
    pending: dict[str, Any] = {name: [column[i] for i in order] for name, column in columns.items()}
    pending["versions"] = [list(pair) for pair in pairs]
    pending["seq"] = seq[order].tolist()
    pending["next_seq"] = max((int(p.seqs[-1]) + 1 for p in parts if p.seqs.size), default=0)
    listed_keys = {p.key for p in parts}
    restored = JoinSegments(head, parts, sorted(k for k in on_topic if k not in listed_keys))
    rest = {k: v for k, v in labels.items() if k != JOIN_FIELD}
    return {**saved, "labels": {**rest, "pending": pending}}, restored
