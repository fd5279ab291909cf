"""Detection quality of driftline.detectors: false alarms on stationary streams, power on drift.

Run from the repository root::

    .cache/venv/bin/python benchmarks/bench_detection_quality.py            # full (a few minutes)
    .cache/venv/bin/python benchmarks/bench_detection_quality.py --quick    # CI-sized

Stream: 10 numeric features (normal, shifted/scaled normal, lognormal, exponential, uniform,
Poisson (discrete), Student t(5), bimodal mixture, normal with 5 % missing, gamma with 0.1 %
+inf) and 3 categorical (3, 8 and 60 Zipf categories; the last exceeds the 50-category cap).
The references are built from 50,000 records of the same stream (4 independent references;
windows are split evenly between them so one unlucky reference cannot dominate).

False alarms: share of windows whose *model-level* verdict is "drift", on windows of 1,000,
10,000 and 100,000 records (all records go through ``WindowSketch.update``).
Power: share of windows detected when every record of the window comes after the change (the
first window after an abrupt change), per scenario, with a curve over the change size; the
model-level verdict and each test's raw verdict are reported.

Output drift (``--output``; part of every run unless ``--skip-output``): a fraud-like model's
outputs only (5 % positives, calibrated-looking scores, decision at 0.5), reference of 50,000
records; share of windows whose *output* verdict is "drift" on stationary windows of 1,000 and
10,000 records, and on the first window of 10,000 after: the mean score +0.05, the positive
rate 5 % -> 8 %, 10 more points of predictions in the low-confidence band [0.4, 0.6).

Data quality (``--quality``; part of every run unless ``--skip-quality``): fraud-like features
(lognormal amount with 20 % missing, Poisson counts with ties, gamma account age, a
5,000-value Zipfian merchant, a boolean flag); share of stationary windows of 1,000 and 10,000
records with any event, and share of first windows of 10,000 after a change whose events
include the right type naming the right feature: missing 20 % -> 40 %, a feature gone (key
absent), a feature all-null, a feature constant, a x100 unit change, a new merchant with 5 %
of traffic, a 0.2-sd shift of log(amount).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import WindowEvaluation, evaluate_window
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds

C0 = np.array(["a", "b", "c"], dtype=object)
P0 = np.array([0.5, 0.3, 0.2])
C1 = np.array([f"k{i}" for i in range(8)], dtype=object)
P1 = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.06, 0.05, 0.04])
C2 = np.array([f"z{i}" for i in range(60)], dtype=object)
P2 = 1.0 / np.arange(1, 61) ** 1.1
P2 = P2 / P2.sum()
NUMERIC = [f"n{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1", "c2"]


@dataclass(frozen=True)
class Drift:
    """A change applied to the stationary stream (all defaults: no change)."""

    shift_n0: float = 0.0  # mean shift of n0, in reference std
    variance_n1: float = 1.0  # variance factor of n1
    correlation: float = 0.0  # correlation between n0 and n1 (marginals unchanged)
    share_c0: float = 0.0  # share moved from category "b" to "a" of c0 (0.1 = 10 points)


def generate(rng: np.random.Generator, n: int, drift: Drift = Drift()) -> RecordBatch:
    z0 = rng.standard_normal(n)
    z1 = rng.standard_normal(n)
    if drift.correlation:
        r = drift.correlation
        z1 = r * z0 + np.sqrt(1.0 - r * r) * z1
    numeric = {
        "n0": z0 + drift.shift_n0,
        "n1": 50.0 + 10.0 * np.sqrt(drift.variance_n1) * z1,
        "n2": rng.lognormal(0.0, 0.75, n),
        "n3": rng.exponential(2.0, n),
        "n4": rng.random(n),
        "n5": rng.poisson(3.0, n).astype(np.float64),
        "n6": rng.standard_t(5, n),
        "n7": np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.0, 1.0, n)),
        "n8": np.where(rng.random(n) < 0.05, np.nan, rng.normal(5.0, 2.0, n)),
        "n9": np.where(rng.random(n) < 0.001, np.inf, rng.gamma(2.0, 1.0, n)),
    }
    p0 = P0 + np.array([drift.share_c0, -drift.share_c0, 0.0])
    categorical = {
        "c0": C0[np.searchsorted(np.cumsum(p0), rng.random(n) * p0.sum())],
        "c1": C1[np.minimum(np.searchsorted(np.cumsum(P1), rng.random(n)), len(C1) - 1)],
        "c2": C2[np.minimum(np.searchsorted(np.cumsum(P2), rng.random(n)), len(C2) - 1)],
    }
    score = 1.0 / (1.0 + np.exp(-(0.8 * z0 - 0.5)))
    prediction = np.where(score > 0.5, "fraud", "ok").astype(object)
    return RecordBatch(
        numeric=numeric,
        categorical=categorical,
        event_time=np.zeros(n),
        prediction=prediction,
        score=score,
        latency_seconds=rng.lognormal(-4.0, 0.5, n),
    )


def build_profile(seed: int, n: int = 50_000) -> ReferenceProfile:
    batch = generate(np.random.default_rng(10_000 + seed), n)
    return ReferenceProfile.from_batch(batch, model="bench", model_version=str(seed), seed=seed)


def window_evaluation(
    profile: ReferenceProfile,
    rng: np.random.Generator,
    size: int,
    drift: Drift,
    thresholds: ModelThresholds,
    seed: int,
    chunk: int = 20_000,
) -> WindowEvaluation:
    sketch = WindowSketch.empty(profile, float(seed), float(seed) + 60.0, seed=seed)
    done = 0
    while done < size:  # large windows arrive as several batches, as in the stream
        n = min(chunk, size - done)
        sketch.update(generate(rng, n, drift))
        done += n
    return evaluate_window(profile, sketch, thresholds)


@dataclass
class Tally:
    windows: int = 0
    model: int = 0
    features: int = 0  # some feature drifted
    multivariate: int = 0
    tests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, ev: WindowEvaluation, watched: str | None) -> None:
        self.windows += 1
        self.model += ev.drifted
        self.features += bool(ev.drifted_features)
        self.multivariate += bool(ev.multivariate and ev.multivariate.drifted)
        if watched is not None and watched in ev.features:
            for name, res in ev.features[watched].tests.items():
                self.tests[name] = self.tests.get(name, 0) + int(res.drifted)
            self.tests["feature_verdict"] = self.tests.get("feature_verdict", 0) + int(
                ev.features[watched].drifted
            )
        if ev.multivariate is not None:
            for name, res in ev.multivariate.tests.items():
                key = f"raw_{name}"
                self.tests[key] = self.tests.get(key, 0) + int(res.drifted)

    def merge(self, other: Tally) -> None:
        self.windows += other.windows
        self.model += other.model
        self.features += other.features
        self.multivariate += other.multivariate
        self.seconds += other.seconds
        for k, v in other.tests.items():
            self.tests[k] = self.tests.get(k, 0) + v


def _job(args: tuple[int, int, int, Drift, str | None, int]) -> Tally:
    ref_seed, size, n_windows, drift, watched, job_seed = args
    profile = _PROFILES.get(ref_seed) or build_profile(ref_seed)
    _PROFILES[ref_seed] = profile
    thresholds = ModelThresholds()
    rng = np.random.default_rng(job_seed)
    tally = Tally()
    start = time.perf_counter()
    for i in range(n_windows):
        tally.add(
            window_evaluation(profile, rng, size, drift, thresholds, seed=job_seed * 10_000 + i),
            watched,
        )
    tally.seconds = time.perf_counter() - start
    return tally


_PROFILES: dict[int, ReferenceProfile] = {}


def run(
    pool: ProcessPoolExecutor,
    size: int,
    n_windows: int,
    drift: Drift,
    watched: str | None,
    n_refs: int,
    seed: int,
) -> Tally:
    jobs_per_ref = 2
    per_job = max(1, n_windows // (n_refs * jobs_per_ref))
    args = [
        (r, size, per_job, drift, watched, seed * 1000 + r * 10 + j)
        for r in range(n_refs)
        for j in range(jobs_per_ref)
    ]
    total = Tally()
    for tally in pool.map(_job, args):
        total.merge(tally)
    return total


# -- output drift ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputChange:
    score_shift: float = 0.0
    positive_rate: float = 0.05
    low_confidence: float = 0.0  # share of records moved into the band [0.4, 0.6)


def generate_outputs(rng: np.random.Generator, n: int, change: OutputChange) -> RecordBatch:
    positive = rng.random(n) < change.positive_rate
    score = np.where(positive, rng.beta(8.0, 3.0, n), rng.beta(1.2, 14.0, n))
    score = np.clip(score + change.score_shift, 0.0, 1.0)
    if change.low_confidence:
        moved = rng.random(n) < change.low_confidence
        score = np.where(moved, rng.uniform(0.4, 0.6, n), score)
    return RecordBatch(
        numeric={"x": rng.standard_normal(n)},
        categorical={},
        event_time=np.zeros(n),
        prediction=np.where(score >= 0.5, "1", "0").astype(object),
        score=score,
    )


def _output_job(args: tuple[int, int, int, OutputChange, int]) -> tuple[int, int, dict[str, int]]:
    ref_seed, size, n_windows, change, job_seed = args
    ref_rng = np.random.default_rng(20_000 + ref_seed)
    reference = generate_outputs(ref_rng, 50_000, OutputChange())
    profile = ReferenceProfile.from_batch(
        reference,
        model="bench",
        model_version=str(ref_seed),
        labels=np.where(ref_rng.random(50_000) < reference.score, "1", "0"),  # type: ignore[operator]
    )
    thresholds = ModelThresholds(multivariate=False)
    rng = np.random.default_rng(job_seed)
    flagged, signals = 0, {}
    for i in range(n_windows):
        sketch = WindowSketch.empty(profile, float(i), float(i) + 60.0)
        sketch.update(generate_outputs(rng, size, change))
        output = evaluate_window(profile, sketch, thresholds).output
        assert output is not None
        flagged += output.drifted
        for name in output.drifted_signals:
            signals[name] = signals.get(name, 0) + 1
    return n_windows, flagged, signals


def run_output(
    pool: ProcessPoolExecutor, size: int, n_windows: int, change: OutputChange, seed: int
) -> tuple[int, int, dict[str, int]]:
    jobs = 4
    per_job = max(1, n_windows // jobs)
    total, flagged, signals = 0, 0, {}
    args = [(j % 4, size, per_job, change, seed * 100 + j) for j in range(jobs)]
    for n, k, found in pool.map(_output_job, args):
        total, flagged = total + n, flagged + k
        for name, c in found.items():
            signals[name] = signals.get(name, 0) + c
    return total, flagged, signals


def output_quality(pool: ProcessPoolExecutor, quick: bool) -> dict[str, Any]:
    stationary_windows = 100 if quick else 400
    power_windows = 40 if quick else 200
    out: dict[str, Any] = {"false_alarms": {}, "power": {}}
    print("Output drift: false alarms (output verdict on stationary windows)")
    for size in (1_000, 10_000):
        n, k, found = run_output(pool, size, stationary_windows, OutputChange(), seed=size)
        print(f"  window {size:>7,}: {rate(k, n)}  signals {found}")
        out["false_alarms"][str(size)] = {"windows": n, "flagged": k, "signals": found}
    print("Output drift: power, first window of 10,000 after the change")
    for title, change in (
        ("mean score +0.05", OutputChange(score_shift=0.05)),
        ("positive rate 5% -> 8%", OutputChange(positive_rate=0.08)),
        ("low-confidence share +10 points", OutputChange(low_confidence=0.10)),
    ):
        n, k, found = run_output(pool, 10_000, power_windows, change, seed=len(title))
        print(f"  {title}: {rate(k, n)}  signals {found}")
        out["power"][title] = {"windows": n, "detected": k, "signals": found}
    return out


# -- data quality ------------------------------------------------------------------------------

MERCHANTS = np.array([f"m{i}" for i in range(5_000)], dtype=object)
MERCHANT_P = 1.0 / np.arange(1, 5_001) ** 1.1
MERCHANT_P = MERCHANT_P / MERCHANT_P.sum()
QUALITY_TYPES = {"is_night": "boolean"}


def generate_quality(rng: np.random.Generator, n: int, change: str = "") -> RecordBatch:
    log_amount = rng.normal(3.0, 1.0, n) + (0.2 if change == "log_shift" else 0.0)
    amount = np.exp(log_amount) * (100.0 if change == "unit_x100" else 1.0)
    missing_share = 0.4 if change == "missing_40" else 0.2
    amount = np.where(rng.random(n) < missing_share, np.nan, amount)
    txn = rng.poisson(3.0, n).astype(np.float64)
    age = rng.gamma(2.0, 200.0, n)
    if change == "all_null":
        age = np.full(n, np.nan)
    elif change == "constant":
        age = np.full(n, 365.0)
    merchant = MERCHANTS[
        np.minimum(np.searchsorted(np.cumsum(MERCHANT_P), rng.random(n)), len(MERCHANTS) - 1)
    ]
    if change == "new_category":
        merchant = np.where(rng.random(n) < 0.05, "m_new", merchant).astype(object)
    night = np.where(rng.random(n) < 0.3, "true", "false").astype(object)
    absent = None
    if change == "gone":
        txn = np.full(n, np.nan)
        absent = {"txn_count": np.ones(n, dtype=bool)}
    return RecordBatch(
        numeric={"amount": amount, "txn_count": txn, "account_age_days": age},
        categorical={"merchant": merchant, "is_night": night},
        event_time=np.zeros(n),
        prediction=np.full(n, None, dtype=object),
        absent=absent,
    )


QUALITY_EXPECTED: dict[str, set[tuple[str, str]]] = {
    "missing_40": {("data_quality", "amount")},
    "gone": {("data_quality", "txn_count")},
    "all_null": {("data_quality", "account_age_days")},
    "constant": {("data_quality", "account_age_days")},
    "unit_x100": {("data_quality", "amount"), ("data_drift", "amount")},
    "new_category": {("data_drift", "merchant"), ("data_quality", "merchant")},
    "log_shift": {("data_drift", "amount")},
}


def _quality_job(args: tuple[int, int, int, str, int]) -> tuple[int, int, dict[str, int]]:
    from driftline.streams.events import window_events

    ref_seed, size, n_windows, change, job_seed = args
    profile = ReferenceProfile.from_batch(
        generate_quality(np.random.default_rng(30_000 + ref_seed), 50_000),
        model="bench",
        model_version=str(ref_seed),
        feature_types=QUALITY_TYPES,  # type: ignore[arg-type]
    )
    thresholds = ModelThresholds()
    rng = np.random.default_rng(job_seed)
    hits, found = 0, {}
    for i in range(n_windows):
        sketch = WindowSketch.empty(profile, float(i), float(i) + 60.0)
        sketch.update(generate_quality(rng, size, change))
        events = window_events(evaluate_window(profile, sketch, thresholds), 0.0)
        pairs = {(e["type"], e["feature"] or "") for e in events}
        for e in events:
            key = f"{e['type']}:{e['feature']}:{e['test']}"
            found[key] = found.get(key, 0) + 1
        hits += bool(pairs & QUALITY_EXPECTED[change]) if change else bool(events)
    return n_windows, hits, found


def run_quality(
    pool: ProcessPoolExecutor, size: int, n_windows: int, change: str, seed: int
) -> tuple[int, int, dict[str, int]]:
    jobs = 4
    per_job = max(1, n_windows // jobs)
    total, hits, found = 0, 0, {}
    args = [(j % 4, size, per_job, change, seed * 100 + j) for j in range(jobs)]
    for n, k, f in pool.map(_quality_job, args):
        total, hits = total + n, hits + k
        for key, c in f.items():
            found[key] = found.get(key, 0) + c
    return total, hits, found


def quality(pool: ProcessPoolExecutor, quick: bool) -> dict[str, Any]:
    stationary_windows = 100 if quick else 300
    power_windows = 40 if quick else 100
    out: dict[str, Any] = {"false_alarms": {}, "power": {}}
    print("Data quality and drift on fraud-like features: stationary windows with any event")
    for size in (1_000, 10_000):
        n, k, found = run_quality(pool, size, stationary_windows, "", seed=size)
        top = dict(sorted(found.items(), key=lambda kv: -kv[1])[:5])
        print(f"  window {size:>7,}: {rate(k, n)}  most frequent events {top}")
        out["false_alarms"][str(size)] = {"windows": n, "with_events": k, "events": found}
    print("Detected in the first window of 10,000 (event of the right type and feature)")
    for change in QUALITY_EXPECTED:
        n, k, found = run_quality(pool, 10_000, power_windows, change, seed=len(change) + 7)
        top = dict(sorted(found.items(), key=lambda kv: -kv[1])[:4])
        print(f"  {change:<13}: {rate(k, n)}  events {top}")
        out["power"][change] = {"windows": n, "detected": k, "events": found}
    return out


def rate(k: int, n: int) -> str:
    return f"{k}/{n} = {100.0 * k / n:.2f}%" if n else "n/a"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (about 1 minute)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--skip-false-alarms", action="store_true")
    parser.add_argument("--skip-power", action="store_true")
    parser.add_argument("--skip-output", action="store_true", help="skip the output-drift part")
    parser.add_argument("--output", action="store_true", help="only the output-drift part")
    parser.add_argument("--skip-quality", action="store_true", help="skip the data-quality part")
    parser.add_argument("--quality", action="store_true", help="only the data-quality part")
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="false-alarm window sizes, comma-separated"
    )
    opts = parser.parse_args(argv)
    fa_windows = 96 if opts.quick else 1000
    fa_big_windows = 48 if opts.quick else 1000
    power_windows = 48 if opts.quick else 200
    n_refs = 4
    results: dict[str, Any] = {"false_alarms": {}, "power": {}}
    if opts.output or opts.quality:
        opts.skip_false_alarms = opts.skip_power = True
        opts.skip_output = opts.skip_output or not opts.output
        opts.skip_quality = opts.skip_quality or not opts.quality
    with ProcessPoolExecutor(max_workers=opts.workers) as pool:
        if not opts.skip_output:
            results["output"] = output_quality(pool, opts.quick)
        if not opts.skip_quality:
            results["quality"] = quality(pool, opts.quick)
        if not opts.skip_false_alarms:
            print("False alarms (model-level verdict on stationary windows)")
            for size in (int(v) for v in opts.sizes.split(",")):
                n_win = fa_big_windows if size >= 100_000 else fa_windows
                start = time.perf_counter()
                t = run(pool, size, n_win, Drift(), None, n_refs, seed=size)
                wall = time.perf_counter() - start
                print(
                    f"  window {size:>7,}: model {rate(t.model, t.windows)}; "
                    f"feature-level {rate(t.features, t.windows)}; "
                    f"multivariate {rate(t.multivariate, t.windows)}; "
                    f"raw MMD {rate(t.tests.get('raw_mmd', 0), t.windows)}, "
                    f"raw PCA-rec {rate(t.tests.get('raw_pca_reconstruction', 0), t.windows)}, "
                    f"raw PCA-cov {rate(t.tests.get('raw_pca_covariance', 0), t.windows)} "
                    f"[{wall:.0f} s]"
                )
                results["false_alarms"][str(size)] = {
                    "windows": t.windows,
                    "model": t.model,
                    "features": t.features,
                    "multivariate": t.multivariate,
                    "raw": dict(t.tests),
                }
        if not opts.skip_power:
            scenarios: list[tuple[str, int, str | None, list[float], Callable[[float], Drift]]] = [
                (
                    "mean shift of n0 (std)",
                    2_000,
                    "n0",
                    [0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                    lambda v: Drift(shift_n0=v),
                ),
                (
                    "share moved b->a in c0",
                    2_000,
                    "c0",
                    [0.02, 0.04, 0.06, 0.08, 0.1],
                    lambda v: Drift(share_c0=v),
                ),
                (
                    "variance factor of n1",
                    5_000,
                    "n1",
                    [1.1, 1.2, 1.3, 1.4, 1.5],
                    lambda v: Drift(variance_n1=v),
                ),
                (
                    "correlation n0-n1",
                    5_000,
                    None,
                    [0.1, 0.2, 0.3, 0.4, 0.6],
                    lambda v: Drift(correlation=v),
                ),
            ]
            for title, size, watched, values, make in scenarios:
                print(f"Power: {title}, windows of {size:,} (share of windows detected)")
                curve = []
                for v in values:
                    t = run(pool, size, power_windows, make(v), watched, n_refs, seed=int(v * 997))
                    raw = {k: round(c / t.windows, 3) for k, c in sorted(t.tests.items())}
                    print(
                        f"  {v:>5}: model {rate(t.model, t.windows)}, "
                        f"multivariate {rate(t.multivariate, t.windows)}; raw: {raw}"
                    )
                    curve.append(
                        {
                            "value": v,
                            "windows": t.windows,
                            "model": t.model,
                            "multivariate": t.multivariate,
                            "raw": raw,
                        }
                    )
                results["power"][title] = curve
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
