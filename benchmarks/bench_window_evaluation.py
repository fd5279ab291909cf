"""CPU time of stage 2 per closed window: merge the partials, evaluate, serialise the result.

Run from the repository root::

    .cache/venv/bin/python benchmarks/bench_window_evaluation.py [--repeat 20] [--warm 0] \
        [--baseline /tmp/base] [--rounds 3] [--json out.json]

The window of the 100-models benchmark (``bench_worker_throughput.py --scenarios many``): one
model, 20 numeric features (standard normal, 6 decimals), a reference of 2,000 records, a
window of 75, 600 or 9,000 records split over 4 source partitions (reservoir 2,000 rows each,
so the merged window keeps 75, 600 and 2,000 rows). What is timed is what stage 2 does for one
closed window (``streams/windows.py`` ``close_ready`` then ``streams/stage2.py``
``_publish_window``): ``orjson.loads`` of the 4 partial messages, ``WindowSketch.from_dict`` +
``merge``, ``evaluate_window``, and ``orjson.dumps`` of ``evaluation.to_dict()``; the figures
are CPU time (``time.process_time``), the median and minimum over ``--repeat`` windows, each
a different window (nothing computed from one window can serve the next; what derives from
the profile can). ``--warm N`` first evaluates N other windows of each size, as a steady
stream of equal-size windows would have (the KS p-values scipy computes per ``(n, D)`` are
remembered, see ``stats.univariate.kstwo_sf``); the default, 0, is the cold case.

``--baseline DIR`` (the code before, e.g. ``git archive main | tar -x -C DIR``) runs the same
measurement on that code in a subprocess, alternately with this checkout's (``--rounds``
pairs, in the same run), and checks that both produce the same evaluation (SHA-256 of its
JSON), so a speed-up that changed a statistic or a p-value is caught here.
Set ``OPENBLAS_NUM_THREADS=1`` on a shared machine (the runs do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

SIZES = (75, 600, 9_000)
SOURCES = 4
FEATURES = 20
START = 1_764_000_000.0  # a window start: the MMD permutation seed derives from it


def records(n: int, seed: int) -> list[dict[str, Any]]:
    """Records as ``bench_worker_throughput.many_models_stream`` makes them (one model)."""
    rng = np.random.default_rng(seed)
    names = [f"f{j:02d}" for j in range(FEATURES)]
    values = np.round(rng.standard_normal((n, FEATURES)), 6).tolist()
    scores = np.round(rng.random(n), 6).tolist()
    return [
        {
            "prediction_id": f"s{seed}-{i}",
            "model": "m000",
            "model_version": "1",
            "timestamp": START + i * (60.0 / max(n, 1)),
            "features": dict(zip(names, values[i], strict=True)),
            "prediction": int(scores[i] >= 0.5),
            "score": scores[i],
            "latency_ms": 10.0,
        }
        for i in range(n)
    ]


def partials(profile: Any, rows: list[dict[str, Any]]) -> list[bytes]:
    """The window's partial messages from its ``SOURCES`` source partitions, as stage 1 sends."""
    from driftline.detectors.batch import RecordBatch
    from driftline.detectors.sketch import WindowSketch

    messages = []
    for source in range(SOURCES):
        sketch = WindowSketch.empty(profile, START, START + 60.0, seed=source)
        sketch.update(RecordBatch.from_records(rows[source::SOURCES], profile.feature_types))
        messages.append(orjson.dumps({"kind": "partial", "sketch": sketch.to_dict()}))
    return messages


