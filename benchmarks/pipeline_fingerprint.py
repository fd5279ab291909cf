"""Fingerprint of what the pipeline writes, for "behaviour unchanged" across a refactor.

Drives `Pipeline` in-process (no broker: `tests/unit/test_pipeline_flow.py`'s `Run`, a fake
`send`, the partials fed back to stage 2) over fixed simulated traffic — covariate,
missing-value and concept drift, single-record and batch messages of 100, labels after the
predictions — and prints the SHA-256 of everything written to the metrics and alerts topics (window summaries,
performance windows, events), canonical JSON. Run it with another checkout's package first on
the path to compare two commits::

    .cache/venv/bin/python benchmarks/pipeline_fingerprint.py
    PYTHONPATH=/path/to/other/checkout .cache/venv/bin/python \
        /path/to/other/checkout/benchmarks/pipeline_fingerprint.py   # or this file, copied

Equal digests: the two commits write the same windows, performance and events, byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.unit's fake broker of the checkout being fingerprinted

from driftline.config import load_config  # noqa: E402
from driftline.detectors.profile import ReferenceProfile  # noqa: E402
from driftline.simulate import Drift, simulate  # noqa: E402
from tests.unit.test_pipeline_flow import START, Run  # noqa: E402

SCENARIOS: dict[str, list[Drift]] = {
    "stationary": [],
    "covariate": [Drift("abrupt", 120.0, magnitude=1.5)],
    "missing": [Drift("missing", 120.0)],
    "concept": [Drift("concept", 120.0)],
}


def run(drift: list[Drift], records_per_message: int, profile: ReferenceProfile) -> list[Any]:
    config = load_config(
        ROOT / "config" / "driftline.yaml",
        environ={
            "DRIFTLINE_WINDOWS_SIZE_SECONDS": "60",
            "DRIFTLINE_LABELS_HORIZON_SECONDS": "30",
        },
    )
    flow = Run(config, profile)  # the broker-free pipeline of the unit tests, clock fixed
    stream, truth = simulate(6_000, seed=11, start_time=START, rate_per_second=20.0, schedule=drift)

    async def scenario() -> None:
        for first in range(0, len(stream), 1_000):
            chunk = stream[first : first + 1_000]
            if records_per_message == 1:
                await flow.feed("predictions", chunk)
            else:
                await flow.feed(
                    "predictions",
                    [
                        {"records": chunk[i : i + records_per_message]}
                        for i in range(0, len(chunk), records_per_message)
                    ],
                )
            labels = [{**x, "timestamp": x["timestamp"] + 5} for x in truth[first : first + 1_000]]
            await flow.feed("labels", labels)

    asyncio.run(scenario())
    return [[topic, item] for topic in ("metrics", "alerts") for item in flow.out(topic)]


def main() -> int:
    records, labels = simulate(3_000, seed=99)
    profile = ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    )
    total = hashlib.sha256()
    for name, drift in SCENARIOS.items():
        for per_message in (1, 100):
            out = run(drift, per_message, profile)
            blob = orjson.dumps(out, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
            total.update(blob)
            kinds: dict[str, int] = {}
            for _, item in out:
                kinds[item["type"]] = kinds.get(item["type"], 0) + 1
            print(
                f"{name:10s} {per_message:3d}/message  {hashlib.sha256(blob).hexdigest()[:16]}  {kinds}"
            )
    print(f"all        {total.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
