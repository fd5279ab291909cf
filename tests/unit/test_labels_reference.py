"""The columnar join index against a plain reference (an `OrderedDict` of entries, the index as it
was written first): random sequences of predictions, labels, bounds, expiry and checkpoints must
leave the same entries in the same order, the same counters and bytes, and join the same ids."""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson

from driftline.streams.labels import PartitionLabels, PendingEntry, entry_bytes


class Reference:
    """Pending and early labels as ordered dicts; bounds and expiry one entry at a time."""

    def __init__(self, max_pending: int, max_bytes: int, ttl: float) -> None:
        self.max_pending, self.max_bytes, self.ttl = max_pending, max_bytes, ttl
        self.pending: OrderedDict[str, PendingEntry] = OrderedDict()
        self.orphans: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.joined = self.evicted = self.expired = self.unmatched = 0

    @property
    def nbytes(self) -> int:
        return sum(entry_bytes(p, e.prediction) for p, e in self.pending.items()) + sum(
            entry_bytes(p, label) for p, (label, _) in self.orphans.items()
        )

    def add(self, entries: list[tuple[str, PendingEntry]]) -> list[str]:
        joined = []
        for pid, entry in entries:
            if self.orphans.pop(pid, None) is not None:
                joined.append(pid)
                continue
            self.pending.pop(pid, None)
            self.pending[pid] = entry
        self.joined += len(joined)
        self._evict()
        return joined

    def label(self, labels: list[tuple[str, Any, float]]) -> list[str]:
        """Joined ids, grouped by model version (first seen first), in order within each."""
        joined: dict[str, list[str]] = {}
        for pid, label, t in labels:
            entry = self.pending.pop(pid, None)
            if entry is None:
                self.orphans.pop(pid, None)
                self.orphans[pid] = (label, t)
            else:
                joined.setdefault(entry.model, []).append(pid)
        ids = [pid for group in joined.values() for pid in group]
        self.joined += len(ids)
        self._evict()
        return ids

    def _evict(self) -> None:
        while self.pending and (
            len(self.pending) > self.max_pending or self.nbytes > self.max_bytes
        ):
            self.pending.popitem(last=False)
            self.evicted += 1
        while self.orphans and (
            len(self.orphans) > self.max_pending or self.nbytes > self.max_bytes
        ):
            self.orphans.popitem(last=False)
            self.unmatched += 1

    def expire(self, watermark: float) -> None:
        limit = watermark - self.ttl
        while self.pending and next(iter(self.pending.values())).event_time < limit:
            self.pending.popitem(last=False)
            self.expired += 1
        while self.orphans and next(iter(self.orphans.values()))[1] < limit:
            self.orphans.popitem(last=False)
            self.unmatched += 1


def _same(index: PartitionLabels, reference: Reference, where: str) -> None:
    assert [str(item) for item in index.pending.items()] == [
        str(item) for item in reference.pending.items()
    ], where
    assert list(index.orphans.items()) == list(reference.orphans.items()), where
    assert index.pending_bytes == reference.nbytes, where
    counters = (index.joined, index.evicted, index.expired, index.unmatched_labels)
    assert counters == (reference.joined, reference.evicted, reference.expired, reference.unmatched)


def _run(seed: int) -> None:
    rng = random.Random(seed)
    max_pending = rng.choice([5, 60, 10_000])
    max_bytes = rng.choice([3_000, 30_000, 10**9])
    ttl = rng.choice([50.0, 5_000.0])
    labels = PartitionLabels(0, 60.0, 30.0, ttl, max_pending, max_bytes, max_checkpointed=10**6)
    reference = Reference(max_pending, max_bytes, ttl)
    clock, made = 0.0, 0
    for step in range(80):
        where = f"seed {seed} step {step}"
        action = rng.random()
        if action < 0.5:  # a batch of predictions, some ids repeated, some long
            n = rng.choice([1, 3, 8, 9, 40, 300])
            ids = []
            for _ in range(n):
                if made and rng.random() < 0.1:
                    ids.append(f"p{rng.randrange(made)}")
                else:
                    ids.append(f"p{made}" + "x" * rng.choice([0, 0, 200]))
                    made += 1
            times = clock + np.array([rng.uniform(-20.0, 20.0) for _ in range(n)])
            clock += rng.uniform(0.0, 40.0)
            predictions = [rng.choice(["0", "1", 1, True, None, "fraud" * 10]) for _ in range(n)]
            scores = np.array([rng.choice([0.2, 0.9, math.nan]) for _ in range(n)])
            model = rng.choice(["m", "k"])
            outcomes = labels.add_columns(model, "1", ids, times, list(predictions), scores)
            entries = [
                (pid, PendingEntry(model, "1", math.floor(t / 60.0) * 60.0, p, s, t))
                for pid, t, p, s in zip(
                    ids, times.tolist(), predictions, scores.tolist(), strict=True
                )
            ]
            assert [o[2] for o in outcomes] == reference.add(entries), where
        elif action < 0.85:  # labels, some before their prediction, some unknown
            batch = [
                (f"p{rng.randrange(made + 20)}", rng.choice(["0", "1", "y" * 300]), clock)
                for _ in range(rng.choice([1, 5, 50]))
            ]
            outcomes = labels.add_labels(
                [{"prediction_id": p, "label": v, "timestamp": t} for p, v, t in batch]
            )
            assert [o[2] for o in outcomes] == reference.label(batch), where
        elif action < 0.95:
            watermark = clock - rng.uniform(0.0, 60.0)
            labels.close_ready(watermark, set())
            reference.expire(watermark)
        else:  # a restart from the checkpoint
            saved = orjson.loads(orjson.dumps(labels.to_dict()))
            labels = PartitionLabels(0, 60.0, 30.0, ttl, max_pending, max_bytes, 10**6)
            labels.restore(saved)
        _same(labels, reference, where)


def test_the_index_behaves_like_an_ordered_dict_of_entries() -> None:
    for seed in range(60):
        _run(seed)
