"""Speed of driftline.detectors on the hot path: batch building, sketch update, window evaluation.

Run from the repository root::

    .cache/venv/bin/python benchmarks/bench_detection_speed.py [--repeat 50]

Batches of 10,000 records with 13 features (10 numeric, 3 categorical; the stream of
``bench_detection_quality.py``). The machine is shared and noisy, so each figure is given as
the median and the minimum over the repeats and as a ratio to a baseline measured in the same
run: ``np.histogram`` of the same 10 numeric columns of 10,000 values on 20 bins (what a
minimal, non-mergeable per-feature histogram would cost).

``--compare REF`` (e.g. ``main``) also runs the same measurements on the code of a git
revision (``git archive REF driftline`` into a temp dir, imported first in a subprocess)
alternately with this checkout's (``--rounds`` pairs of subprocesses, default 3), in the
same run, and prints the ratio of the medians (this checkout / REF).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_detection_quality import NUMERIC, build_profile, generate

from driftline.detectors import stats
from driftline.detectors.batch import RecordBatch
from driftline.detectors.evaluate import MMD_MAX_SAMPLES, MMD_PERMUTATIONS, evaluate_window
from driftline.detectors.profile import standardised_sample
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import ModelThresholds


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(median, min) wall time in milliseconds."""
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def as_records(batch: RecordBatch) -> list[dict[str, Any]]:
    n = len(batch)
    cols = {
        **{k: v.tolist() for k, v in batch.numeric.items()},
        **{k: v.tolist() for k, v in batch.categorical.items()},
    }
    score = batch.score.tolist() if batch.score is not None else [None] * n
    latency = (batch.latency_seconds * 1000).tolist()
    pred = batch.prediction.tolist()
    return [
        {
            "prediction_id": f"p{i}",
            "model": "bench",
            "model_version": "0",
            "timestamp": 1_700_000_000.0 + i,
            "features": {k: v[i] for k, v in cols.items()},
            "prediction": pred[i],
            "score": score[i],
            "latency_ms": latency[i],
        }
        for i in range(n)
    ]


def _measure(pythonpath: str | None, repeat: int, out: str) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    subprocess.run(
        [sys.executable, __file__, "--repeat", str(repeat), "--json", out],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with open(out, encoding="utf-8") as handle:
        result: dict[str, float] = json.load(handle)
    return result


def compare(ref: str, repeat: int, rounds: int = 3) -> dict[str, float]:
    """Ratio (this checkout / revision ``ref``) of each step's median, measured alternately
    in ``rounds`` pairs of subprocesses so that both see the same machine load."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", ref, "driftline"],
            cwd=os.path.dirname(here),
            check=True,
            capture_output=True,
        ).stdout
        archive_path = os.path.join(tmp, "old.tar")
        with open(archive_path, "wb") as handle:
            handle.write(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(tmp, filter="data")
        new: dict[str, list[float]] = {}
        old: dict[str, list[float]] = {}
        for _ in range(rounds):
            for target, path in ((new, None), (old, tmp)):
                for label, value in _measure(path, repeat, os.path.join(tmp, "m.json")).items():
                    target.setdefault(label, []).append(value)
        return {
            label: statistics.median(values) / statistics.median(old[label])
            for label, values in new.items()
            if label in old and statistics.median(old[label]) > 0
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--compare", metavar="REF", help="also measure git revision REF")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs for --compare")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # medians, for --compare
    opts = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    profile = build_profile(0)
    schema = profile.feature_types
    batch = generate(rng, 10_000)
    records = as_records(batch)
    parsed = RecordBatch.from_records(records, schema)

    edges = {
        k: np.quantile(batch.numeric[k][np.isfinite(batch.numeric[k])], np.linspace(0, 1, 21))
        for k in NUMERIC
    }

    def baseline() -> None:
        for k in NUMERIC:
            x = batch.numeric[k]
            np.histogram(x[np.isfinite(x)], bins=edges[k])

    def update() -> None:
        WindowSketch.empty(profile, 0.0, 60.0).update(parsed)

    base = timed(baseline, opts.repeat)
    rows = [("baseline np.histogram, 10 numeric columns", base)]
    rows.append(
        (
            "RecordBatch.from_records, 10,000 dicts",
            timed(lambda: RecordBatch.from_records(records, schema), max(5, opts.repeat // 5)),
        )
    )
    rows.append(("WindowSketch.update, 10,000 records", timed(update, opts.repeat)))

    window = WindowSketch.empty(profile, 0.0, 60.0)
    for _ in range(5):  # a 50,000-record window: full 2,000-row reservoir
        window.update(generate(rng, 10_000))
    thresholds = ModelThresholds()
    rows.append(
        (
            "evaluate_window (all tests, MMD + PCA)",
            timed(lambda: evaluate_window(profile, window, thresholds), max(5, opts.repeat // 2)),
        )
    )

    # where evaluation time goes (same inputs as evaluate_window)
    ref = standardised_sample(profile, profile.sample)
    win = standardised_sample(profile, window.reservoir_rows)
    pca = stats.PCAReconstruction.from_dict(profile.pca or {})
    parts: list[tuple[str, Callable[[], Any], int]] = [
        (
            "  part: ks_binned x10",
            lambda: [
                stats.ks_binned(profile.numeric[k].counts, window.numeric[k].counts)
                for k in NUMERIC
            ],
            1,
        ),
        (
            "  part: ks (sample, asymptotic p) x10",
            lambda: [
                stats.ks_exact(profile.sample[:, i], window.reservoir_rows[:, i], method="asymp")
                for i in range(10)
            ],
            1,
        ),
        (
            "  part: wasserstein x10",
            lambda: [
                stats.wasserstein(profile.sample[:, i], window.reservoir_rows[:, i], 1.0)
                for i in range(10)
            ],
            1,
        ),
        (
            f"  part: mmd ({MMD_PERMUTATIONS} permutations, {MMD_MAX_SAMPLES} rows)",
            lambda: stats.mmd(
                ref, win, n_permutations=MMD_PERMUTATIONS, max_samples=MMD_MAX_SAMPLES
            ),
            1,
        ),
        (
            "  part: PCA reconstruction + covariance",
            lambda: (pca.test(win), pca.test(win, method="covariance")),
            1,
        ),
    ]
    for label, fn, _ in parts:
        rows.append((label, timed(fn, max(5, opts.repeat // 2))))

    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as handle:
            json.dump({label: median for label, (median, _) in rows}, handle)
        return
    ratios = (
        compare(opts.compare, max(5, opts.repeat // opts.rounds), opts.rounds)
        if opts.compare
        else {}
    )
    head = f" {'x ' + opts.compare:>10}" if opts.compare else ""
    print(f"{'step':<48} {'median ms':>10} {'min ms':>8} {'x baseline':>11}{head}")
    for label, (median, minimum) in rows:
        ratio = f" {ratios[label]:>10.2f}" if label in ratios else ""
        print(f"{label:<48} {median:>10.2f} {minimum:>8.2f} {median / base[0]:>11.1f}{ratio}")
    per_record = rows[2][1][0] / 10_000 * 1e6
    print(f"sketch update: {per_record:.0f} ns per record (13 features)")


if __name__ == "__main__":
    main()
