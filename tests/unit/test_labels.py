"""The label join index: survives a checkpoint round trip (bounded), and is bounded in bytes."""

from __future__ import annotations

import math
import sys

import numpy as np
import orjson

from driftline.streams.labels import ENTRY_OVERHEAD_BYTES, PartitionLabels, entry_bytes


def _labels(**kwargs: int) -> PartitionLabels:
    return PartitionLabels(0, 60.0, 10.0, 3600.0, kwargs.pop("max_pending", 1000), **kwargs)


def _predict(labels: PartitionLabels, ids: list[str], t0: float = 1000.0) -> None:
    times = t0 + np.arange(len(ids), dtype=np.float64)
    scores = np.full(len(ids), 0.8)
    scores[::3] = math.nan  # missing scores survive as NaN
    labels.add_columns("m", "2", ids, times, ["1"] * len(ids), scores)


def _label(pid: str, value: object = "1", t: float = 1100.0) -> dict[str, object]:
    return {"prediction_id": pid, "label": value, "timestamp": t}


def _true_bytes(labels: PartitionLabels) -> int:
    return sum(entry_bytes(p, e[3]) for p, e in labels.pending.items()) + sum(
        entry_bytes(p, o[0]) for p, o in labels.orphans.items()
    )


def _restored(labels: PartitionLabels, **kwargs: int) -> PartitionLabels:
    again = _labels(**kwargs)
    again.restore(orjson.loads(orjson.dumps(labels.to_dict())))
    return again


def test_a_restored_index_joins_labels_of_predictions_made_before_the_checkpoint() -> None:
    labels = _labels()
    _predict(labels, [f"p{i}" for i in range(10)])
    labels.add_labels([_label("early", "0")])  # a label waiting for its prediction
    again = _restored(labels)
    assert list(again.pending) == list(labels.pending)
    assert again.pending_bytes == labels.pending_bytes
    assert [str(e) for e in again.pending.values()] == [str(e) for e in labels.pending.values()]
    again.add_labels([_label("p3"), _label("p4", "0")])
    _predict(again, ["early"], t0=1050.0)
    assert again.joined == 3 and len(again.pending) == 8 and not again.orphans
    assert again.pending_bytes == _true_bytes(again)
    partial = next(iter(again.windows.values()))
    assert partial.confusion.n == 2  # p3, p4 in the window of 1000; "early" in the next one


def test_the_checkpoint_keeps_the_newest_entries_and_counts_the_rest_as_evicted() -> None:
    labels = _labels(max_checkpointed=4)
    _predict(labels, [f"p{i}" for i in range(10)])
    again = _restored(labels, max_checkpointed=4)
    assert list(again.pending) == ["p6", "p7", "p8", "p9"]
    assert again.evicted == 6
    assert again.pending_bytes == sum(entry_bytes(p, "1") for p in again.pending)


def test_the_index_is_bounded_in_bytes_oldest_evicted_first() -> None:
    budget = 10 * (ENTRY_OVERHEAD_BYTES + 1100)
    labels = _labels(max_pending_bytes=budget)
    _predict(labels, [f"{i:04d}" + "x" * 1000 for i in range(50)])  # 1 kB ids (at the bound)
    assert labels.pending_bytes <= budget
    assert len(labels.pending) == 10 and labels.evicted == 40
    assert next(iter(labels.pending)).startswith("0040")
    labels.add_labels([_label(f"orphan{i}", "y" * 1000) for i in range(30)])
    assert labels.pending_bytes <= budget
    assert labels.unmatched_labels + labels.evicted >= 40 + 20
    # joins and expiry give the bytes back exactly
    for pid in list(labels.pending):
        labels.add_labels([_label(pid)])
    labels.close_ready(1e12, set())
    assert not labels.pending and not labels.orphans and labels.pending_bytes == 0


def test_a_repeated_prediction_id_replaces_its_entry_without_leaking_bytes() -> None:
    labels = _labels()
    _predict(labels, ["a", "b"])
    _predict(labels, ["a"], t0=1010.0)
    assert list(labels.pending) == ["b", "a"]
    assert labels.pending_bytes == entry_bytes("a", "1") + entry_bytes("b", "1")
    labels.add_labels([_label("c", "y" * 50), _label("c", "n"), _label("a")])
    labels.add_columns("m", "2", ["c", "d"], np.array([1020.0, 1021.0]), ["yes", 1], None)
    assert list(labels.pending) == ["b", "d"] and not labels.orphans and labels.joined == 2
    assert labels.pending_bytes == _true_bytes(labels)


def test_entry_overhead_is_of_the_order_python_uses() -> None:
    """The fixed overhead is an estimate of a pending entry's memory besides its strings: the
    tuple, two floats and a dict slot (the model and version strings are shared)."""
    entry = ("m", "2", 60.0, 1, 0.5, 61.0)
    measured = sys.getsizeof(entry) + 3 * sys.getsizeof(1.0) + 2 * 8 + 50  # + hash-table slot
    assert 0.5 * measured <= ENTRY_OVERHEAD_BYTES <= 2 * measured


def test_an_old_checkpoint_without_the_index_restores_the_rest() -> None:
    labels = _labels()
    _predict(labels, ["a"])
    labels.add_labels([_label("a")])
    saved = labels.to_dict()
    for key in ("pending", "orphans", "not_checkpointed"):
        del saved[key]
    again = _labels()
    again.restore(saved)
    assert again.joined == 1 and not again.pending


def test_label_and_prediction_spellings_of_one_class_are_not_an_error() -> None:
    """True/1/"1"/"true"/1.0 are one class on both sides (normalise.class_value), so a
    producer sending label True for prediction 1 counts a correct prediction."""
    labels = _labels()
    spellings: list[tuple[object, object]] = [
        (True, 1),
        ("true", 1.0),
        (1.0, "1"),
        ("1", True),
        (False, 0),
        ("false", "0.0"),
        (0, False),
    ]
    ids = [f"p{i}" for i in range(len(spellings))]
    labels.add_columns(
        "m",
        "2",
        ids,
        np.full(len(ids), 1000.0),
        [prediction for _, prediction in spellings],
        np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]),
    )
    labels.add_labels([_label(pid, label) for pid, (label, _) in zip(ids, spellings, strict=True)])
    (partial,) = labels.windows.values()
    assert partial.confusion.n == len(spellings)
    assert sorted(partial.confusion.labels) == ["0", "1"]
    matrix = partial.confusion.matrix
    assert int(matrix.trace()) == len(spellings)  # every one correct
    assert int(partial.positive_scores.sum()) == 4 and int(partial.negative_scores.sum()) == 3


def test_a_real_disagreement_still_counts_as_an_error() -> None:
    labels = _labels()
    labels.add_columns("m", "2", ["a", "b"], np.full(2, 1000.0), [1, "fraud"], np.full(2, 0.5))
    labels.add_labels([_label("a", "false"), _label("b", "ok")])
    (partial,) = labels.windows.values()
    assert int(partial.confusion.matrix.trace()) == 0 and partial.confusion.n == 2
