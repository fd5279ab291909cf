"""`Pipeline` end to end without a broker: a fake `send` records what each stage writes, the
partials it sends are fed back to stage 2 (as the partials topic would), the checkpoint loader
is a dict. Predictions and labels in; window summaries, provisional then final performance
windows and events out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import thresholds_from_dict
from driftline.simulate import Drift, simulate
from driftline.streams.pipeline import Pipeline, Topics
from tests.unit.test_pipeline_input import Broker, Message

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0
NOW = START + 3600.0
TOPICS = Topics("predictions", "dlq", "partials", "alerts", "metrics", "ckpt")


@pytest.fixture(scope="module")
def profile(fraud_profile: ReferenceProfile) -> ReferenceProfile:
    return fraud_profile


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(
        ROOT / "config" / "driftline.yaml",
        environ={
            "DRIFTLINE_WINDOWS_SIZE_SECONDS": "60",
            "DRIFTLINE_LABELS_HORIZON_SECONDS": "30",
            "DRIFTLINE_LABELS_PROVISIONAL_INTERVAL_SECONDS": "0",
        },
    )


class Run:
    """A pipeline, its fake broker, and the partials topic played back into stage 2."""

    def __init__(self, config: Config, profile: ReferenceProfile) -> None:
        self.broker = Broker()
        self.replayed = 0

        async def no_checkpoints() -> dict[str, Any]:
            return {}

        self.pipeline = Pipeline(
            config,
            profiles={("fraud", "1"): profile},
            thresholds=thresholds_from_dict({}),
            topics=TOPICS,
            n_sources=1,
            send=self.broker.send,
            load_checkpoints=no_checkpoints,
            clock=lambda: NOW,
        )
        self.offsets = {"predictions": 0, "labels": 0}

    async def feed(self, topic: str, payloads: list[dict[str, Any]]) -> None:
        first = self.offsets[topic]
        batch = [
            Message(topic, 0, first + i, b"k", orjson.dumps(p)) for i, p in enumerate(payloads)
        ]
        self.offsets[topic] += len(batch)
        if topic == "predictions":
            await self.pipeline.on_predictions(batch)
        else:
            await self.pipeline.on_labels(batch)
        partials = self.broker.sent.get("partials", [])[self.replayed :]
        self.replayed += len(partials)
        await self.pipeline.on_partials(
            [Message("partials", 0, i, key, value) for i, (key, value, _) in enumerate(partials)]
        )

    def out(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, value, _ in self.broker.sent.get(topic, [])]


def test_predictions_and_labels_in_windows_performance_and_events_out(
    config: Config, profile: ReferenceProfile
) -> None:
    # 250 s at 10/s; the labels flip from 60 s on (concept drift): windows [0, 60), [60, 120)
    # and [120, 180) close (60 s lateness), the first healthy, the others degraded
    stream, truth = simulate(
        2_500, seed=5, start_time=START, rate_per_second=10.0, schedule=[Drift("concept", 60.0)]
    )
    run = Run(config, profile)

    async def scenario() -> None:
        for first in range(0, len(stream), 500):
            await run.feed("predictions", stream[first : first + 500])
        windows = [s for s in run.out("metrics") if s["type"] == "window"]
        assert [w["evaluation"]["window_start"] for w in windows] == [
            START,
            START + 60,
            START + 120,
        ]
        provisional = [s for s in run.out("metrics") if s["type"] == "performance_window"]
        assert [(p["window_start"], p["labelled"], p["final"]) for p in provisional] == [
            (START, 0, False),
            (START + 60, 0, False),
            (START + 120, 0, False),
        ]
        labels = [{**label, "timestamp": label["timestamp"] + 5} for label in truth]
        for first in range(0, len(labels), 300):
            await run.feed("labels", labels[first : first + 300])

    asyncio.run(scenario())
    performance = [s for s in run.out("metrics") if s["type"] == "performance_window"]
    by_window: dict[float, list[dict[str, Any]]] = {}
    for summary in performance:
        by_window.setdefault(summary["window_start"], []).append(summary)
    for start in (START, START + 60, START + 120):
        mine = by_window[start]
        assert [s["final"] for s in mine[:-1]] == [False] * (len(mine) - 1)
        assert mine[-1]["final"] and mine[-1]["label_coverage"] == 1.0
        labelled = [s["labelled"] for s in mine]
        assert labelled == sorted(labelled)  # whole totals each time: never counted twice
        assert any(0 < n < 600 for n in labelled), "an update with part of the labels"
    healthy, degraded = by_window[START][-1], by_window[START + 60][-1]
    assert healthy["accuracy_drop"] < 0.05 and not healthy.get("event_ids")
    assert degraded["accuracy_drop"] > 0.05 and degraded["event_ids"]

    drops = [e for e in run.out("alerts") if e["type"] == "performance_drop"]
    # one event per degraded window, raised once (from a provisional window with enough
    # labels, or the final one), named by every later summary of the window
    assert sorted(e["window_start"] for e in drops) == [START + 60, START + 120]
    for event in drops:
        later = [s for s in by_window[event["window_start"]] if s.get("event_ids")]
        assert later[-1]["event_ids"] == [event["event_id"]]
        evidence = event["evidence"]
        assert evidence["final"] or (
            evidence["label_coverage"] >= 0.8 and evidence["labelled"] >= 200
        )
    assert any(e["type"] == "concept_drift" for e in run.out("alerts"))

    # every changed state goes to the checkpoint topic: one partition, one model
    assert asyncio.run(run.pipeline.checkpoint()) == 2  # s1/0 and s2/fraud
    # (and the reservoir segments of s1/0's open windows, streams/segments.py)
    heads = {k for k in run.broker.checkpoints() if "#seg/" not in k}
    assert heads == {"s1/0", "s2/fraud"}


def test_a_provisional_window_with_few_labels_does_not_page(
    config: Config, profile: ReferenceProfile
) -> None:
    stream, truth = simulate(
        2_400, seed=5, start_time=START, rate_per_second=10.0, schedule=[Drift("concept", 0.0)]
    )
    run = Run(config, profile)

    async def scenario() -> None:
        await run.feed("predictions", stream)
        # 50 labels of the first window only (label time stays below its horizon)
        await run.feed(
            "labels", [{**label, "timestamp": label["timestamp"]} for label in truth[:50]]
        )

    asyncio.run(scenario())
    first = [
        s
        for s in run.out("metrics")
        if s["type"] == "performance_window" and s["window_start"] == START
    ]
    assert first[-1]["labelled"] == 50 and not first[-1]["final"]
    assert first[-1]["accuracy_drop"] > 0.05  # degraded, but 50 labels: no page
    assert not [e for e in run.out("alerts") if e["type"] == "performance_drop"]