def measure(repeat: int, warm: int = 0) -> dict[str, Any]:
    """Time this interpreter's ``driftline`` (whatever ``sys.path`` finds first)."""
    import driftline
    from driftline.detectors.evaluate import evaluate_window
    from driftline.detectors.profile import ReferenceProfile
    from driftline.detectors.sketch import WindowSketch
    from driftline.detectors.thresholds import ModelThresholds

    # saved and loaded like the worker's profiles (types as a JSON file gives them)
    built = ReferenceProfile.from_records(records(2_000, seed=1), model="m000", model_version="1")
    profile = ReferenceProfile.from_dict(orjson.loads(orjson.dumps(built.to_dict())))
    thresholds = ModelThresholds()
    out: dict[str, Any] = {"driftline": str(Path(driftline.__file__).parent)}
    for size in SIZES:
        # a different window each time (as 100 models' windows are): nothing computed from a
        # window can be reused for the next one, only what derives from the profile
        windows = [partials(profile, records(size, seed=2 + w)) for w in range(repeat + 1)]

        def one(messages: list[bytes]) -> tuple[bytes, float, float]:
            t0 = time.process_time()
            parts = [orjson.loads(m)["sketch"] for m in messages]
            window = WindowSketch.from_dict(parts[0])
            for part in parts[1:]:
                window = window.merge(WindowSketch.from_dict(part))
            t1 = time.process_time()
            evaluation = evaluate_window(profile, window, thresholds)
            body = orjson.dumps(evaluation.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)
            return body, t1 - t0, time.process_time() - t1

        one(windows[-1])  # warm-up (imports, what is kept per profile)
        for w in range(warm):  # other windows of this size first: a stream's steady state
            one(partials(profile, records(size, seed=10_000 + w)))
        merge_ms, evaluate_ms, total_ms = [], [], []
        digest = hashlib.sha256()
        for messages in windows[:-1]:
            body, m, e = one(messages)
            digest.update(body)
            merge_ms.append(m * 1e3)
            evaluate_ms.append(e * 1e3)
            total_ms.append((m + e) * 1e3)
        reservoir = WindowSketch.from_dict(orjson.loads(windows[0][0])["sketch"])
        out[str(size)] = {
            "records": size,
            "reservoir_rows": min(size, reservoir.reservoir_size),
            "status": orjson.loads(body)["status"],
            "digest": digest.hexdigest(),
            "merge_ms": statistics.median(merge_ms),
            "evaluate_ms": statistics.median(evaluate_ms),
            "total_ms": statistics.median(total_ms),
            "total_min_ms": min(total_ms),
        }
    return out


def run_child(code: Path | None, repeat: int, warm: int) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    command = [sys.executable, __file__, "--child", "--repeat", str(repeat), "--warm", str(warm)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="windows timed per size")
    parser.add_argument("--baseline", type=Path, help="checkout of the code before")
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="windows of each size evaluated before the timed ones (remembered KS p-values "
        "warm, as in a steady stream of equal-size windows)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved pairs of runs")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeat, args.warm)))
        return 0

    this = Path(__file__).resolve().parent.parent
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "baseline": []}
    for _ in range(args.rounds if args.baseline else 1):
        if args.baseline:
            runs["baseline"].append(run_child(args.baseline.resolve(), args.repeat, args.warm))
        runs["this"].append(run_child(this, args.repeat, args.warm))
    load = os.getloadavg()
    print(
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; CPU ms per window, median of "
        f"{args.repeat} windows (after {args.warm} others), best / worst of "
        f"{len(runs['this'])} run(s)"
    )
    header = "| records (reservoir) | code | merge partials | evaluate + to JSON | total |"
    print(header)
    print("|---|---|---:|---:|---:|")
    same = True
    for size in map(str, SIZES):
        for label in ("baseline", "this"):
            if not runs[label]:
                continue
            figures = [r[size] for r in runs[label]]

            def span(key: str, figures: list[dict[str, Any]] = figures) -> str:
                values = sorted(f[key] for f in figures)
                return f"{values[0]:.2f}" + (f"-{values[-1]:.2f}" if len(values) > 1 else "")

            print(
                f"| {size} ({figures[0]['reservoir_rows']}) | {label} | {span('merge_ms')} "
                f"| {span('evaluate_ms')} | {span('total_ms')} |"
            )
        if runs["baseline"]:
            digests = {r[size]["digest"] for label in runs for r in runs[label]}
            if len(digests) != 1:
                same = False
                print(f"window of {size} records: evaluations DIFFER from the baseline's")
            best = {k: min(r[size]["total_ms"] for r in runs[k]) for k in runs}
            print(
                f"|   | this / baseline (best runs) | | | {best['this'] / best['baseline']:.2f}x |"
            )
    if runs["baseline"]:
        print("evaluations identical to the baseline's" if same else "EVALUATIONS DIFFER")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "runs": runs, "same": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
