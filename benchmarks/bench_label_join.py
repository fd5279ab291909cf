"""The label join's index (`PartitionLabels`): time and memory per prediction, this code vs a
baseline checkout, in the same run.

For each code (this checkout; with `--baseline DIR` also the driftline package in DIR, e.g.
`git archive main | tar -x -C DIR`) and each batch size (1: single-record messages, 100: batch
messages), a fresh interpreter:

1. indexes N predictions of one model version (`add_columns`, the worker's call) in batches of
   that size: µs per prediction;
2. writes a checkpoint of the whole index (`to_dict` + `orjson.dumps`, `max_checkpointed` = N)
   and restores it into a new join (`orjson.loads` + `restore`): ms each, and its size;
3. joins labels for every other prediction, in batches of 100 (`add_labels`): µs per label;
4. indexes N predictions into a join bounded at N / 4 entries (eviction on every batch).

Times are the best of three rounds. Memory is measured in a second interpreter with
tracemalloc on (it slows everything down, so never in the timed one): bytes per pending entry
of the index's own structures, and of everything it keeps alive once the parser's inputs are
dropped (ids and prediction strings included). The inputs are shaped like parsed messages:
36-character ids, a class label string object per record, 20 % of scores missing.

With `--checkpoints`, instead: the stage-1 checkpoint of one partition's join index in a
steady state, whole (the index's newest `max_checkpointed` entries inside the head, as before)
against incremental (`segments.JoinSegments`: the segments of new entries plus the head's
masks), both measured on the same state at every checkpoint: 3,750 new predictions/s, a
checkpoint every 2 s, `max_checkpointed` = 100,000, in three scenarios: labels joining 26 s
after their prediction in arrival order (~100,000 waiting), in random order within 0-53 s
(~100,000 waiting; masks and consolidations), and labels hours late (none joins in the run;
the index holds more than is checkpointed, entries leave the newest 100,000 at the back).
Bytes and CPU (process time) per checkpoint, mean over the measured checkpoints after the index
is full.

Run: .cache/venv/bin/python benchmarks/bench_label_join.py [-n 200000] [--baseline DIR]
     [--json out.json]
     .cache/venv/bin/python benchmarks/bench_label_join.py --checkpoints [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def _inputs(n: int) -> tuple[list[str], np.ndarray[Any, Any], list[Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) * 2**64 + i)) for i in range(n)]
    # one string object per record, as a JSON parser makes them
    predictions = orjson.loads(orjson.dumps(["fraud" if x else "ok" for x in rng.random(n) < 0.1]))
    times = 1_700_000_000.0 + np.sort(rng.uniform(0, 3600, n))
    scores = rng.random(n)
    scores[rng.random(n) < 0.2] = np.nan
    return ids, times, predictions, scores


def _join(n: int, max_pending: int | None = None) -> Any:
    from driftline.streams.labels import PartitionLabels

    return PartitionLabels(
        partition=0,
        window_size=300.0,
        horizon=3600.0,
        ttl=86400.0,
        max_pending=max_pending or 10 * n,
        max_pending_bytes=2**40,
        max_checkpointed=n,
    )


def _index(join: Any, inputs: Any, batch: int) -> None:
    ids, times, predictions, scores = inputs
    for first in range(0, len(ids), batch):
        rows = slice(first, first + batch)
        join.add_columns("fraud", "3", ids[rows], times[rows], predictions[rows], scores[rows])


def _timed_once(n: int, batch: int) -> dict[str, float]:
    inputs = _inputs(n)
    ids, times = inputs[0], inputs[1]
    join = _join(n)
    started = time.perf_counter()
    _index(join, inputs, batch)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    payload = orjson.dumps(join.to_dict())
    checkpoint_s = time.perf_counter() - started
    started = time.perf_counter()
    again = _join(n)
    again.restore(orjson.loads(payload))
    restore_s = time.perf_counter() - started
    assert len(again.pending) == n
    del again
    labels = [
        {"prediction_id": ids[i], "label": "ok", "timestamp": float(times[i]) + 60.0}
        for i in range(0, n, 2)
    ]
    started = time.perf_counter()
    for first in range(0, len(labels), 100):
        join.add_labels(labels[first : first + 100])
    label_s = time.perf_counter() - started
    assert join.joined == len(labels) and len(join.pending) == n - len(labels)
    del join
    bounded = _join(n, max_pending=n // 4)
    started = time.perf_counter()
    _index(bounded, inputs, batch)
    bounded_s = time.perf_counter() - started
    assert len(bounded.pending) == n // 4 and bounded.evicted == n - n // 4
    return {
        "index_us_per_prediction": 1e6 * index_s / n,
        "checkpoint_ms": 1e3 * checkpoint_s,
        "checkpoint_mb": len(payload) / 1e6,
        "restore_ms": 1e3 * restore_s,
        "join_us_per_label": 1e6 * label_s / len(labels),
        "bounded_index_us_per_prediction": 1e6 * bounded_s / n,
    }


def _timed(n: int, batch: int, rounds: int = 3) -> dict[str, float]:
    """Best of `rounds` for each figure (the machine is shared: the minimum is the least
    disturbed)."""
    runs = [_timed_once(n, batch) for _ in range(rounds)]
    return {key: min(run[key] for run in runs) for key in runs[0]}


def _memory(n: int, batch: int) -> dict[str, float]:
    """Bytes per pending entry: the index's own structures (`index_only`) and everything the
    index keeps alive once the parser's batch is gone (`retained`: ids and predictions too)."""
    _join(1).add_columns("warm", "0", ["w"], np.zeros(1), ["ok"], None)  # imports, caches
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    inputs = _inputs(n)
    before = tracemalloc.get_traced_memory()[0]
    join = _join(n)
    _index(join, inputs, batch)
    index_only = tracemalloc.get_traced_memory()[0] - before
    del inputs
    retained = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert len(join.pending) == n
    return {"bytes_per_entry_index_only": index_only / n, "bytes_per_entry_retained": retained / n}


