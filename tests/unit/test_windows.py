"""Event-time windows and the label join as pure state machines (no Kafka)."""

from __future__ import annotations

import math

import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.streams.labels import PartitionLabels
from driftline.streams.windows import ModelWindows, PartitionWindows, WindowSizes

RNG = np.random.default_rng(0)
PROFILE = ReferenceProfile.from_columns({"x": RNG.normal(size=2_000)}, model="m", model_version="1")


def batch(times: list[float]) -> RecordBatch:
    n = len(times)
    return RecordBatch(
        numeric={"x": RNG.normal(size=n)},
        categorical={},
        event_time=np.asarray(times, dtype=float),
        prediction=np.full(n, "0", dtype=object),
        record_keys=np.arange(n, dtype=np.uint64) + np.uint64(int(times[0] * 1000) if n else 0),
    )


def test_records_go_to_their_window_and_windows_close_on_the_watermark() -> None:
    state = PartitionWindows(partition=0, size=60.0, lateness=10.0)
    state.add("m", "1", batch([1.0, 59.0, 61.0]), PROFILE)
    state.advance(61.0, last_offset=2)
    assert state.close_ready() == []  # watermark 51 < 60
    state.add("m", "1", batch([70.0]), PROFILE)
    state.advance(70.0, last_offset=3)
    (closed,) = state.close_ready()  # watermark 60 closes [0, 60)
    assert (closed.window_start, closed.n_records) == (0.0, 2)
    state.add("m", "1", batch([5.0]), PROFILE)  # its window is closed: late
    assert state.late_records == 1
    assert [k[2] for k in state.open] == [60.0]


def test_partition_state_round_trips_through_json() -> None:
    state = PartitionWindows(partition=3, size=60.0, lateness=5.0)
    state.add("m", "1", batch([1.0, 2.0]), PROFILE)
    state.advance(2.0, last_offset=41)
    restored = PartitionWindows.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored.last_offset == 41 and restored.watermark == state.watermark
    assert restored.open.keys() == state.open.keys()
    assert restored.open[("m", "1", 0.0)].n_records == 2


def test_idle_partition_catches_up_and_closes_its_windows() -> None:
    state = PartitionWindows(partition=0, size=60.0, lateness=5.0)
    state.add("m", "1", batch([10.0]), PROFILE)
    state.advance(10.0, 0)
    state.mark_idle(watermark=200.0)
    assert [s.window_start for s in state.close_ready()] == [0.0]


def partial(source: int, start: float, n: int) -> dict[str, object]:
    from driftline.detectors.sketch import WindowSketch

    sketch = WindowSketch.empty(PROFILE, start, start + 60.0, seed=source)
    sketch.update(batch([start + 1.0] * n))
    return sketch.to_dict()


def test_model_window_waits_for_every_source_then_merges_once() -> None:
    state = ModelWindows("m", n_sources=2)
    state.add_partial(0, partial(0, 0.0, 3))
    state.add_watermark(0, 65.0)
    assert state.close_ready() == []  # source 1 has not reported: it holds the window open
    state.add_partial(1, partial(1, 0.0, 4))
    state.add_partial(1, partial(1, 0.0, 4))  # a replay replaces, never adds
    state.add_watermark(1, 61.0)
    (closed,) = state.close_ready()
    assert closed.sources == (0, 1) and closed.sketch.n_records == 7
    assert state.add_partial(0, partial(0, 0.0, 3)) is False  # already closed: ignored
    assert state.late_partials == 1


def test_idle_source_does_not_hold_windows_open() -> None:
    state = ModelWindows("m", n_sources=2)
    state.add_partial(0, partial(0, 0.0, 3))
    state.add_watermark(0, 100.0)
    state.add_watermark(1, -math.inf, idle=True)
    assert [w.sketch.window_start for w in state.close_ready()] == [0.0]
    restored = ModelWindows.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored.idle_sources == {1} and restored.closed == state.closed


def prediction(pid: str, t: float, pred: int = 1) -> dict[str, object]:
    return {
        "prediction_id": pid,
        "model": "m",
        "model_version": "1",
        "timestamp": t,
        "prediction": pred,
        "score": 0.9 if pred else 0.1,
        "features": {},
    }


