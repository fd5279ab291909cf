"""A reproducible generator of fraud-model traffic: 10 numeric and 3 categorical features.

Used by `driftline simulate`, `driftline demo`, the tests and the benchmarks. Vectorised: a call
makes a whole block of records with numpy, then turns it into dicts once.

A drift schedule is a list of `Drift(kind, start, end, magnitude)` in seconds of event time
after the simulation start:

- `abrupt`: from `start`, `feature` (default `amount`) shifts by `magnitude` standard deviations;
- `gradual`: between `start` and `end`, the share of shifted records grows from 0 to 1;
- `recurring`: between `start` and `end`, shifted and normal periods alternate every `period`;
- `concept`: from `start`, the label relation flips (features unchanged: only labels show it);
- `latency`: between `start` and `end`, serving latency is multiplied by `magnitude`;
- `errors`: between `start` and `end`, a share `magnitude` of predictions fail;
- `missing`: between `start` and `end`, a share `magnitude` of `feature`'s values are null (a
  broken upstream feature; the truth still depends on the real value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "CATEGORICAL_FEATURES",
    "NUMERIC_FEATURES",
    "Drift",
    "ab_routing",
    "fraud_records",
    "parse_drift",
    "simulate",
]

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
_COEFFICIENTS = np.array([1.2, 0, 0, 0, 0, 0, 0, 0.8, 0.6, 0])
"""The model's logit weights on NUMERIC_FEATURES (amount, device_risk, merchant_risk), as in
`logit` below: the attributions' coefficients."""
DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

DriftKind = Literal["abrupt", "gradual", "recurring", "concept", "latency", "errors", "missing"]


