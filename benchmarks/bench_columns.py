"""Records -> columns cost per record: `intake.columns_of` (= `RecordBatch.from_records` on
decoded Structs + `_usable`) on batch messages of 100 simulate() records, as stage 1 calls it.

In-process, no Kafka: run it in this tree and in a baseline tree (e.g. `git archive main`) in
the same minute and compare the µs per record; the ratio holds on a loaded machine.

`--piece N` also times decoding plus `columns_of` over fresh pieces of N records (stage 1 works
in pieces of ~1,100, `stage1.PIECE_BYTES`): the objects are then as warm as in the worker.

Run: .cache/venv/bin/python benchmarks/bench_columns.py [--records 100000] [--repeat 7] [--piece 1100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import orjson

from driftline.detectors.batch import RecordBatch
from driftline.detectors.profile import ReferenceProfile
from driftline.simulate import simulate
from driftline.streams import intake
from driftline.streams.formats.structs import StructPredictions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--piece", type=int, default=0, help="records per piece (0: skip)")
    args = parser.parse_args()
    records, _ = simulate(args.records, seed=7)
    decoder = StructPredictions()
    structs = []
    for i in range(0, len(records), 100):
        structs.extend(decoder.decode(orjson.dumps({"records": records[i : i + 100]})).records)
    assert type(structs[0]).__name__ == "PredictionRecord", type(structs[0])
    profile = ReferenceProfile.from_records(records[:5000], model="fraud", model_version="1")
    keys = list(range(len(structs)))
    key_array = np.array(keys, dtype=np.uint64)
    timings: dict[str, list[float]] = {"from_records": [], "columns_of": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        RecordBatch.from_records(structs, profile.feature_types, record_keys=key_array)
        timings["from_records"].append(time.perf_counter() - t)
        t = time.perf_counter()
        batch, _kept = intake.columns_of(structs, keys, profile, [], {})
        timings["columns_of"].append(time.perf_counter() - t)
        assert batch is not None and len(batch) == len(structs)
    if args.piece:  # decoded afresh per piece, then its columns, as stage 1 does
        per_message = 100
        messages = [
            orjson.dumps({"records": records[i : i + per_message]})
            for i in range(0, len(records), per_message)
        ]
        step = max(1, args.piece // per_message)
        timings["decode, pieces"], timings["columns_of, pieces"] = [], []
        for _ in range(args.repeat):
            decode = columns = 0.0
            for first in range(0, len(messages), step):
                t = time.perf_counter()
                piece = [
                    r for m in messages[first : first + step] for r in decoder.decode(m).records
                ]
                t1 = time.perf_counter()
                intake.columns_of(piece, list(range(len(piece))), profile, [], {})
                columns += time.perf_counter() - t1
                decode += t1 - t
            timings["decode, pieces"].append(decode)
            timings["columns_of, pieces"].append(columns)
    for name, seconds in timings.items():
        best = min(seconds) / len(structs) * 1e6
        print(f"{name}: {best:.3f} µs/record (best of {args.repeat}, {len(structs):,} records)")


if __name__ == "__main__":
    main()
