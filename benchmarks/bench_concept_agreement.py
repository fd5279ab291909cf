"""Concept-drift detectors: agreement with river, detection delay, false alarms, cost.

For each of the seven detectors wrapped by ``driftline.detectors.concept``:

* agreement -- the wrapper and river itself, fed the same stream, flag the same indices
  (checked on every drift stream below; any mismatch prints NO and the exit code is 1);
* mean detection delay -- on streams with an abrupt concept drift at ``DRIFT_AT``, made by
  chaining two river synthetic streams by hand (``ConceptDriftStream(width=1)`` overflows in
  river 0.26.1), scored by a fixed rule = the pre-drift concept, so the error stream is
  label noise before the drift and noise + concept disagreement after it;
  detections before the drift count as early false alarms, none after it as a miss;
* false alarms per 100k on a stationary error stream (pre-drift concept only; KSWIN on a
  shorter one, scaled to 100k);
* µs per update through ``ConceptDriftMonitor.update_many``.

Streams: SEA (variant 0 -> 3, 10 % label noise; model: x0 + x1 > 8) and Agrawal
(function 0 -> 2, 5 % label noise added by hand; model: function 0).  The binary detectors
take the 0/1 error stream; ADWIN, KSWIN and Page-Hinkley take it too, Page-Hinkley
standardised with the mean/std of the first 1,000 errors of the stationary stream.

Run:  .cache/venv/bin/python benchmarks/bench_concept_agreement.py [--reps 5] [--stationary 100000]
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from river.datasets import synth
from river.drift import ADWIN, KSWIN, PageHinkley
from river.drift.binary import DDM, EDDM, HDDMA, HDDMW

from driftline.detectors.concept import DETECTOR_KINDS, ConceptDriftMonitor

DRIFT_AT = 5_000
LENGTH = 10_000

RIVER: dict[str, Callable[[], Any]] = {
    "adwin": ADWIN,
    "ddm": DDM,
    "eddm": EDDM,
    "hddm_a": HDDMA,
    "hddm_w": HDDMW,
    "page_hinkley": PageHinkley,
    "kswin": lambda: KSWIN(seed=0),
}


def sea_errors(variant: int, n: int, seed: int) -> np.ndarray:
    stream = synth.SEA(variant=variant, noise=0.1, seed=seed)
    return np.fromiter(
        ((x[0] + x[1] > 8) != y for x, y in itertools.islice(stream, n)), dtype=np.int64, count=n
    )


def _agrawal_rule0(x: dict[str, Any]) -> int:
    return int(x["age"] < 40 or x["age"] >= 60)


def agrawal_errors(function: int, n: int, seed: int) -> np.ndarray:
    stream: Iterator[tuple[dict[str, Any], int]] = iter(
        synth.Agrawal(classification_function=function, seed=seed)
    )
    noise = random.Random(seed + 7)
    out = np.empty(n, dtype=np.int64)
    for i, (x, y) in enumerate(itertools.islice(stream, n)):
        label = 1 - y if noise.random() < 0.05 else y
        out[i] = _agrawal_rule0(x) != label
    return out


SCENARIOS: dict[str, Callable[[int], np.ndarray]] = {
    "SEA 0->3": lambda s: np.r_[
        sea_errors(0, DRIFT_AT, s), sea_errors(3, LENGTH - DRIFT_AT, s + 10_000)
    ],
    "Agrawal 0->2": lambda s: np.r_[
        agrawal_errors(0, DRIFT_AT, s), agrawal_errors(2, LENGTH - DRIFT_AT, s + 10_000)
    ],
}


def river_drifts(kind: str, values: np.ndarray) -> list[int]:
    det = RIVER[kind]()
    out = []
    for i, x in enumerate(values.tolist()):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def make(kind: str, ref_mean: float, ref_std: float) -> ConceptDriftMonitor:
    if kind == "page_hinkley":
        return ConceptDriftMonitor(kind, reference_mean=ref_mean, reference_std=ref_std)
    return ConceptDriftMonitor(kind)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="drift streams per scenario")
    ap.add_argument("--stationary", type=int, default=100_000, help="stationary stream length")
    ap.add_argument("--kswin-stationary", type=int, default=20_000, help="same, for KSWIN")
    args = ap.parse_args()

    stationary = sea_errors(0, args.stationary, seed=999)
    ref_mean, ref_std = float(stationary[:1000].mean()), float(stationary[:1000].std(ddof=1))
    drift_streams = {name: [f(r) for r in range(args.reps)] for name, f in SCENARIOS.items()}
    print(
        f"river drift detectors via ConceptDriftMonitor; drift at {DRIFT_AT} of {LENGTH}, "
        f"{args.reps} streams per scenario; stationary SEA-0 errors n={args.stationary} "
        f"(KSWIN: first {args.kswin_stationary}; error rate {stationary.mean():.3f})"
    )
    header = (
        f"{'detector':<13}{'agree':>6}"
        + "".join(f"{name + ' delay':>20}{'missed':>8}{'early':>7}" for name in SCENARIOS)
        + f"{'FA/100k':>9}{'µs/update':>11}"
    )
    print(header)
    mismatches = 0
    for kind in DETECTOR_KINDS:
        agree = True
        cells = ""
        for streams in drift_streams.values():
            delays, missed, early = [], 0, 0
            for values in streams:
                got = make(kind, ref_mean, ref_std).update_many(values).tolist()
                fed = (values - ref_mean) / ref_std if kind == "page_hinkley" else values
                agree &= got == river_drifts(kind, fed)
                early += sum(i < DRIFT_AT for i in got)
                after = [i for i in got if i >= DRIFT_AT]
                if after:
                    delays.append(after[0] - DRIFT_AT)
                else:
                    missed += 1
            mean_delay = f"{np.mean(delays):.0f}" if delays else "-"
            cells += f"{mean_delay:>20}{missed:>8}{early:>7}"
        # KSWIN runs a KS test per update (~0.2-0.6 ms): a shorter stationary stream for it
        stat = stationary[: args.kswin_stationary] if kind == "kswin" else stationary
        mon = make(kind, ref_mean, ref_std)
        t0 = time.perf_counter()
        false_alarms = mon.update_many(stat).size
        us = (time.perf_counter() - t0) / stat.size * 1e6
        mismatches += not agree
        fa = false_alarms * 100_000 / stat.size
        print(f"{kind:<13}{'yes' if agree else 'NO':>6}{cells}{fa:>9.1f}{us:>11.2f}")
    print(
        "delay = mean samples from the drift to the first detection (detected streams only); "
        "early = detections before the drift, summed over streams"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
