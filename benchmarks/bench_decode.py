"""Decode + validate cost per record: main's parser (orjson + hand checks) vs driftline.streams.formats.

Both run in the same process on the same messages, so the ratio holds on a loaded machine.
"old" is `parse_predictions` / `_parse_label` as on main at f159b4a (copied below, frozen:
orjson, then a handful of checks on the required fields only). "new" is the decoder the
pipeline calls now (msgspec typed decoding with every field checked, hand-written fallback for
messages with a bad record). Also timed: the CloudEvents binary-mode adapter, the Open
Inference Protocol adapter (one request and one response message per prediction, joined), and
a message holding one bad record among 100 (the slow, explaining path).

Run: .cache/venv/bin/python benchmarks/bench_decode.py [--records 50000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from driftline.simulate import simulate
from driftline.streams.formats import parse_labels, parse_predictions
from driftline.streams.formats.cloudevents import CloudEventsJson
from driftline.streams.formats.oip import OipSettings, OpenInference

# -- main's parser at f159b4a, frozen as the baseline ------------------------------------------

_REQUIRED = ("prediction_id", "model", "model_version", "timestamp", "features")


class _OldError(ValueError):
    pass


def old_parse_predictions(payload: bytes) -> tuple[list[dict[str, Any]], list[Any]]:
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [], [("invalid_json", str(exc), None)]
    if isinstance(decoded, dict) and "records" in decoded:
        decoded = decoded["records"]
    if isinstance(decoded, dict):
        try:
            return [_old_check(decoded)], []
        except _OldError as exc:
            return [], [("schema_violation", str(exc), None)]
    if not isinstance(decoded, list):
        return [], [("invalid_shape", "", None)]
    valid, rejected = [], []
    for i, item in enumerate(decoded):
        try:
            valid.append(_old_check(item))
        except _OldError as exc:
            rejected.append(("schema_violation", f"record {i}: {exc}", i))
    return valid, rejected


def _old_check(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _OldError("expected a JSON object")
    for name in _REQUIRED:
        if name not in record:
            raise _OldError(f"missing required field '{name}'")
    if not isinstance(record["prediction_id"], str | int) or isinstance(
        record["prediction_id"], bool
    ):
        raise _OldError("prediction_id")
    if not isinstance(record["model"], str) or not record["model"]:
        raise _OldError("model")
    if not isinstance(record["model_version"], str | int):
        raise _OldError("model_version")
    ts = record["timestamp"]
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 0 <= ts < 1e11:
        raise _OldError("timestamp")
    if not isinstance(record["features"], dict):
        raise _OldError("features")
    return record


def old_parse_label(payload: bytes) -> dict[str, Any] | str:
    try:
        label = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(label, dict):
        return "expected a JSON object"
    for name in ("prediction_id", "label", "timestamp"):
        if name not in label:
            return f"missing required field '{name}'"
    t = label["timestamp"]
    if not isinstance(t, int | float) or isinstance(t, bool) or not 0 <= t < 1e11:
        return "field 'timestamp' must be epoch seconds (a number)"
    return label


# -- timing ---------------------------------------------------------------------------------------


def per_record_us(
    fns: Sequence[Callable[[Any], Any]],
    messages: Sequence[Any],
    records: int,
    rounds: int = 15,
) -> list[float]:
    """µs per record of each function, old and new interleaved round by round on the same
    slice of messages; the best round counts (the machine is shared, the minimum is the cost
    without interference)."""
    chunk = max(1, len(messages) // 10)
    best = [float("inf")] * len(fns)
    for r in range(rounds):
        start = (r * chunk) % len(messages)
        part = messages[start : start + chunk]
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for message in part:
                fn(message)
            best[i] = min(best[i], (time.perf_counter() - t0) / len(part))
    return [b * len(messages) / records * 1e6 for b in best]


def oip_messages(records: list[dict[str, Any]]) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """One KServe-logger request and response per record (13 features as [1, 1] tensors)."""
    out = []
    for r in records:
        rid = str(r["prediction_id"]).encode()
        inputs = [
            {
                "name": name,
                "shape": [1, 1],
                "datatype": "BYTES" if isinstance(v, str) else "FP64",
                "data": [v],
            }
            for name, v in r["features"].items()
        ]
        common = [
            ("ce_specversion", b"1.0"),
            ("ce_id", rid),
            ("ce_source", b"http://localhost:9081/"),
            ("ce_time", b"2026-12-01T10:00:00Z"),
            ("content-type", b"application/json"),
        ]
        out.append(
            (
                orjson.dumps({"inputs": inputs}),
                [*common, ("ce_type", b"org.kubeflow.serving.inference.request")],
            )
        )
        response = {
            "model_name": "fraud",
            "model_version": "1",
            "id": r["prediction_id"],
            "outputs": [
                {"name": "predict", "shape": [1], "datatype": "INT64", "data": [r["prediction"]]}
            ],
        }
        out.append(
            (
                orjson.dumps(response),
                [*common, ("ce_type", b"org.kubeflow.serving.inference.response")],
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    n = args.records
    records, labels = simulate(n, seed=1)
    single = [orjson.dumps(r) for r in records]
    batches = [orjson.dumps(records[i : i + 100]) for i in range(0, n, 100)]
    label_messages = [orjson.dumps(label) for label in labels]
    bad_record = {**records[0], "score": "high"}
    mixed = [orjson.dumps([*records[i : i + 99], bad_record]) for i in range(0, n, 100)]
    size = sum(map(len, single)) / n

    # sanity: both accept the same simulated records
    assert all(len(parse_predictions(m).records) == 1 for m in single[:1000])
    assert all(len(old_parse_predictions(m)[0]) == 1 for m in single[:1000])

    ce = CloudEventsJson("prediction")
    ce_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_source", b"/inference/fraud"),
        ("ce_type", b"dev.driftline.prediction"),
        ("content-type", b"application/json"),
    ]
    oip = OpenInference(OipSettings())
    pairs = oip_messages(records[: min(n, 20_000)])
    oip_out = [oip.decode(v, h) for v, h in pairs]
    assert sum(len(d.records) for d in oip_out) == len(pairs) // 2, oip_out[:3]

    rows: list[tuple[str, float, float | None]] = []

    def compare(
        name: str,
        old: Callable[[Any], Any] | None,
        new: Callable[[Any], Any],
        messages: Sequence[Any],
        count: int,
    ) -> None:
        if old is None:
            (new_us,) = per_record_us([new], messages, count)
            rows.append((name, new_us, None))
        else:
            new_us, old_us = per_record_us([new, old], messages, count)
            rows.append((name, new_us, old_us))

    compare("predictions, 1 per message", old_parse_predictions, parse_predictions, single, n)
    compare("predictions, 100 per message", old_parse_predictions, parse_predictions, batches, n)
    compare("labels, 1 per message", old_parse_label, parse_labels, label_messages, n)
    compare(
        "predictions, 100 per message, 1 bad (slow path)",
        old_parse_predictions,
        parse_predictions,
        mixed,
        n,
    )
    compare(
        "CloudEvents binary, 1 per message", None, lambda m: ce.decode(m, ce_headers), single, n
    )
    oip_timed = OpenInference(OipSettings())
    compare(
        "OIP request+response pair (13 [1,1] tensors)",
        None,
        lambda pair: oip_timed.decode(*pair),
        pairs,
        len(pairs) // 2,
    )
    compare("orjson.loads alone (reference)", None, orjson.loads, single, n)

    load = os.getloadavg()
    print(
        f"{n} simulated records, {size:.0f} bytes each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'case':52} {'new µs/rec':>11} {'old µs/rec':>11} {'new/old':>8}")
    for name, new_us, old_us in rows:
        ratio = f"{new_us / old_us:8.2f}" if old_us else f"{'':>8}"
        old_text = f"{old_us:11.2f}" if old_us else f"{'':>11}"
        print(f"{name:52} {new_us:11.2f} {old_text} {ratio}")
    result = {
        "records": n,
        "bytes_per_record": size,
        "load_average": load,
        "cases": [
            {"case": name, "new_us_per_record": new_us, "old_us_per_record": old_us}
            for name, new_us, old_us in rows
        ],
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return result


if __name__ == "__main__":
    main()
