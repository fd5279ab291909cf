"""PostgreSQL sink write throughput: window + feature rows per second, against a baseline.

    source deploy/local/env.sh && .cache/venv/bin/python benchmarks/bench_postgres_sink.py

Writes N window summaries of F features each (as the worker publishes them: one
window_metrics row + F feature_drift rows per summary) into a fresh schema, three ways, on
fresh keys each time:
  1. the sink's path: rows_from_message + PostgresStore.write (COPY into a temp table, then
     INSERT ... SELECT ... ON CONFLICT DO UPDATE), in batches of --batch summaries;
  2. baseline: the same upserts as a plain psycopg executemany (one INSERT per row), same
     batches;
  3. the sink's path again on the SAME keys (a full replay: every row is an update).
Then states the margin against a worker at 10,000 predictions/s. The schema is dropped.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql

from driftline.sinks.rows import Rows, merge_rows, rows_from_message
from driftline.sinks.schema import Table
from driftline.sinks.store import PostgresStore, row_values, upsert_statement

FEATURES = [f"f{i:02d}" for i in range(13)]


def summary(model: str, start: float, n_features: int) -> bytes:
    def test(name: str, p: float | None) -> dict[str, Any]:
        return {"test": name, "statistic": 0.05, "p_value": p, "threshold": 0.05, "drifted": False}

    features = {
        name: {
            "feature": name,
            "kind": "numeric",
            "drifted": False,
            "critical": False,
            "verdict_test": "ks_binned",
            "p_value": 0.4,
            "adjusted_p_value": 1.0,
            "alpha": 0.05,
            "effect_measure": "wasserstein",
            "effect": 0.02,
            "min_effect": 0.12,
            "n": 10_000,
            "missing": 3,
            "invalid": 0,
            "missing_rate": 0.0003,
            "unseen": {},
            "tests": {
                t: test(t, 0.4 if t.startswith("ks") else None)
                for t in (
                    "ks_binned",
                    "ks_exact",
                    "psi",
                    "jensen_shannon",
                    "hellinger",
                    "wasserstein",
                )
            },
        }
        for name in FEATURES[:n_features]
    }
    return orjson.dumps({
        "type": "window", "sources": [0, 1, 2, 3], "event_ids": [],
        "estimated_performance": {"accuracy": 0.93, "precision": 0.6, "recall": 0.5, "f1": 0.55},
        "evaluation": {
            "model": model, "model_version": "1", "window_start": start, "window_end": start + 60,
            "status": "evaluated", "drifted": False, "reasons": [], "drifted_features": [],
            "drift_share": 0.0, "features": features,
            "multivariate": {"drifted": False, "alpha": 0.01, "correlation_change": 0.01,
                             "min_effect": 0.1, "adjusted_p_values": {}, "tests": {}},
            "prediction_tests": {"chi_square": test("chi_square", 0.5)},
            "summary": {"n_records": 600_000, "error_count": 12, "error_rate": 2e-5,
                        "latency_p50_seconds": 0.012, "latency_p95_seconds": 0.04,
                        "latency_p99_seconds": 0.08, "mean_score": 0.11,
                        "class_counts": {"0": 590_000, "1": 10_000}},
        },
    })  # fmt: skip


def executemany_upsert(
    conn: psycopg.Connection[Any], table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """The baseline: the same upserts as the sink, as a plain ``executemany`` of one INSERT
    per row (instead of COPY into a temporary table + one INSERT ... SELECT)."""
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(table.columns))
    statement = upsert_statement(table, sql.SQL("VALUES ({})").format(placeholders))
    with conn.cursor() as cur:
        cur.executemany(statement, [row_values(table, row) for row in rows])
    return len(rows)


def run(store: PostgresStore, batches: list[list[bytes]], how: str) -> tuple[float, float, int]:
    """(seconds mapping, seconds writing, rows) for all batches."""
    mapping = writing = 0.0
    rows_total = 0
    for batch in batches:
        t0 = time.perf_counter()
        rows: Rows = merge_rows(rows_from_message("metrics", m) for m in batch)
        t1 = time.perf_counter()
        store.write(rows, executemany_upsert if how == "executemany" else None)
        t2 = time.perf_counter()
        mapping += t1 - t0
        writing += t2 - t1
        rows_total += sum(len(r) for r in rows.values())
    return mapping, writing, rows_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--batch", type=int, default=500, help="summaries per transaction")
    args = parser.parse_args()
    url = os.environ.get(
        "DRIFTLINE_POSTGRES_URL", "postgresql://driftline:driftline@127.0.0.1:5432/driftline"
    )
    store = PostgresStore(url, schema=f"dl_bench_{uuid.uuid4().hex[:8]}")
    try:
        store.upgrade()
        t0 = 1_700_000_000.0  # 2,000 one-minute windows: spread over 2 days (3 partitions)

        def make(model: str) -> list[list[bytes]]:
            msgs = [summary(model, t0 + 60 * i, args.features) for i in range(args.windows)]
            return [msgs[i : i + args.batch] for i in range(0, len(msgs), args.batch)]

        run(store, make("warmup")[:1], "copy")  # partitions, temp tables, connections
        results = {
            "copy + upsert (sink)": run(store, make("a"), "copy"),
            "executemany upsert (baseline)": run(store, make("b"), "executemany"),
            "copy + upsert, replay (all updates)": run(store, make("a"), "copy"),
        }
        print(
            f"{args.windows} window summaries x {args.features} features, "
            f"batches of {args.batch} summaries"
        )
        for name, (mapping, writing, rows) in results.items():
            print(
                f"  {name:38s} rows {rows:6d}  write {writing:6.2f}s  "
                f"{rows / writing:8.0f} rows/s  {args.windows / writing:7.0f} summaries/s  "
                f"(+ mapping {mapping:.2f}s)"
            )
        sink_rate = args.windows / (
            results["copy + upsert (sink)"][1] + results["copy + upsert (sink)"][0]
        )
        # A worker at 10,000 predictions/s with 60-s windows closes one window per model version
        # per minute, whatever the prediction rate: 1 summary + 13 feature rows per model/min.
        models = 1
        need = models / 60.0
        print(
            f"  worker at 10,000 predictions/s, 60-s windows, {models} model: {need:.3f} "
            f"summaries/s needed; sink sustains {sink_rate:.0f} summaries/s (mapping included): "
            f"margin x{sink_rate / need:,.0f}, i.e. ~{int(sink_rate * 60):,} models at 60-s windows"
        )
    finally:
        store.drop_schema()
        store.close()


if __name__ == "__main__":
    main()
