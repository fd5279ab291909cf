"""Cost and size of one window sketch in a checkpoint or partial: to_dict + orjson.dumps + loads +
from_dict, for a full reservoir (default 2,000 rows x 20 numeric features, 20 % missing), and the
bytes after lz4 / zstd (what the producer's `compression.type` puts on the wire).

The numbers of a deployment at 15,000 predictions/s with 100 models x 20 features (every window's
reservoir full): a stage-1 checkpoint value of one partition holds 100 such sketches (200 while
the previous window waits for lateness).

Run in the same process for the code under test and, with ``--baseline DIR`` (a checkout of the
code before, e.g. ``git archive main | tar -x -C /tmp/base``), for that code in a subprocess:

    .cache/venv/bin/python benchmarks/bench_checkpoint_codec.py [--rows 2000] [--features 20]
        [--repeat 20] [--baseline /tmp/base] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import cramjam
import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch


def full_sketch(rows: int, features: int, seed: int, rounded: bool) -> WindowSketch:
    """A window sketch whose reservoir is full: 5 x `rows` records seen."""
    rng = np.random.default_rng(seed)
    names = [f"f{j:02d}" for j in range(features)]

    def columns(n: int) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            x = rng.standard_normal(n)
            if rounded:  # what a producer writing 6 decimals sends
                x = np.round(x, 6)
            x[rng.random(n) < 0.2] = np.nan
            out[name] = x
        return out

    profile = ReferenceProfile.from_columns(columns(5_000), model="m", model_version="1")
    sketch = WindowSketch.empty(profile, 0.0, 60.0, seed=seed, reservoir_size=rows)
    n = 5 * rows
    sketch.update(
        RecordBatch(
            numeric=columns(n),
            categorical={},
            event_time=rng.uniform(0.0, 60.0, n),
            prediction=np.array(["0", "1"], dtype=object)[rng.integers(0, 2, n)],
            score=rng.random(n),
        )
    )
    assert sketch.reservoir_rows.shape == (rows, features)
    return sketch


def measure(rows: int, features: int, repeat: int, rounded: bool) -> dict[str, Any]:
    sketch = full_sketch(rows, features, 1, rounded)
    timings: dict[str, list[float]] = {"to_dict+dumps": [], "loads+from_dict": []}
    value = b""
    for _ in range(repeat):
        t0 = time.process_time()
        value = orjson.dumps(sketch.to_dict())
        t1 = time.process_time()
        again = WindowSketch.from_dict(orjson.loads(value))
        t2 = time.process_time()
        timings["to_dict+dumps"].append(t1 - t0)
        timings["loads+from_dict"].append(t2 - t1)
    assert np.array_equal(again.reservoir_rows, sketch.reservoir_rows, equal_nan=True)
    compress: dict[str, list[float]] = {"lz4": [], "zstd": []}
    for _ in range(
        repeat
    ):  # librdkafka, in its own thread: lz4 frame at its fast level, zstd at 3 (defaults)
        t0 = time.process_time()
        cramjam.lz4.compress(value, level=0)
        t1 = time.process_time()
        cramjam.zstd.compress(value, level=3)
        compress["lz4"].append(t1 - t0)
        compress["zstd"].append(time.process_time() - t1)
    best = {k: min(v) * 1000 for k, v in timings.items()}
    return {
        "rows": rows,
        "features": features,
        "values": "rounded to 6 decimals" if rounded else "full float64",
        "bytes": len(value),
        "lz4_bytes": len(cramjam.lz4.compress(value, level=0)),
        "zstd_bytes": len(cramjam.zstd.compress(value, level=3)),
        "to_dict_dumps_ms": round(best["to_dict+dumps"], 3),
        "loads_from_dict_ms": round(best["loads+from_dict"], 3),
        "round_trip_ms": round(best["to_dict+dumps"] + best["loads+from_dict"], 3),
        "lz4_ms": round(min(compress["lz4"]) * 1000, 3),
        "zstd_ms": round(min(compress["zstd"]) * 1000, 3),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [measure(args.rows, args.features, args.repeat, rounded) for rounded in (False, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--baseline", help="a checkout of the code before, run in a subprocess")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {"this": run(args)}
    if args.raw:
        print(json.dumps(results["this"]))
        return
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": args.baseline}
        command = [sys.executable, __file__, "--raw", f"--rows={args.rows}"]
        command += [f"--features={args.features}", f"--repeat={args.repeat}"]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        results["baseline"] = json.loads(out.stdout)
    print(f"load {os.getloadavg()[0]:.2f}; best of {args.repeat}, CPU time, one sketch")
    print(
        "code      values                 bytes   lz4     zstd    to_dict+dumps  loads+from_dict"
        "  lz4 time  zstd time"
    )
    for code, rows in results.items():
        for r in rows:
            print(
                f"{code:9} {r['values']:21} {r['bytes']:7,} {r['lz4_bytes']:7,} "
                f"{r['zstd_bytes']:7,} {r['to_dict_dumps_ms']:9.2f} ms {r['loads_from_dict_ms']:11.2f} ms"
                f" {r.get('lz4_ms', float('nan')):7.2f} ms {r.get('zstd_ms', float('nan')):6.2f} ms"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
