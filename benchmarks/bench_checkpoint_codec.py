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

``--stream`` instead simulates one source partition's stage-1 state at a given load (default:
100 models x 20 features at 15,000 records/s of event time over 4 partitions, i.e. 37.5
records/s per (partition, model), 60-s windows, 10 s of lateness, a checkpoint every 2 s) and
measures per checkpoint, in the same run on the same state, the bytes and CPU time of the whole
value as main writes it (`PartitionWindows.to_dict` + orjson: "full") and of the incremental
checkpoint (new reservoir segments + the head without reservoirs: "segments"), plus the label
join's pending index at `labels.max_checkpointed_pending` entries:

    .cache/venv/bin/python benchmarks/bench_checkpoint_codec.py --stream [--models 100]
        [--rate 15000] [--partitions 4] [--seconds 150] [--window 60] [--lateness 10]
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


def stream(args: argparse.Namespace) -> dict[str, Any]:
    """One partition's checkpoints over `args.seconds` of event time (see the docstring)."""
    from dataclasses import replace

    from driftline.streams.labels import PartitionLabels
    from driftline.streams.windows import PartitionWindows

    try:
        from driftline.streams.segments import ReservoirSegments
    except ImportError:  # the code before segments (--baseline): the full value only
        ReservoirSegments = None  # type: ignore[assignment,misc]  # noqa: N806

    rng = np.random.default_rng(7)
    names = [f"f{j:02d}" for j in range(args.features)]
    base = ReferenceProfile.from_columns(
        {n: rng.standard_normal(5_000) for n in names}, model="m", model_version="1"
    )
    profiles = [replace(base, model=f"model{i:03d}") for i in range(args.models)]
    state = PartitionWindows(0, float(args.window), float(args.lateness))
    log = None if ReservoirSegments is None else ReservoirSegments("s1/0")
    per_model = args.rate / args.partitions / args.models * args.interval  # records per interval
    carry = 0.0
    t, offset, key = 0.0, 0, 0
    rows: list[dict[str, float]] = []
    while t < args.seconds:
        carry += per_model
        n, carry = int(carry), carry - int(carry)
        for profile in profiles:
            x = {f: rng.standard_normal(n) for f in names}
            for f in names:
                x[f][rng.random(n) < 0.2] = np.nan
            batch = RecordBatch(
                numeric=x,
                categorical={},
                event_time=np.sort(rng.uniform(t, t + args.interval, n)),
                prediction=np.array(["0", "1"], dtype=object)[rng.integers(0, 2, n)],
                score=rng.random(n),
                record_keys=np.arange(key, key + n, dtype=np.uint64),
            )
            key += n
            state.add(profile.model, "1", batch, profile)
        offset += n * args.models
        t += args.interval
        state.advance(t, offset)
        state.close_ready()
        state.flush()  # both forms flush first: not counted
        t0 = time.process_time()
        full = orjson.dumps(state.to_dict())
        t1 = time.process_time()
        cramjam.lz4.compress(full, level=0)  # the producer's compression (librdkafka's thread)
        row = {"t": t, "open": len(state.open), "full_bytes": len(full)}
        row |= {"full_ms": (t1 - t0) * 1000, "full_lz4_ms": (time.process_time() - t1) * 1000}
        del full
        if log is not None:
            t1 = time.process_time()
            plan = log.plan(state.open)
            head = orjson.dumps(state.to_dict(plan.sketch_dict))
            t2 = time.process_time()
            log.commit(plan)
            for value in [head] + [v for _, v in plan.segments]:
                cramjam.lz4.compress(value, level=0)
            row |= {
                "segments_bytes": len(head) + sum(len(v) for _, v in plan.segments),
                "head_bytes": len(head),
                "segments": len(plan.segments),
                "tombstones": len(plan.tombstones),
                "segments_ms": (t2 - t1) * 1000,
                "segments_lz4_ms": (time.process_time() - t2) * 1000,
            }
            del head, plan
        rows.append(row)
    steady = [r for r in rows if r["t"] > args.window]  # after the first window closed
    labels = PartitionLabels(0, float(args.window), 60.0, 86400.0, 10**9)
    n = args.pending
    labels.add_columns(
        "model000", "1", [f"pred-{i:012d}" for i in range(n)], rng.uniform(0.0, 60.0, n),
        ["1"] * n, rng.random(n),
    )  # fmt: skip
    t0 = time.process_time()
    pending = orjson.dumps(labels.to_dict())
    labels_ms = (time.process_time() - t0) * 1000

    def mean(field: str) -> float:
        return float(np.mean([r.get(field, np.nan) for r in steady]))

    return {
        "models": args.models,
        "features": args.features,
        "rate": args.rate,
        "partitions": args.partitions,
        "window_seconds": args.window,
        "checkpoints": len(rows),
        "steady_checkpoints": len(steady),
        "mean_open_windows": mean("open"),
        "full_bytes": mean("full_bytes"),
        "full_ms": mean("full_ms"),
        "full_lz4_ms": mean("full_lz4_ms"),
        "max_full_bytes": max(r["full_bytes"] for r in rows),
        "segments_bytes": mean("segments_bytes"),
        "head_bytes": mean("head_bytes"),
        "segments_ms": mean("segments_ms"),
        "segments_lz4_ms": mean("segments_lz4_ms"),
        "max_segments_bytes": max(r.get("segments_bytes", 0) for r in rows),
        "pending_entries": n,
        "pending_bytes": len(pending),
        "pending_ms": labels_ms,
    }