@dataclass(frozen=True)
class Drift:
    kind: DriftKind
    start: float
    end: float = math.inf
    magnitude: float = 1.0
    period: float = 300.0  # for recurring drift
    feature: str = "amount"  # the numeric feature abrupt/gradual/recurring/missing act on

    def __post_init__(self) -> None:
        if self.feature not in NUMERIC_FEATURES:
            raise ValueError(
                f"drift feature {self.feature!r}: expected one of {', '.join(NUMERIC_FEATURES)}"
            )

    def weight(
        self, t: np.ndarray[Any, np.dtype[np.float64]]
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """How much of the drift applies at each relative time t (0 to 1)."""
        inside = (t >= self.start) & (t < self.end)
        if self.kind == "gradual":
            span = max(self.end - self.start, 1e-9)
            ramp = np.clip((t - self.start) / span, 0.0, 1.0)
            return np.where(inside, ramp, np.where(t >= self.end, 1.0, 0.0)).astype(np.float64)
        if self.kind == "recurring":
            on: np.ndarray[Any, np.dtype[np.bool_]] = (
                np.floor((t - self.start) / self.period) % 2 == 0
            )
            return (inside & on).astype(np.float64)
        return inside.astype(np.float64)


def parse_drift(text: str) -> Drift:
    """`KIND:START[-END][:MAGNITUDE]`, times in seconds after the start.

    >>> parse_drift("gradual:600-1200:0.5")
    Drift(kind='gradual', start=600.0, end=1200.0, magnitude=0.5, period=300.0, feature='amount')
    >>> parse_drift("concept:1800").end
    inf
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in DriftKind.__args__:  # type: ignore[attr-defined]
        raise ValueError(
            f"drift {text!r}: expected KIND:START[-END][:MAGNITUDE] with KIND one of "
            f"{', '.join(DriftKind.__args__)}"  # type: ignore[attr-defined]
        )
    start_text, _, end_text = parts[1].partition("-")
    try:
        start = float(start_text)
        end = float(end_text) if end_text else math.inf
        magnitude = float(parts[2]) if len(parts) == 3 else 1.0
    except ValueError as exc:
        raise ValueError(f"drift {text!r}: {exc}") from None
    return Drift(parts[0], start, end, magnitude)  # type: ignore[arg-type]


def simulate(
    n: int,
    *,
    seed: int = 0,
    first_index: int = 0,
    start_time: float = DEFAULT_START,
    rate_per_second: float = 1_000.0,
    schedule: Sequence[Drift] = (),
    model: str = "fraud",
    model_version: str = "1",
    id_prefix: str = "p",
    attributions: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records `first_index .. first_index + n` of a stream, and their labels (same order).

    Record i has event time `start_time + i / rate_per_second`; blocks generated separately
    with consecutive `first_index` give the same stream as one call (the seed is per block).
    With `attributions`, each record carries the exact SHAP values of the model's logit (a
    linear model of independent standard features: coefficient x value) for every numeric
    feature, 0 for those the model does not use.
    """
    rng = np.random.default_rng([seed, first_index])
    index = np.arange(first_index, first_index + n)
    rel = index / rate_per_second
    numeric = rng.standard_normal((n, len(NUMERIC_FEATURES)))
    latency_ms = rng.lognormal(mean=2.5, sigma=0.4, size=n)
    failed = np.zeros(n, dtype=bool)
    flipped = np.zeros(n, dtype=bool)
    nulls: dict[int, np.ndarray[Any, np.dtype[np.bool_]]] = {}
    for drift in schedule:
        w = drift.weight(rel)
        column = NUMERIC_FEATURES.index(drift.feature)
        if drift.kind in ("abrupt", "recurring"):
            numeric[:, column] += drift.magnitude * w
        elif drift.kind == "gradual":
            numeric[:, column] += drift.magnitude * (rng.random(n) < w)
        elif drift.kind == "missing":
            nulls[column] = nulls.get(column, np.zeros(n, dtype=bool)) | (
                rng.random(n) < drift.magnitude * w
            )
        elif drift.kind == "concept":
            flipped |= w > 0
        elif drift.kind == "latency":
            latency_ms *= np.where(w > 0, drift.magnitude, 1.0)
        elif drift.kind == "errors":
            failed |= rng.random(n) < drift.magnitude * w
    logit = 1.2 * numeric[:, 0] + 0.8 * numeric[:, 7] + 0.6 * numeric[:, 8] - 3.0
    score = 1.0 / (1.0 + np.exp(-logit))
    truth = rng.random(n) < score  # calibrated scores: P(fraud | features) = score
    truth = np.where(flipped, ~truth, truth)
    categorical = {
        name: rng.choice(values, size=n, p=probs) for name, (values, probs) in _CATEGORIES.items()
    }
    times = start_time + rel
    numeric_rows = np.round(numeric, 6).tolist()
    shap_rows = np.round(numeric * _COEFFICIENTS, 6).tolist() if attributions else None
    for column, mask in nulls.items():
        for i in np.flatnonzero(mask).tolist():
            numeric_rows[i][column] = None
    records: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for i in range(n):
        features: dict[str, Any] = dict(zip(NUMERIC_FEATURES, numeric_rows[i], strict=True))
        for name, values in categorical.items():
            features[name] = str(values[i])
        record: dict[str, Any] = {
            "prediction_id": f"{id_prefix}{seed}-{index[i]}",
            "model": model,
            "model_version": model_version,
            "timestamp": float(times[i]),
            "features": features,
            "prediction": int(score[i] >= 0.5),
            "score": round(float(score[i]), 6),
            "latency_ms": round(float(latency_ms[i]), 3),
        }
        if shap_rows is not None:
            record["attributions"] = dict(zip(NUMERIC_FEATURES, shap_rows[i], strict=True))
        if failed[i]:
            record["error"] = "http_5xx" if i % 2 else "timeout"
        records.append(record)
        labels.append(
            {
                "prediction_id": record["prediction_id"],
                "label": int(truth[i]),
                "timestamp": float(times[i]),
            }
        )
    return records, labels


def fraud_records(
    n: int, *, seed: int = 0, mean_shift: float = 0.0, **options: Any
) -> list[dict[str, Any]]:
    """`n` prediction records without drift (or with `amount` shifted by `mean_shift` std).

    >>> recs = fraud_records(3, seed=1)
    >>> sorted(recs[0]["features"])[:3], recs[0]["model"]
    (['account_age_days', 'amount', 'avg_amount_30d'], 'fraud')
    """
    schedule = [Drift("abrupt", -math.inf, math.inf, mean_shift)] if mean_shift else []
    records, _ = simulate(n, seed=seed, schedule=schedule, **options)
    return records


def publish(
    bootstrap_servers: str,
    predictions_topic: str,
    labels_topic: str,
    *,
    n: int,
    seed: int = 0,
    rate_per_second: float = 1_000.0,
    start_time: float | None = None,
    schedule: Sequence[Drift] = (),
    label_delay: float = 0.0,
    realtime: bool = False,
    model: str = "fraud",
    model_version: str = "1",
    settings: dict[str, Any] | None = None,
    progress: bool = False,
    block: int = 2_000,
    route: Callable[[str, str], str] | None = None,
) -> int:
    """Publish a simulated stream with the client (predictions, then labels `label_delay`
    event-time seconds later). `realtime` paces publishing to the event-time rate. `route`
    (model, prediction id) -> version: the serving version of each prediction, e.g. the
    router's during an A/B test (:func:`ab_routing`)."""
    import sys
    import time

    from driftline.client import LabelLogger, PredictionLogger

    start = time.time() if start_time is None else start_time
    wall_start = time.monotonic()
    label_queue: list[dict[str, Any]] = []
    with (
        PredictionLogger(bootstrap_servers, predictions_topic, settings=settings) as predictions,
        LabelLogger(bootstrap_servers, labels_topic, settings=settings) as labels,
    ):
        for first in range(0, n, block):
            records, truth = simulate(
                min(block, n - first),
                seed=seed,
                first_index=first,
                start_time=start,
                rate_per_second=rate_per_second,
                schedule=schedule,
                model=model,
                model_version=model_version,
            )
            for record in records:
                if route is not None:
                    record["model_version"] = route(record["model"], record["prediction_id"])
                if realtime:
                    lag = (record["timestamp"] - start) - (time.monotonic() - wall_start)
                    if lag > 0:
                        time.sleep(lag)
                predictions.log(**record)
            label_queue.extend(truth)
            now_event = records[-1]["timestamp"]
            while label_queue and label_queue[0]["timestamp"] + label_delay <= now_event:
                label = label_queue.pop(0)
                labels.log(
                    prediction_id=label["prediction_id"],
                    label=label["label"],
                    timestamp=label["timestamp"] + label_delay,
                )
            if progress:
                done = first + len(records)
                bar = "#" * int(30 * done / n)
                sys.stderr.write(f"\r[{bar:<30}] {done}/{n} predictions")
                sys.stderr.flush()
        for label in label_queue:
            labels.log(
                prediction_id=label["prediction_id"],
                label=label["label"],
                timestamp=label["timestamp"] + label_delay,
            )
    if progress:
        sys.stderr.write("\n")
    return n


@contextmanager
def ab_routing(
    bootstrap_servers: str,
    control_topic: str,
    model: str,
    *,
    settings: dict[str, Any] | None = None,
    wait_seconds: float = 2.0,
) -> Iterator[tuple[Callable[[str, str], str] | None, str]]:
    """The router's choice of version per prediction while an A/B test of ``model`` is running
    (a routing decision with a challenger on ``control_topic``), else None; with a sentence
    saying which. What `driftline simulate` uses so that simulated traffic splits like real
    traffic during a test (the scores stay the simulator's: it has no models; for predictions
    by the registered artifacts see :class:`driftline.retrain.traffic.RoutedService`)."""
    from driftline.router import ModelRouter

    try:
        router = ModelRouter(bootstrap_servers, control_topic, settings=settings)
    except Exception as exc:  # no control topic (no retraining set up): nothing to route
        yield None, f"no routing ({control_topic}: {exc})"
        return
    with router:
        decision = router.wait_for(model, lambda d: True, timeout=wait_seconds)
        if decision is None or decision.challenger is None:
            yield None, f"no A/B test of {model} running: every prediction as given"
            return
        yield (
            router.route,
            (
                f"A/B test of {model} running: {decision.challenger_share:.0%} of predictions to "
                f"{model}@{decision.challenger}, the rest to {model}@{decision.champion}"
            ),
        )
