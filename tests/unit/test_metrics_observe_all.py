"""`observe_all` (one increment per bucket for a batch) counts what `observe` per value does."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from driftline.sinks.prometheus import LATENCY_BUCKETS, observe_all


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_batch_observation_equals_one_observe_per_value() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(0.05, 5_000), LATENCY_BUCKETS, [0.0, -1.0, 99.0]])
    batched, one_by_one = CollectorRegistry(), CollectorRegistry()
    a = Histogram("lat", "l", buckets=LATENCY_BUCKETS, registry=batched)
    b = Histogram("lat", "l", buckets=LATENCY_BUCKETS, registry=one_by_one)
    observe_all(a, values)
    observe_all(a, values[:0])
    for value in values.tolist():
        b.observe(value)
    got, want = _samples(batched), _samples(one_by_one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key.startswith("lat_sum"):
            assert abs(got[key] - value) <= 1e-9 * abs(value)
        else:
            assert got[key] == value, key
