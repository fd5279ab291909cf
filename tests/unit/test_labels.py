"""The label join index: survives a checkpoint round trip (bounded), and is bounded in bytes."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import orjson

from driftline.streams.joinindex import PendingIndex
from driftline.streams.labels import (
    ENTRY_OVERHEAD_BYTES,
    PartitionLabels,
    PendingEntry,
    entry_bytes,
)
from driftline.streams.windows import WindowSizes


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
    return sum(entry_bytes(p, e.prediction) for p, e in labels.pending.items()) + sum(
        entry_bytes(p, o.label) for p, o in labels.orphans.items()
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
    assert [str(e) for e in again.pending.items()] == [str(e) for e in labels.pending.items()]
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


def test_an_id_repeated_within_a_large_batch_keeps_its_last_entry() -> None:
    labels = _labels()
    ids = [f"p{i}" for i in range(20)] + ["p3", "p5", "p3"]
    times = 1000.0 + np.arange(len(ids), dtype=np.float64)
    labels.add_columns("m", "2", ids, times, [str(i) for i in range(len(ids))], None)
    assert list(labels.pending)[-3:] == ["p19", "p5", "p3"] and len(labels.pending) == 20
    assert labels.pending.get("p3").prediction == "22"  # type: ignore[union-attr]
    assert labels.pending_bytes == _true_bytes(labels)
    _predict(labels, ids[:12])  # an id already waiting moves to the end with its new entry
    assert list(labels.pending)[-12:] == ids[:12] and labels.pending_bytes == _true_bytes(labels)


def test_equal_prediction_strings_are_kept_once() -> None:
    labels = _labels()
    parsed = orjson.loads(b'["fraud", "fraud", "ok"]')  # one object per record, as parsed
    assert parsed[0] is not parsed[1]
    labels.add_columns("m", "2", ["a", "b", "c"], np.full(3, 1000.0), parsed, None)
    a, b = labels.pending.get("a"), labels.pending.get("b")
    assert a is not None and b is not None and a.prediction is b.prediction


def test_entry_overhead_is_the_memory_an_entry_takes_besides_its_characters() -> None:
    """`entry_bytes` counts an id and a prediction by their length plus a fixed overhead: the
    index's own memory per entry (dict slot, slot number, columns and their growth) and the id's
    string object, measured here with tracemalloc as the worker fills the index."""
    n = 50_000
    times = np.arange(n, dtype=np.float64)
    index = PendingIndex()
    code = index.code_of("m", "1")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for first in range(0, n, 100):  # batches, as the worker adds them
            ids = [f"prediction-{i:08d}" for i in range(first, first + 100)]
            rows = slice(first, first + 100)
            index.append(code, ids, times[rows], ["1"] * 100, times[rows], times[rows])
        del ids
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    measured = (held - n * len("prediction-00000000")) / n  # "1": one shared string
    assert len(index) == n and index.nbytes == n * entry_bytes("prediction-00000000", "1")
    assert 0.75 * measured <= ENTRY_OVERHEAD_BYTES <= 1.25 * measured
    assert measured < 250  # a tuple in an OrderedDict took ~330 bytes besides its characters


def test_eviction_and_expiry_take_the_oldest_live_entries_across_joins() -> None:
    labels = _labels(max_pending=500)
    _predict(labels, [f"p{i}" for i in range(2000)])  # 1,500 evicted in one batch
    assert labels.evicted == 1500 and list(labels.pending)[:2] == ["p1500", "p1501"]
    labels.add_labels([_label(f"p{i}") for i in range(1500, 1900, 2)])  # holes in the index
    _predict(labels, [f"n{i}" for i in range(350)], t0=5000.0)
    assert labels.evicted == 1500 + 150  # the 150 oldest live: p1501, p1503, ... p1799
    kept = list(labels.pending)
    assert kept[0] == "p1801" and kept[-1] == "n349" and len(kept) == 500
    assert labels.pending_bytes == _true_bytes(labels)
    labels.close_ready(watermark=3600.0 + 5000.0, open_windows=set())  # older than 5000 expire
    assert list(labels.pending) == [f"n{i}" for i in range(350)]
    assert labels.expired == 150 and labels.pending_bytes == _true_bytes(labels)
    entry = labels.pending.get("n1")
    assert entry == PendingEntry("m", "2", 4980.0, "1", 0.8, 5001.0)


def test_a_checkpoint_of_the_tuple_based_index_restores() -> None:
    """Written by the index before it became columns (main on 2026-12-02): same form."""
    zeros = [0] * 50
    saved = {
        "partition": 0,
        "pending": {
            "ids": ["p0", "p2", "q0"],
            "version": [0, 0, 1],
            "versions": [["m", "2"], ["other", "7"]],
            "start": [960.0, 1020.0, 960.0],
            "prediction": ["1", "yes", True],
            "score": [0.8, 0.3, None],
            "time": [1000.0, 1062.0, 1003.0],
        },
        "orphans": {"ids": ["early"], "label": ["0"], "time": [1100.0]},
        "not_checkpointed": [0, 0],
        "windows": [
            {
                "model": "m",
                "model_version": "2",
                "window_start": 960.0,
                "window_end": 1020.0,
                "confusion": {"labels": ["0", "1"], "matrix": [[0, 0], [1, 0]], "n_unlabelled": 0},
                "positive_scores": zeros,
                "negative_scores": zeros,
            }
        ],
        "counters": {"joined": 1, "evicted": 0, "expired": 0, "unmatched_labels": 0},
        "last_label_offset": -1,
        "label_watermark": 1101.0,
        "late_labels": 0,
        "closed_before": [],
    }
    labels = _labels()
    labels.restore(orjson.loads(orjson.dumps(saved)))
    assert [str(item) for item in labels.pending.items()] == [
        str(("p0", PendingEntry("m", "2", 960.0, "1", 0.8, 1000.0))),
        str(("p2", PendingEntry("m", "2", 1020.0, "yes", 0.3, 1062.0))),
        str(("q0", PendingEntry("other", "7", 960.0, True, math.nan, 1003.0))),
    ]
    assert labels.pending_bytes == _true_bytes(labels) and labels.joined == 1
    outcomes = labels.add_labels([_label("q0", True, 1200.0), _label("p0", "0", 1201.0)])
    assert [o[:3] for o in outcomes] == [("other", "7", "q0"), ("m", "2", "p0")]
    labels.add_columns("m", "2", ["early"], np.array([1090.0]), ["0"], None)
    assert labels.joined == 4 and not labels.orphans
    assert labels.windows[("m", "2", 960.0)].confusion.n == 2
    assert labels.to_dict()["pending"]["versions"] == [["m", "2"]]  # the form is unchanged


def test_window_sizes_of_the_join_come_from_one_place() -> None:
    sizes = WindowSizes(60.0, {"slow": 600.0})
    labels = PartitionLabels(0, sizes, 10.0, 3600.0, 10)
    labels.add_columns("slow", "1", ["a"], np.array([700.0]), ["1"], None)
    labels.add_columns("m", "1", ["b"], np.array([700.0]), ["1"], None)
    assert [e.window_start for _, e in labels.pending.items()] == [600.0, 660.0]
    labels.expect_window("slow", "1", 600.0)
    assert labels.windows[("slow", "1", 600.0)].window_end == 1200.0


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