def _steady_checkpoints(
    order: str, rate: int = 3750, interval: float = 2.0, keep: int = 100_000, measured: int = 30
) -> dict[str, float]:
    """Bytes and CPU per checkpoint of one partition's join index, whole vs incremental."""
    from driftline.streams.segments import JOIN_FIELD, JoinSegments, restore_join_segments

    per_step = int(rate * interval)
    delay_steps = -(-keep // per_step)  # labels come this many checkpoints later (~keep wait)
    warm = delay_steps + 4
    steps = warm + measured
    inputs = _inputs(per_step * steps)
    ids, times = inputs[0], inputs[1]
    join = _join(keep, max_pending=1_000_000)
    log = JoinSegments("s1/0")
    rng = np.random.default_rng(11)
    if order == "random":  # each label within 0-2x the delay: random order
        due = np.arange(len(ids)) // per_step + rng.integers(0, 2 * delay_steps, len(ids))
    else:
        due = np.arange(len(ids)) // per_step + delay_steps
    topic: dict[str, bytes] = {}  # the join segments on the topic
    by_step = np.argsort(due, kind="stable")
    due_sorted = due[by_step]
    totals = {"whole_bytes": 0.0, "whole_cpu_ms": 0.0, "incremental_bytes": 0.0}
    totals |= {"incremental_cpu_ms": 0.0, "segments_written": 0.0, "segments_live": 0.0}
    for step in range(steps):
        rows = slice(step * per_step, (step + 1) * per_step)
        for first in range(rows.start, rows.stop, 100):  # batch messages of 100
            part = slice(first, min(first + 100, rows.stop))
            join.add_columns("fraud", "3", ids[part], times[part], inputs[2][part], inputs[3][part])
        if order != "late":
            lo, hi = np.searchsorted(due_sorted, [step, step + 1])
            labels = [
                {"prediction_id": ids[i], "label": "ok", "timestamp": float(times[i]) + 60.0}
                for i in by_step[lo:hi].tolist()
            ]
            for first in range(0, len(labels), 100):
                join.add_labels(labels[first : first + 100])
        started = time.process_time()
        whole = orjson.dumps(join.to_dict())
        whole_cpu = time.process_time() - started
        started = time.process_time()
        plan = log.plan(join.pending, join.max_checkpointed)
        head = orjson.dumps({**join.to_dict(pending=False), JOIN_FIELD: plan.head})
        log.commit(plan)
        incremental_cpu = time.process_time() - started
        topic.update(plan.segments)
        for key in plan.tombstones:
            del topic[key]
        if step >= warm:
            totals["whole_bytes"] += len(whole)
            totals["whole_cpu_ms"] += 1e3 * whole_cpu
            totals["incremental_bytes"] += len(head) + sum(len(v) for _, v in plan.segments)
            totals["incremental_cpu_ms"] += 1e3 * incremental_cpu
            totals["segments_written"] += len(plan.segments)
            totals["segments_live"] += len(log.parts)
    result = {k: v / measured for k, v in totals.items()}
    result["pending"] = float(len(join.pending))
    started = time.process_time()  # restores of the last checkpoint, both forms
    _join(keep).restore(orjson.loads(whole))
    result["whole_restore_ms"] = 1e3 * (time.process_time() - started)
    started = time.process_time()
    values = {k: orjson.loads(v) for k, v in topic.items()}
    saved, _ = restore_join_segments("s1/0", {"labels": orjson.loads(head)}, values)
    assert saved is not None
    again = _join(keep)
    again.restore(saved["labels"])
    result["incremental_restore_ms"] = 1e3 * (time.process_time() - started)
    assert list(again.pending) == list(join.pending)[-keep:]
    return result


def _child(args: argparse.Namespace) -> None:
    if args.checkpoints:
        print(json.dumps({o: _steady_checkpoints(o) for o in ("arrival", "random", "late")}))
        return
    measure = _memory if args.memory else _timed
    print(json.dumps(measure(args.n, args.batch)))


def _run(code: Path | None, n: int, batch: int, memory: bool) -> dict[str, float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if code is not None:  # the baseline's package first on the path
        env["PYTHONPATH"] = str(code)
    command = [sys.executable, __file__, "--child", "-n", str(n), "--batch", str(batch)]
    out = subprocess.run(
        command + (["--memory"] if memory else []),
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=code or Path(__file__).parent,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", action="store_true", help="checkpoint bytes and CPU")
    args = parser.parse_args()
    if args.child or args.checkpoints:
        load = os.getloadavg()
        if not args.child:
            print(f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        _child(args)
        return
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline is not None:
        if not (args.baseline / "driftline" / "__init__.py").exists():
            parser.error(f"--baseline {args.baseline}: no driftline package there")
        codes.insert(0, ("baseline", args.baseline.resolve()))
    results: dict[str, Any] = {"n": args.n, "load": os.getloadavg()}
    for batch in (1, 100):
        for name, code in codes:
            row = _run(code, args.n, batch, memory=False)
            row |= _run(code, args.n, batch, memory=True)
            results[f"{name}_batch{batch}"] = row
            print(
                f"{name:8s} batch {batch:3d}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items())
            )
    if args.baseline is not None:
        print("\nthis / baseline (same run):")
        for batch in (1, 100):
            new, old = results[f"this_batch{batch}"], results[f"baseline_batch{batch}"]
            print(f"  batch {batch}: " + ", ".join(f"{k} {new[k] / old[k]:.2f}" for k in new))
    results["load_after"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