def test_labels_join_in_either_order_and_performance_closes_once() -> None:
    joins = PartitionLabels(partition=0, window_size=60.0, horizon=30.0, ttl=1000.0, max_pending=10)
    joins.add_predictions([prediction("a", 1.0), prediction("b", 2.0, 0)])
    joins.add_labels(
        [
            {"prediction_id": "a", "label": 1, "timestamp": 5.0},
            {"prediction_id": "c", "label": 0, "timestamp": 6.0},
        ]
    )  # c: before its prediction
    joins.add_predictions([prediction("c", 3.0)])
    assert joins.joined == 2 and "b" in joins.pending
    joins.expect_window("m", "1", 0.0)
    assert joins.close_ready(watermark=70.0, open_windows={}) == []  # label time 6 < 60 + 30
    joins.add_labels([{"prediction_id": "b", "label": 0, "timestamp": 95.0}])
    (closed,) = joins.close_ready(watermark=70.0, open_windows={})
    assert closed.confusion.n == 3
    assert closed.confusion.matrix[closed.confusion.index("0"), closed.confusion.index("1")] == 1
    joins.add_predictions([prediction("d", 4.0)])
    joins.add_labels([{"prediction_id": "d", "label": 1, "timestamp": 96.0}])
    assert joins.late_labels == 1 and joins.close_ready(200.0, {}) == []


def test_join_store_is_bounded_and_counts_what_it_drops() -> None:
    joins = PartitionLabels(partition=0, window_size=60.0, horizon=0.0, ttl=50.0, max_pending=3)
    joins.add_predictions([prediction(str(i), float(i)) for i in range(5)])
    assert len(joins.pending) == 3 and joins.evicted == 2
    joins.close_ready(watermark=53.5, open_windows={})  # entries older than 3.5 expire
    assert joins.expired == 2 and list(joins.pending) == ["4"]


def test_label_state_round_trips_including_empty_performance_windows() -> None:
    joins = PartitionLabels(partition=2, window_size=60.0, horizon=30.0, ttl=1000.0, max_pending=10)
    joins.expect_window("m", "1", 0.0)  # a window without any label yet
    joins.add_predictions([prediction("a", 61.0)])
    joins.add_labels([{"prediction_id": "a", "label": 1, "timestamp": 70.0}])
    restored = PartitionLabels(
        partition=2, window_size=60.0, horizon=30.0, ttl=1000.0, max_pending=10
    )
    restored.restore(orjson.loads(orjson.dumps(joins.to_dict())))
    assert restored.windows.keys() == joins.windows.keys()
    assert restored.windows[("m", "1", 0.0)].confusion.n == 0
    assert restored.windows[("m", "1", 60.0)].confusion.n == 1
    assert restored.label_watermark == 70.0 and restored.joined == 1


def test_a_model_can_have_its_own_window_size() -> None:
    slow = ReferenceProfile.from_columns(
        {"x": RNG.normal(size=500)}, model="slow", model_version="1"
    )
    state = PartitionWindows(partition=0, size=WindowSizes(60.0, {"slow": 600.0}), lateness=0.0)
    state.add("m", "1", batch([10.0]), PROFILE)
    state.add("slow", "1", batch([10.0]), slow)
    state.advance(300.0, 1)
    closed = state.close_ready()
    assert [(s.model, s.window_start, s.window_end) for s in closed] == [("m", 0.0, 60.0)]
    assert [k[0] for k in state.open] == ["slow"]
    state.advance(600.0, 2)
    assert [(s.model, s.window_end) for s in state.close_ready()] == [("slow", 600.0)]


def test_window_sizes_are_checkpointed_in_the_form_old_checkpoints_have() -> None:
    state = PartitionWindows(partition=1, size=WindowSizes(60.0, {"slow": 600.0}), lateness=5.0)
    saved = orjson.loads(orjson.dumps(state.to_dict()))
    assert saved["size"] == 60.0 and saved["model_sizes"] == {"slow": 600.0}
    assert PartitionWindows.from_dict(saved).sizes == state.sizes
    del saved["model_sizes"]  # written before models could have their own size
    assert PartitionWindows.from_dict(saved).sizes == WindowSizes(60.0)


def test_model_window_sizes_come_from_config() -> None:
    from driftline.config import ConfigError, load_config

    config = load_config(None, environ={"DRIFTLINE_WINDOWS_MODEL_SIZES": "fraud=60, credit=3600"})
    assert config.windows.model_sizes == {"fraud": 60, "credit": 3600}
    sizes = WindowSizes.from_config(config.windows)
    assert sizes.for_model("credit") == 3600.0 and sizes.for_model("other") == 300.0
    try:
        load_config(None, environ={"DRIFTLINE_WINDOWS_MODEL_SIZES": "fraud=fast"})
    except ConfigError as error:
        assert "windows.model_sizes.fraud" in str(error)
    else:
        raise AssertionError("a bad size must be refused")


