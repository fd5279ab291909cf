"""A reproducible generator of fraud-model traffic: 10 numeric and 3 categorical features.

Used by `driftline demo`, the tests and the benchmarks. Vectorised: a call makes a whole block of
records with numpy, then turns it into dicts once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CATEGORICAL_FEATURES", "NUMERIC_FEATURES", "fraud_records"]

NUMERIC_FEATURES = (
    "amount",
    "account_age_days",
    "txn_per_day",
    "avg_amount_30d",
    "distance_from_home_km",
    "minutes_since_last_txn",
    "failed_logins_24h",
    "device_risk",
    "merchant_risk",
    "hour_of_day",
)
CATEGORICAL_FEATURES = ("country", "channel", "card_type")
_CATEGORIES = {
    "country": (["US", "GB", "FR", "DE", "IN", "BR"], [0.45, 0.15, 0.12, 0.12, 0.1, 0.06]),
    "channel": (["web", "app", "pos"], [0.4, 0.35, 0.25]),
    "card_type": (["debit", "credit", "prepaid"], [0.55, 0.4, 0.05]),
}


def fraud_records(
    n: int,
    *,
    seed: int = 0,
    start_time: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    rate_per_second: float = 1_000.0,
    model: str = "fraud",
    model_version: str = "1",
    mean_shift: float = 0.0,
    id_prefix: str = "p",
) -> list[dict[str, Any]]:
    """`n` prediction records with event times `rate_per_second` apart from `start_time`.

    `mean_shift` moves `amount` by that many standard deviations (a simple data drift).

    >>> recs = fraud_records(3, seed=1)
    >>> sorted(recs[0]["features"])[:3], recs[0]["model"]
    (['account_age_days', 'amount', 'avg_amount_30d'], 'fraud')
    """
    rng = np.random.default_rng(seed)
    numeric = rng.standard_normal((n, len(NUMERIC_FEATURES)))
    numeric[:, 0] += mean_shift
    logit = 1.2 * numeric[:, 0] + 0.8 * numeric[:, 7] + 0.6 * numeric[:, 8] - 3.0
    score = 1.0 / (1.0 + np.exp(-logit))
    categorical = {
        name: rng.choice(values, size=n, p=probs) for name, (values, probs) in _CATEGORIES.items()
    }
    times = start_time + np.arange(n) / rate_per_second
    latency_ms = rng.lognormal(mean=2.5, sigma=0.4, size=n)
    numeric_rows = np.round(numeric, 6).tolist()
    records = []
    for i in range(n):
        features: dict[str, Any] = dict(zip(NUMERIC_FEATURES, numeric_rows[i], strict=True))
        for name, values in categorical.items():
            features[name] = str(values[i])
        records.append(
            {
                "prediction_id": f"{id_prefix}{seed}-{i}",
                "model": model,
                "model_version": model_version,
                "timestamp": float(times[i]),
                "features": features,
                "prediction": int(score[i] >= 0.5),
                "score": round(float(score[i]), 6),
                "latency_ms": round(float(latency_ms[i]), 3),
            }
        )
    return records
