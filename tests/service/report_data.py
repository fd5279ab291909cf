"""A store with two hours of a fraud model's life, for the report and dashboard tests.

Version 1 runs for 2 h in 5-minute windows; from the middle on, `amount` drifts (data drift),
`merchant_category` loses 30% of its values (data quality), realised accuracy falls below the
estimate (concept drift), latency and errors rise; version 2 starts for the last 30 minutes.
Rows are written with the sink's own writer (`PostgresStore.write`), so the tables are exactly
what `driftline sink postgres` produces.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from driftline.sinks.store import TABLES, PostgresStore, Rows

FEATURES = ("amount", "merchant_category", "hour", "distance_km")
WINDOW = timedelta(minutes=5)


def _row(table: str, **values: Any) -> dict[str, Any]:
    return {
        column: Jsonb(v) if isinstance(v := values.get(column), dict) else v
        for column in TABLES[table].columns
    }


def _id(*parts: Any) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:32]


def populate(store: PostgresStore, model: str, now: datetime | None = None) -> dict[str, int]:
    """Write the two hours ending at ``now`` for ``model``; returns rows written per table."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(hours=2)
    rows: Rows = {name: [] for name in TABLES}
    n_windows = 24
    for version, first in (("1", 0), ("2", 18)):
        for i in range(first, n_windows):
            w0 = start + i * WINDOW
            w1 = w0 + WINDOW
            late = version == "1" and i >= 12
            ramp = max(0.0, (i - 12) / 12) if version == "1" else 0.0
            drifted = []
            for feature in FEATURES:
                shift = feature == "amount" and late
                effect = 0.02 + 0.01 * math.sin(i + len(feature)) + (0.25 + ramp if shift else 0)
                missing_rate = 0.3 if (feature == "merchant_category" and late) else 0.0
                is_drifted = shift or missing_rate > 0
                if is_drifted:
                    drifted.append(feature)
                rows["feature_drift"].append(
                    _row(
                        "feature_drift",
                        model=model, model_version=version, window_start=w0, window_end=w1,
                        feature=feature,
                        kind="categorical" if feature == "merchant_category" else "numeric",
                        test="ks", statistic=effect * 1.3, p_value=1e-9 if shift else 0.4,
                        adjusted_p_value=1e-8 if shift else 0.9, alpha=0.05,
                        effect_measure="wasserstein", effect=effect, min_effect=0.1,
                        drifted=is_drifted, critical=False, n=3000, missing=int(3000 * missing_rate),
                        invalid=0, missing_rate=missing_rate, tests={"ks": {"statistic": effect}},
                    )
                )  # fmt: skip
            # importance: amount and hour swap their shares from window 18 of version 1 on
            swapped = version == "1" and i >= 18
            reference_shares = dict(zip(FEATURES, (0.4, 0.1, 0.3, 0.2), strict=True))
            shares = {**reference_shares, **({"amount": 0.3, "hour": 0.4} if swapped else {})}
            ranks = {f: r + 1 for r, f in enumerate(sorted(FEATURES, key=lambda f: -shares[f]))}
            reference_ranks = {
                f: r + 1 for r, f in enumerate(sorted(FEATURES, key=lambda f: -reference_shares[f]))
            }
            for feature in FEATURES:
                change = shares[feature] - reference_shares[feature]
                rows["feature_importance"].append(
                    _row(
                        "feature_importance",
                        model=model, model_version=version, window_start=w0, window_end=w1,
                        feature=feature, source="attributions", importance=shares[feature] * 2,
                        reference_importance=reference_shares[feature] * 2, share=shares[feature],
                        reference_share=reference_shares[feature], share_change=change,
                        rank=ranks[feature], reference_rank=reference_ranks[feature],
                        changed=abs(change) >= 0.05, window_drifted=swapped, n=3000,
                    )
                )  # fmt: skip
            accuracy = 0.97 - (0.12 * ramp if version == "1" else 0.0)
            rows["window_metrics"].append(
                _row(
                    "window_metrics",
                    model=model, model_version=version, window_start=w0, window_end=w1,
                    status="evaluated", drifted=bool(drifted), drift_share=len(drifted) / 4,
                    n_records=3000, error_count=int(3000 * (0.002 + 0.02 * ramp)),
                    error_rate=0.002 + 0.02 * ramp, latency_p50_seconds=0.012 + 0.01 * ramp,
                    latency_p95_seconds=0.030 + 0.03 * ramp, latency_p99_seconds=0.05 + 0.08 * ramp,
                    mean_score=0.04, estimated_accuracy=0.965 - 0.01 * ramp,
                    estimated_performance={"accuracy": 0.965}, reasons=["data_drift"] if drifted else [],
                    drifted_features=drifted, multivariate={}, prediction_tests={}, summary={},
                    event_ids=[], sources=[0, 1],
                )
            )  # fmt: skip
            # the last window of each version: labels still arriving (a provisional row)
            final = i < n_windows - 1
            rows["performance_windows"].append(
                _row(
                    "performance_windows",
                    model=model, model_version=version, window_start=w0, window_end=w1,
                    labelled=2800 if final else 1200, label_coverage=0.93 if final else 0.4,
                    accuracy=accuracy, precision=0.8,
                    recall=0.7, f1=0.75, roc_auc=0.95, metrics={"accuracy": accuracy},
                    baseline_accuracy=0.97, accuracy_drop=0.97 - accuracy, event_ids=[],
                    sources=[0, 1], final=final,
                )
            )  # fmt: skip
            for feature in drifted:
                rows["drift_events"].append(
                    _row(
                        "drift_events",
                        event_id=_id(model, version, w0, feature), event_time=w0,
                        schema_version=1, type="data_drift",
                        severity="critical" if ramp > 0.5 else "warning", model=model,
                        model_version=version, feature=feature, test="ks", statistic=0.3,
                        p_value=1e-9, threshold=0.05, window_start=w0, window_end=w1,
                        detected_at=w1 + timedelta(seconds=20), evidence={"window": i},
                    )
                )  # fmt: skip
            if version == "1" and i == 18:
                rows["drift_events"].append(
                    _row(
                        "drift_events",
                        event_id=_id(model, "importance", i), event_time=w0,
                        schema_version=1, type="importance_drift", severity="critical",
                        model=model, model_version=version, feature="hour",
                        test="importance_share_attributions", statistic=0.1, threshold=0.05,
                        window_start=w0, window_end=w1, detected_at=w1,
                        evidence={
                            "summary": "hour share 0.300 -> 0.400 (rank 2 -> 1); "
                            "amount share 0.400 -> 0.300 (rank 1 -> 2)",
                            "changed_features": ["hour", "amount"],
                        },
                    )
                )  # fmt: skip
            if version == "1" and i in (16, 20):
                rows["drift_events"].append(
                    _row(
                        "drift_events",
                        event_id=_id(model, "concept", i), event_time=w0 + timedelta(minutes=2),
                        schema_version=1, type="concept_drift", severity="warning", model=model,
                        model_version=version, test="adwin", detected_at=w1,
                        evidence={"detector": "adwin", "stream": "error", "sample": 1000 * i},
                    )
                )  # fmt: skip
    return store.write(rows)