def test_stage_one_hands_on_provisional_partials_of_closed_windows_that_changed() -> None:
    joins = PartitionLabels(partition=0, window_size=60.0, horizon=30.0, ttl=1000.0, max_pending=10)
    joins.add_predictions([prediction("a", 1.0), prediction("b", 2.0, 0)])
    open_windows = {("m", "1", 0.0)}
    joins.add_labels([{"prediction_id": "a", "label": 1, "timestamp": 5.0}])
    assert joins.provisional_ready(open_windows) == []  # the data window is still open
    joins.expect_window("m", "1", 0.0)  # it closed
    (first,) = joins.provisional_ready(set())
    assert first.confusion.n == 1
    assert joins.provisional_ready(set()) == []  # nothing new
    joins.add_labels([{"prediction_id": "b", "label": 0, "timestamp": 50.0}])
    (second,) = joins.provisional_ready(set())
    assert second.confusion.n == 2
    joins.add_labels([{"prediction_id": "x", "label": 0, "timestamp": 95.0}])  # horizon passes
    (final,) = joins.close_ready(watermark=70.0, open_windows={})
    assert final.confusion.n == 2 and joins.provisional_ready(set()) == []


def _performance(labelled: int, start: float = 0.0) -> dict[str, object]:
    """A performance partial of window `start` with `labelled` correct class-1 labels."""
    from driftline.streams.labels import PerformancePartial

    partial = PerformancePartial("m", "1", start, start + 60.0)
    partial.confusion.update(np.array(["1"] * labelled, object), np.array(["1"] * labelled, object))
    return partial.to_dict()


def _closed_data_window(state: ModelWindows, sources: tuple[int, ...]) -> None:
    for source in sources:
        state.add_partial(source, partial(source, 0.0, 3))
        state.add_watermark(source, 100.0)
    (closed,) = state.close_ready()
    assert closed.sources == sources


def test_stage_two_publishes_provisional_windows_rate_limited_then_final_once() -> None:
    state = ModelWindows("m", n_sources=2)
    state.add_performance(0, _performance(3), final=False)  # before the data window closed
    assert state.provisional_performance_ready(0.0, 10.0) == []
    _closed_data_window(state, (0, 1))
    (published,) = state.provisional_performance_ready(0.0, 10.0)
    assert set(published[0]) == {0} and not published[0][0]["final"]
    state.add_performance(1, _performance(5), final=False)
    assert state.provisional_performance_ready(5.0, 10.0) == []  # at most one per 10 s
    (published,) = state.provisional_performance_ready(10.0, 10.0)
    assert set(published[0]) == {0, 1}
    assert state.close_performance_ready() == []  # no source is final yet
    state.add_performance(0, _performance(4), final=True)
    state.add_performance(0, _performance(3), final=False)  # a replayed provisional: ignored
    assert state.close_performance_ready() == []  # source 1 still provisional
    state.add_performance(1, _performance(6), final=True)
    # a checkpoint round trip in between changes nothing
    state = ModelWindows.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    (final,) = state.close_performance_ready()
    parts, _ = final
    assert {s: p["confusion"] for s, p in parts.items()} == {
        0: _performance(4)["confusion"],
        1: _performance(6)["confusion"],
    }
    assert state.provisional_performance_ready(100.0, 10.0) == []  # nothing after the final
    state.add_performance(0, _performance(9), final=False)  # replays after it: ignored
    state.add_performance(0, _performance(9), final=True)
    assert state.close_performance_ready() == []
    assert state.provisional_performance_ready(200.0, 10.0) == []


def test_a_window_raises_its_performance_drop_once() -> None:
    state = ModelWindows("m", n_sources=1)
    assert state.alert_performance_once("1", 0.0)
    assert not state.alert_performance_once("1", 0.0)
    again = ModelWindows.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert not again.alert_performance_once("1", 0.0) and again.alert_performance_once("1", 60.0)


def test_pending_partials_are_checkpointed_as_received_and_restore_to_the_same_windows() -> None:
    from driftline.streams.payloads import PartialMessage, parse_message

    def run(state: ModelWindows) -> list[dict[str, object]]:
        state.add_watermark(0, 130.0)
        state.add_watermark(1, 130.0)
        return [w.sketch.to_dict() for w in state.close_ready()]

    state = ModelWindows("m", n_sources=2)
    messages = [
        PartialMessage(s, 65.0, False, partial(s, start, 3 + s)).encode()
        for start in (60.0, 0.0)
        for s in (1, 0)
    ]
    for value in messages:
        payload = parse_message(value)
        assert isinstance(payload, PartialMessage)
        state.add_partial(payload.source, payload.sketch, value)
    saved = state.to_json()
    for value in messages:  # the messages' bytes are in the checkpoint as they came
        assert value in saved
    assert orjson.loads(saved) == orjson.loads(orjson.dumps(state.to_dict()))
    restored = ModelWindows.from_dict(orjson.loads(saved))
    # a checkpoint of an older version: the pending partials are the sketches themselves
    old = orjson.loads(saved)
    for parts in old["pending"].values():
        for source, message in parts.items():
            parts[source] = message["sketch"]
    from_old = ModelWindows.from_dict(old)
    expected = run(state)
    assert [w["window_start"] for w in expected] == [0.0, 60.0]
    assert run(restored) == expected and run(from_old) == expected
