"""The label join's index of predictions waiting for their label, as compact columns.

One entry per prediction id: its (model, version) interned as a small int, its window start,
score and event time in float64 columns, its estimated size in bytes in an int64 column, and
the prediction value in a list. Entries are kept in arrival order (slots); a dict maps the id to
its slot. Removing an entry (joined, evicted, expired, replaced) marks its slot dead; dead slots
are dropped when they outnumber the live ones (amortised O(1)). Eviction and expiry take the
oldest live slots a chunk at a time with numpy, so bounding the index costs no Python loop over
what stays.

Per entry that is about 185 bytes besides the characters of the id and the prediction (the
id's string object included; measured by `tests/unit/test_labels.py`), where a tuple in an
`OrderedDict` took about 300: a dict slot and an int for the id, eight bytes per column and a
list slot for the prediction, whose string is shared with every equal one.

Longer than ~400 lines: the columns, their slots, compaction and checkpoint form are one data
structure; a third of it is docstrings and doctests.

>>> index = PendingIndex()
>>> code = index.code_of("m", "1")
>>> index.append(code, ["a", "b"], np.array([0.0, 60.0]), ["1", 0], np.array([0.9, np.nan]),
...              np.array([10.0, 70.0]))
>>> list(index), index.get("b")
(['a', 'b'], PendingEntry(model='m', model_version='1', window_start=60.0, prediction=0, score=nan, event_time=70.0))
>>> index.take([index.pop_slot("a")]).ids, len(index), "a" in index
(['a'], 1, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple, cast

import numpy as np

__all__ = ["ENTRY_OVERHEAD_BYTES", "Entries", "PendingEntry", "PendingIndex", "entry_bytes"]

# Estimated memory of one entry besides its id and its prediction strings: the dict slot and the
# int of the id's slot, five column cells, a list slot, column growth (measured in the unit test)
ENTRY_OVERHEAD_BYTES = 185

F64 = np.ndarray[Any, np.dtype[np.float64]]
I64 = np.ndarray[Any, np.dtype[np.int64]]
_MIN_CAPACITY = 1024
_FEW = 8  # below this many entries, a Python loop is cheaper than numpy's fixed costs
# Prediction strings are shared (a parser makes one object per record; class labels repeat):
# up to this many distinct values, each at most _SHARED_LENGTH characters long
_SHARED_VALUES, _SHARED_LENGTH = 4096, 64


def entry_bytes(prediction_id: str, value: Any) -> int:
    """Estimated memory of one join entry: the id and the prediction (or label) by their
    length, plus a fixed overhead. An estimate, cheap enough for every record.

    >>> entry_bytes("abc", "yes") == 3 + 3 + ENTRY_OVERHEAD_BYTES
    True
    """
    size = len(prediction_id) + ENTRY_OVERHEAD_BYTES
    return size + len(value) if type(value) is str else size


class PendingEntry(NamedTuple):
    """One prediction waiting for its label (a copy; the index keeps columns)."""

    model: str
    model_version: str
    window_start: float
    prediction: Any
    score: float  # NaN: none
    event_time: float


@dataclass
class Entries:
    """Columns of some join entries, in order (`code` indexes `PendingIndex.pairs`)."""

    ids: list[str]
    code: np.ndarray[Any, np.dtype[np.int32]]
    start: F64
    prediction: list[Any]
    score: F64
    time: F64

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: list[int]) -> Entries:
        index = np.asarray(rows, dtype=np.intp)
        return Entries(
            [self.ids[i] for i in rows],
            self.code[index],
            self.start[index],
            [self.prediction[i] for i in rows],
            self.score[index],
            self.time[index],
        )


class PendingIndex:
    """Prediction id -> entry, oldest first; `nbytes` is the estimate of `entry_bytes`."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []  # interned (model, version), by code
        self._codes: dict[tuple[str, str], int] = {}
        self._slot: dict[str, int] = {}  # id -> slot, live entries only
        self._ids: list[str | None] = []  # by slot; None: dead
        self._prediction: list[Any] = []
        self._code = np.zeros(0, np.int32)
        self._start = np.zeros(0, np.float64)
        self._score = np.zeros(0, np.float64)
        self._time = np.zeros(0, np.float64)
        self._bytes = np.zeros(0, np.int64)
        self._live = np.zeros(0, bool)
        self._seq = np.zeros(0, np.int64)  # arrival number of each slot (incremental checkpoints)
        self._next_seq = 0
        self._head = 0  # no live slot before this one
        self._shared: dict[str, str] = {}
        self.nbytes = 0

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._slot

    def __iter__(self) -> Iterator[str]:
        ids = self._ids
        return (ids[s] for s in self._live_slots().tolist())

    def get(self, prediction_id: str) -> PendingEntry | None:
        slot = self._slot.get(prediction_id)
        return None if slot is None else self._entry(slot)

    def items(self) -> Iterator[tuple[str, PendingEntry]]:
        for slot in self._live_slots().tolist():
            yield self._ids[slot], self._entry(slot)

    def _entry(self, slot: int) -> PendingEntry:
        model, version = self.pairs[int(self._code[slot])]
        return PendingEntry(
            model,
            version,
            float(self._start[slot]),
            self._prediction[slot],
            float(self._score[slot]),
            float(self._time[slot]),
        )

    def code_of(self, model: str, version: str) -> int:
        """The small int standing for (model, version) in the index."""
        key = (model, version)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self.pairs)
            self.pairs.append(key)
        return code

    # -- writing --------------------------------------------------------------------------------

    def append(
        self,
        code: int,
        ids: list[str],
        start: F64,
        predictions: list[Any],
        score: F64,
        time: F64,
    ) -> None:
        """Add one model version's entries at the end, in order; an id already waiting (or
        repeated in `ids`) replaces its entry, which moves to the end."""
        n = len(ids)
        if not n:
            return
        slots = self._slot
        if slots and not slots.keys().isdisjoint(ids):
            self.take([slots.pop(pid) for pid in set(ids) if pid in slots])
        self._reserve(n)
        if n <= _FEW:
            self._append_few(code, ids, start, predictions, score, time)
            return
        predictions, lengths = self._share(predictions)
        tail = len(self._ids)
        end = tail + n
        sizes = np.fromiter(map(len, ids), np.int64, n)
        sizes += lengths
        sizes += ENTRY_OVERHEAD_BYTES
        self._code[tail:end] = code
        self._start[tail:end] = start
        self._score[tail:end] = score
        self._time[tail:end] = time
        self._bytes[tail:end] = sizes
        self._live[tail:end] = True
        self._seq[tail:end] = np.arange(self._next_seq, self._next_seq + n)
        self._next_seq += n
        self._ids += ids
        self._prediction += predictions
        before = len(slots)
        slots.update(zip(ids, range(tail, end), strict=True))
        self.nbytes += int(sizes.sum())
        if len(slots) != before + n:  # an id twice in `ids`: the last one stays
            dead = [tail + i for i, pid in enumerate(ids) if slots[pid] != tail + i]
            self._kill(np.asarray(dead, dtype=np.intp))

    def _share(self, predictions: list[Any]) -> tuple[list[Any], np.ndarray[Any, Any]]:
        """`predictions` with each short string replaced by the one object kept for its value
        (saves ~50 bytes per entry for class labels; up to `_SHARED_VALUES` values), and the
        length of each string (0 for other values). By distinct value: a batch's class labels
        are a handful, so the per-entry work is two `map`s in C."""
        n = len(predictions)
        try:
            distinct = set(predictions)
        except TypeError:  # an unhashable value (not from the decoders): kept as is
            return predictions, np.array([len(p) if type(p) is str else 0 for p in predictions])
        lengths = {p: len(p) for p in distinct if type(p) is str}
        if not lengths:
            return predictions, np.zeros(n, np.int64)
        shared = self._shared
        for value, length in lengths.items():
            if length <= _SHARED_LENGTH and len(shared) < _SHARED_VALUES:
                shared.setdefault(value, value)
        # dict lookups of non-strings (1, True, None) find no str key: 0 and the value itself
        sizes = np.fromiter(map(lengths.get, predictions, repeat(0)), np.int64, n)
        return list(map(shared.get, predictions, predictions)), sizes

    def _append_few(
        self, code: int, ids: list[str], start: F64, predictions: list[Any], score: F64, time: F64
    ) -> None:
        """`append` of a few entries, one at a time (numpy's per-call cost would dominate)."""
        slots = self._slot
        shared = self._shared
        for pid, s, p, sc, t in zip(
            ids, start.tolist(), predictions, score.tolist(), time.tolist(), strict=True
        ):
            if type(p) is str and len(p) <= _SHARED_LENGTH and len(shared) < _SHARED_VALUES:
                p = shared.setdefault(p, p)
            elif type(p) is str:
                p = shared.get(p, p)
            old = slots.get(pid)
            if old is not None:  # twice in `ids`: the last one stays
                self.take([slots.pop(pid)])
            slot = len(self._ids)
            size = len(pid) + ENTRY_OVERHEAD_BYTES + (len(p) if type(p) is str else 0)
            self._code[slot] = code
            self._start[slot] = s
            self._score[slot] = sc
            self._time[slot] = t
            self._bytes[slot] = size
            self._live[slot] = True
            self._seq[slot] = self._next_seq
            self._next_seq += 1
            self._ids.append(pid)
            self._prediction.append(p)
            slots[pid] = slot
            self.nbytes += size

    def pop_slot(self, prediction_id: str) -> int | None:
        """Forget an id; its entry stays readable by `take` until the next change."""
        return self._slot.pop(prediction_id, None)

    def take(self, slots: list[int]) -> Entries:
        """The entries of slots given by `pop_slot`, removed."""
        index = np.asarray(slots, dtype=np.intp)
        entries = Entries(
            cast("list[str]", [self._ids[s] for s in slots]),  # live slots: ids, not None
            self._code[index],
            self._start[index],
            [self._prediction[s] for s in slots],
            self._score[index],
            self._time[index],
        )
        self._kill(index)
        return entries

    def evict(self, max_count: int, max_bytes: int) -> int:
        """Remove the oldest entries until at most `max_count` are left and they take at most
        `max_bytes`; the number removed."""
        need = len(self._slot) - max_count
        excess = self.nbytes - max_bytes
        if need <= 0 and excess <= 0:
            return 0
        few = self._oldest_few(need, excess)
        if few is not None:
            return self._remove(few)
        victims = []
        for chunk in self._oldest_chunks():
            cumulative = np.cumsum(self._bytes[chunk])
            k = max(need, int(np.searchsorted(cumulative, excess)) + 1 if excess > 0 else 0)
            victims.append(chunk[:k])
            if k <= len(chunk):
                break
            need, excess = need - len(chunk), excess - int(cumulative[-1])
        return self._remove(np.concatenate(victims)) if victims else 0

    def expire(self, limit: float) -> int:
        """Remove the oldest entries up to the first one whose event time is not below
        `limit` (arrival order, as the time-to-live has always been applied); the number."""
        victims = []
        for chunk in self._oldest_chunks():
            fresh = np.flatnonzero(self._time[chunk] >= limit)
            stop = int(fresh[0]) if len(fresh) else len(chunk)
            victims.append(chunk[:stop])
            if stop < len(chunk):
                break
        return self._remove(np.concatenate(victims)) if victims else 0

    def newest(self, limit: int) -> Entries:
        """The last `limit` entries (for a checkpoint), in order, not removed."""
        return self.at(self.newest_slots(limit))

    def newest_slots(self, limit: int) -> np.ndarray[Any, np.dtype[np.intp]]:
        """The slots of the last `limit` entries, in order (valid until the next change)."""
        return self._live_slots()[-limit:] if limit else np.zeros(0, np.intp)

    def seqs(self, slots: np.ndarray[Any, np.dtype[np.intp]]) -> I64:
        """The arrival numbers of live slots: increasing with the slots, unique in the index,
        kept by a checkpoint and its restore (`to_columns`, `restore_columns`)."""
        seqs: I64 = self._seq[slots]
        return seqs

    def at(self, slots: np.ndarray[Any, np.dtype[np.intp]]) -> Entries:
        """The entries of live slots, in the order given, not removed."""
        listed = slots.tolist()
        # mapped in C: no Python step per entry
        id_at = cast("Callable[[int], str]", self._ids.__getitem__)
        prediction_at = cast("Callable[[int], Any]", self._prediction.__getitem__)
        return Entries(
            list(map(id_at, listed)),
            self._code[slots],
            self._start[slots],
            list(map(prediction_at, listed)),
            self._score[slots],
            self._time[slots],
        )

    # -- slots ----------------------------------------------------------------------------------

    def _remove(self, slots: np.ndarray[Any, np.dtype[np.intp]]) -> int:
        ids, forget = self._ids, self._slot
        for slot in slots.tolist():
            del forget[ids[slot]]
        self._kill(slots)
        return len(slots)

    def _kill(self, slots: np.ndarray[Any, np.dtype[np.intp]]) -> None:
        """Mark slots dead (their ids already forgotten); drop dead slots when they are many."""
        if not len(slots):
            return
        listed = slots.tolist()
        if len(listed) <= _FEW:
            live, sizes = self._live, self._bytes
            for slot in listed:
                live[slot] = False
                self.nbytes -= int(sizes[slot])
        else:
            self._live[slots] = False
            self.nbytes -= int(self._bytes[slots].sum())
        ids, predictions = self._ids, self._prediction
        for slot in listed:  # let go of the strings now
            ids[slot] = predictions[slot] = None
        dead = len(ids) - len(self._slot)
        if dead > max(len(self._slot), _MIN_CAPACITY):
            self._compact(len(self._slot))

    def _oldest_few(self, need: int, excess: int) -> np.ndarray[Any, np.dtype[np.intp]] | None:
        """The oldest live slots to evict when a few suffice (one at a time: cheaper than
        numpy's calls then); None if more than `_FEW` slots would have to be looked at."""
        live, sizes = self._live, self._bytes
        victims: list[int] = []
        slot, tail = self._head, len(self._ids)
        limit = min(tail, slot + 4 * _FEW)
        while need > 0 or excess > 0:
            if slot >= limit or len(victims) >= _FEW:
                return None if slot < tail else np.array(victims, dtype=np.intp)
            if live[slot]:
                if not victims:
                    self._head = slot  # nothing live before
                victims.append(slot)
                need -= 1
                excess -= int(sizes[slot])
            slot += 1
        return np.array(victims, dtype=np.intp)

    def _live_slots(self) -> np.ndarray[Any, np.dtype[np.intp]]:
        head = self._head
        return np.flatnonzero(self._live[head : len(self._ids)]) + head

    def _oldest_chunks(self) -> Iterator[np.ndarray[Any, np.dtype[np.intp]]]:
        """Live slots from the oldest, in growing chunks (moving `_head` past dead ones)."""
        tail, step = len(self._ids), 256
        start = self._head
        while start < tail:
            stop = min(tail, start + step)
            chunk = np.flatnonzero(self._live[start:stop]) + start
            if not len(chunk) and start == self._head:
                self._head = stop
            elif len(chunk) and start == self._head:
                self._head = int(chunk[0])
            if len(chunk):
                yield chunk
            start, step = stop, step * 2

    def _reserve(self, n: int) -> None:
        tail = len(self._ids)
        if tail + n <= len(self._live):
            return
        if tail - len(self._slot) >= len(self._slot):  # mostly dead: compacting is enough
            self._compact(len(self._slot) + n)
            if len(self._ids) + n <= len(self._live):
                return
        self._grow(max(_MIN_CAPACITY, 2 * len(self._live), len(self._ids) + n))

    def _grow(self, capacity: int) -> None:
        for name in ("_code", "_start", "_score", "_time", "_bytes", "_live", "_seq"):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype)
            new[: len(self._ids)] = old[: len(self._ids)]
            setattr(self, name, new)

    def _compact(self, room: int) -> None:
        """Keep the live slots only, renumbered from 0, in columns with room for `room`."""
        live = self._live_slots()
        listed = live.tolist()
        ids = [self._ids[s] for s in listed]
        self._prediction = [self._prediction[s] for s in listed]
        self._ids = ids
        capacity = max(_MIN_CAPACITY, 2 * room)
        for name in ("_code", "_start", "_score", "_time", "_bytes", "_live", "_seq"):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype)
            new[: len(live)] = old[live]
            setattr(self, name, new)
        self._slot.update(zip(ids, range(len(ids)), strict=True))
        self._head = 0

    # -- checkpoint (the column-wise form written since the index was first saved) ---------------

    def to_columns(self, limit: int) -> dict[str, Any]:
        """The newest `limit` entries column-wise: ids, an index into the interned (model,
        version) pairs, then one list per field. A missing score stays NaN (orjson: null)."""
        return self.columns(self.newest(limit))

    def columns(self, entries: Entries) -> dict[str, Any]:
        """Some entries column-wise, as `to_columns` writes them."""
        used = np.flatnonzero(np.bincount(entries.code, minlength=len(self.pairs)))
        renumber = np.zeros(len(self.pairs), np.int64)
        renumber[used] = np.arange(len(used))  # the versions in the checkpoint, numbered from 0
        return {
            "ids": entries.ids,
            "version": renumber[entries.code].tolist(),
            "versions": [list(self.pairs[c]) for c in used.tolist()],
            "start": entries.start.tolist(),
            "prediction": entries.prediction,
            "score": entries.score.tolist(),
            "time": entries.time.tolist(),
        }

    def restore_columns(self, d: Mapping[str, Any]) -> None:
        """Add the entries of `to_columns` (or of a checkpoint of the tuple-based index: same
        form) at the end, in order. With `seq` (their arrival numbers, increasing: a
        checkpoint in segments, `segments.restore_join_segments`) the entries keep them."""
        codes = np.array([self.code_of(str(m), str(v)) for m, v in d["versions"]], np.int32)
        ids = [str(pid) for pid in d["ids"]]
        columns = (d["version"], d["start"], d["prediction"], d["score"], d["time"])
        if any(len(column) != len(ids) for column in columns):
            raise ValueError("join index checkpoint: columns of different lengths")
        version = np.asarray(d["version"], dtype=np.intp)
        start = np.asarray(d["start"], dtype=np.float64)
        score = np.array([math.nan if s is None else s for s in d["score"]], dtype=np.float64)
        time = np.asarray(d["time"], dtype=np.float64)
        predictions = list(d["prediction"])
        # arrival numbers continue after every one on the topic (`next_seq`), also unlisted
        self._next_seq = max(self._next_seq, int(d.get("next_seq", 0)))
        if not ids:
            return
        tail = len(self._ids)
        # one append per run of one version (usually one run), in arrival order
        breaks = np.flatnonzero(np.diff(version)) + 1
        for run in np.split(np.arange(len(ids)), breaks):
            rows = run.tolist()
            self.append(
                int(codes[version[run[0]]]),
                [ids[i] for i in rows],
                start[run],
                [predictions[i] for i in rows],
                score[run],
                time[run],
            )
        seq = d.get("seq")
        if seq is not None:
            numbers = np.asarray(seq, dtype=np.int64)
            if (
                len(numbers) != len(ids)
                or len(self._ids) - tail != len(ids)
                or bool(np.any(numbers[1:] <= numbers[:-1]))
                or (tail and int(numbers[0]) < int(self._seq[tail - 1]))
            ):
                raise ValueError("join index checkpoint: bad arrival numbers")
            self._seq[tail : tail + len(ids)] = numbers
            self._next_seq = max(self._next_seq, int(numbers[-1]) + 1)
