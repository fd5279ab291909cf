"""Concept drift per model version: detection delay, false alarms and events per drift.

A frozen model (the pre-drift concept's own rule, so it is perfect before the drift) scores
river's Agrawal (classification function 4 -> 3) and STAGGER (0 -> 1) streams; labels carry
5 % label noise (flipped at random), so the stable error rate is ~5 %, not 0. The drift is at
record ``DRIFT_AT`` (20,000): abrupt (the generator switches) or gradual (width 1,000: record i
comes from the new concept with probability 1 / (1 + exp(-4 (i - DRIFT_AT) / width)), the
sigmoid of river's / MOA's ``ConceptDriftStream``).

Figures per suite and stream, over ``--seeds`` seeds:

* delay: mean labels from ``DRIFT_AT`` to the first event at or after it (abrupt);
* FA/20k: events before ``DRIFT_AT`` per 20,000 stable labels;
* events/drift: mean events in [DRIFT_AT, DRIFT_AT + 10,000) (target: exactly 1);
* gradual: share of seeds with an event in [DRIFT_AT - width, DRIFT_AT + 5,000) (at
  DRIFT_AT - width, 1.8 % of the records already come from the new concept: STAGGER's error
  rate is then ~6 % instead of 5 %, and ~11 % at DRIFT_AT - width / 2), and mean events in
  [DRIFT_AT - 3,000, DRIFT_AT + 10,000) (g.ev);
* stationary: events on ``--stationary`` labels of the pre-drift concept (~5 % errors) and,
  ``high``, on as many of STAGGER's post-drift concept scored by the pre-drift model (~58 %
  errors: a model that is often wrong, but stably so). Target: 0 for both.

``--mode stage`` feeds :class:`driftline.detectors.concept.ConceptStage` directly (the
function stage 2 runs per model version); ``--mode ordered`` first scatters the outcomes over
``--partitions`` sources in a random interleaving and passes them through the stage-2 buffer
(``driftline.streams.outcomes.ModelOutcomes``) as the worker does, which must give the same
events as one source; ``--mode worker`` (see ``bench_concept_worker.py``) runs the real worker.

Run: .cache/venv/bin/python benchmarks/bench_concept_stage.py [--seeds 10] [--suites default]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from river.datasets import synth

from driftline.detectors.concept import (
    DEFAULT_CONCEPT_DRIFT,
    ConceptSettings,
    ConceptStage,
    concept_config_from_dict,
)

DRIFT_AT = 20_000
LENGTH = 30_000
WIDTH = 1_000
NOISE = 0.05

_AGRAWAL = synth.Agrawal(classification_function=0)
AGRAWAL_RULES = _AGRAWAL._classification_functions
STAGGER_RULES = synth.STAGGER()._functions


def _agrawal(function: int, seed: int) -> Iterator[tuple[dict[str, Any], int]]:
    return iter(synth.Agrawal(classification_function=function, seed=seed))


def _stagger(function: int, seed: int) -> Iterator[tuple[dict[str, Any], int]]:
    return iter(synth.STAGGER(classification_function=function, seed=seed))


def _predict_agrawal(function: int) -> Callable[[dict[str, Any]], int]:
    rule = AGRAWAL_RULES[function]
    names = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]
    return lambda x: int(rule(*(x[n] for n in names)))


def _predict_stagger(function: int) -> Callable[[dict[str, Any]], int]:
    rule = STAGGER_RULES[function]
    return lambda x: int(rule(x["size"], x["color"], x["shape"]))


STREAMS: dict[str, tuple[Callable[..., Any], int, int, Callable[[int], Any]]] = {
    "Agrawal 4->3": (_agrawal, 4, 3, _predict_agrawal),
    "STAGGER 0->1": (_stagger, 0, 1, _predict_stagger),
}


def labelled_stream(
    name: str, seed: int, length: int = LENGTH, drift_at: int | None = DRIFT_AT, width: int = 1
) -> list[tuple[dict[str, Any], int, int]]:
    """(features, label with noise, frozen model's prediction) per record."""
    make, old, new, predictor = STREAMS[name]
    predict = predictor(old)
    before, after = make(old, seed), make(new, seed + 10_000)
    rng = random.Random(seed + 7)
    out = []
    for i in range(length):
        if drift_at is None:
            new_concept = False
        elif width == 1:
            new_concept = i >= drift_at
        else:
            z = max(-50.0, min(50.0, -4.0 * (i - drift_at) / width))
            new_concept = rng.random() < 1.0 / (1.0 + math.exp(z))
        x, y = next(after) if new_concept else next(before)
        label = 1 - y if rng.random() < NOISE else y
        out.append((x, label, predict(x)))
    return out


def error_stream(
    name: str, seed: int, length: int = LENGTH, drift_at: int | None = DRIFT_AT, width: int = 1
) -> np.ndarray:
    """0/1 errors of the frozen pre-drift model, label noise included."""
    rows = labelled_stream(name, seed, length, drift_at, width)
    return np.array([float(p != y) for _, y, p in rows], dtype=np.float64)


def run_stage(settings: ConceptSettings, errors: np.ndarray) -> list[int]:
    stage = ConceptStage(settings)
    ids = [f"{i:08d}" for i in range(errors.size)]
    found = stage.update(ids, np.arange(errors.size, dtype=np.float64), {"error": errors})
    return [d.index for d in found]


def suites() -> dict[str, ConceptSettings]:
    def one(*detectors: dict[str, Any], **rest: Any) -> ConceptSettings:
        return concept_config_from_dict(
            {"defaults": {"detectors": list(detectors), **rest}}
        ).defaults

    base = {"cooldown_records": 2000, "reset_on_detection": True}
    return {
        "default": DEFAULT_CONCEPT_DRIFT,
        "hddm_w": one({"kind": "hddm_w"}, **base),
        "hddm_a": one({"kind": "hddm_a"}, **base),
        "adwin": one({"kind": "adwin"}, **base),
        "ddm": one({"kind": "ddm"}, **base),
        "ddm_ws1000": one({"kind": "ddm", "params": {"warm_start": 1000}}, **base),
        "eddm": one({"kind": "eddm"}, **base),
        "page_hinkley_z": one({"kind": "page_hinkley"}, **base),
        "page_hinkley_z_t100": one({"kind": "page_hinkley", "params": {"threshold": 100}}, **base),
        "kswin": one({"kind": "kswin"}, **base),
        "adwin clock1": one({"kind": "adwin", "params": {"clock": 1}}, **base),
        "adwin clock4": one({"kind": "adwin", "params": {"clock": 4}}, **base),
        "adwin d0.01 clock1": one({"kind": "adwin", "params": {"clock": 1, "delta": 0.01}}, **base),
        "adwin clock1+hddm_a": one(
            {"kind": "adwin", "params": {"clock": 1}}, {"kind": "hddm_a"}, **base
        ),
        "hddm_w+adwin": one({"kind": "hddm_w"}, {"kind": "adwin"}, **base),
        "ph_z t25": one({"kind": "page_hinkley", "params": {"threshold": 25}}, **base),
    }


def measure(settings: ConceptSettings, seeds: int, stationary: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in STREAMS:
        delays, early, per_drift, gradual = [], 0, [], 0
        gradual_events: list[int] = []
        gradual_early = 0
        for seed in range(seeds):
            found = run_stage(settings, error_stream(name, seed))
            early += sum(i < DRIFT_AT for i in found)
            after = [i for i in found if DRIFT_AT <= i < DRIFT_AT + 10_000]
            per_drift.append(len(after))
            if after:
                delays.append(after[0] - DRIFT_AT)
            g = run_stage(settings, error_stream(name, seed + 100, width=WIDTH))
            gradual += any(DRIFT_AT - WIDTH <= i < DRIFT_AT + 5_000 for i in g)
            gradual_events.append(sum(DRIFT_AT - 3_000 <= i < DRIFT_AT + 10_000 for i in g))
            gradual_early += sum(i < DRIFT_AT - 3_000 for i in g)
        row[name] = {
            "delay": float(np.mean(delays)) if delays else math.nan,
            "missed": seeds - len(delays),
            "fa_per_20k": early / seeds * 20_000 / DRIFT_AT,
            "events_per_drift": float(np.mean(per_drift)),
            "gradual": gradual / seeds,
            "gradual_events_per_drift": float(np.mean(gradual_events)),
            "gradual_fa_per_17k": gradual_early / seeds,
            "delays": delays,
        }
    if stationary:
        errors = error_stream("Agrawal 4->3", 999, length=stationary, drift_at=None)
        row["stationary"] = len(run_stage(settings, errors))
        high = error_stream("STAGGER 0->1", 998, length=stationary, drift_at=0)
        row["high"] = len(run_stage(settings, high))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--stationary", type=int, default=200_000)
    ap.add_argument("--suites", default="default", help="comma-separated, or 'all'")
    args = ap.parse_args()
    known = suites()
    chosen = list(known) if args.suites == "all" else args.suites.split(",")
    print(
        f"frozen pre-drift model, {NOISE:.0%} label noise, drift at {DRIFT_AT}, "
        f"{args.seeds} seeds; stationary: {args.stationary} Agrawal-4 labels"
    )
    print(
        f"{'suite':<22}"
        + "".join(
            f"{s + ' delay':>20}{'FA/20k':>8}{'ev/drift':>9}{'gradual':>8}{'g.ev':>6}"
            for s in STREAMS
        )
        + f"{'stationary':>11}{'high':>6}{'s':>6}"
    )
    for name in chosen:
        t0 = time.perf_counter()
        row = measure(known[name], args.seeds, args.stationary)
        cells = "".join(
            f"{row[s]['delay']:>20.1f}{row[s]['fa_per_20k']:>8.2f}"
            f"{row[s]['events_per_drift']:>9.2f}{row[s]['gradual']:>8.0%}"
            f"{row[s]['gradual_events_per_drift']:>6.2f}"
            for s in STREAMS
        )
        print(
            f"{name:<22}{cells}{row.get('stationary', '-'):>11}{row.get('high', '-'):>6}"
            f"{time.perf_counter() - t0:>6.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