def print_stream(results: dict[str, dict[str, Any]], partitions: int) -> None:
    mib = 1024 * 1024
    r = results["this"]
    print(
        f"load {os.getloadavg()[0]:.2f}; one partition of {partitions}: {r['models']} models x "
        f"{r['features']} features, {r['rate']:,.0f} records/s in all, {r['window_seconds']:.0f}-s"
        f" windows, {r['steady_checkpoints']} of {r['checkpoints']} checkpoints after the first "
        f"window closed (mean {r['mean_open_windows']:.0f} open windows), CPU time"
    )
    print("per checkpoint of one partition     bytes (mean)   bytes (max)  to_dict+dumps  lz4")
    lines = [("full value, this code", r, "full")]
    if "baseline" in results:
        lines.insert(0, ("full value, baseline code", results["baseline"], "full"))
    lines.append(("segments + head, this code", r, "segments"))
    for name, x, form in lines:
        print(
            f"{name:34} {x[f'{form}_bytes'] / mib:9.2f} MiB {x[f'max_{form}_bytes'] / mib:9.2f} "
            f"MiB {x[f'{form}_ms']:9.1f} ms {x[f'{form}_lz4_ms']:6.1f} ms"
        )
    print(f"{'  of which the head':34} {r['head_bytes'] / mib:9.2f} MiB")
    print(
        f"{'label join, pending index':34} {r['pending_bytes'] / mib:9.2f} MiB {'':13} "
        f"{r['pending_ms']:9.1f} ms  ({r['pending_entries']:,} entries, in the head either way)"
    )
    before = results.get("baseline", r)["full_ms"]
    print(
        f"all {partitions} partitions, one checkpoint: full {partitions * before / 1000:.2f} "
        f"CPU s, segments {partitions * r['segments_ms'] / 1000:.3f} CPU s (+ pending index "
        f"{partitions * r['pending_ms'] / 1000:.3f} s when full)"
    )


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
    parser.add_argument("--stream", action="store_true", help="a partition's checkpoints")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rate", type=float, default=15_000.0, help="records/s, all partitions")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=150.0, help="of event time")
    parser.add_argument("--window", type=float, default=60.0, help="window size, seconds")
    parser.add_argument("--lateness", type=float, default=10.0, help="allowed lateness, s")
    parser.add_argument("--interval", type=float, default=2.0, help="checkpoint interval, s")
    parser.add_argument("--pending", type=int, default=100_000, help="label join entries")
    args = parser.parse_args()
    if args.stream:
        streamed = {"this": stream(args)}
        if args.raw:
            print(json.dumps(streamed["this"]))
            return
        if args.baseline:
            env = {**os.environ, "PYTHONPATH": args.baseline}
            command = [sys.executable, __file__, "--raw", *sys.argv[1:]]
            command = [c for c in command if not c.startswith("--baseline")]
            command = [c for c in command if c != args.baseline]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            streamed["baseline"] = json.loads(out.stdout.splitlines()[-1])
        print_stream(streamed, args.partitions)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(streamed, f, indent=2)
        return
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
