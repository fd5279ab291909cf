"""Prometheus metrics exported by the worker (prometheus-client), named the Prometheus way.

One module-level registry so every metric is defined once, here; `serve()` exposes it on
`worker.metrics_port`. Label values are only what driftline controls (topic names, reasons from a
fixed set), so cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

__all__ = [
    "DLQ_RECORDS",
    "DRIFT_EVENTS",
    "LABELS_PROCESSED",
    "LABEL_JOIN",
    "LATE_RECORDS",
    "RECORDS_PROCESSED",
    "RECORDS_WITHOUT_REFERENCE",
    "REGISTRY",
    "WINDOWS_CLOSED",
    "serve",
]

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_PROCESSED = Counter(
    "driftline_records_processed",
    "Records parsed and accepted by the worker.",
    ["topic"],
    registry=REGISTRY,
)
DLQ_RECORDS = Counter(
    "driftline_dlq_records",
    "Records sent to the dead-letter topic, by reason class.",
    ["topic", "reason"],
    registry=REGISTRY,
)

RECORDS_WITHOUT_REFERENCE = Counter(
    "driftline_records_without_reference",
    "Records of model versions that have no reference profile (counted, not windowed).",
    registry=REGISTRY,
)
LABELS_PROCESSED = Counter(
    "driftline_labels_processed",
    "Label records parsed and handed to the join.",
    registry=REGISTRY,
)
LABEL_JOIN = Gauge(
    "driftline_label_join_records",
    "Label join outcomes since the state began (summed over this worker's partitions): "
    "joined, evicted (join index full), expired (no label within the time-to-live), "
    "unmatched_labels, late_labels (performance window already final).",
    ["outcome"],
    registry=REGISTRY,
)
LATE_RECORDS = Counter(
    "driftline_late_records",
    "Records whose event-time window had already closed when they arrived.",
    registry=REGISTRY,
)
WINDOWS_CLOSED = Counter(
    "driftline_windows_closed",
    "Windows closed and evaluated, by status (evaluated, insufficient_samples).",
    ["status"],
    registry=REGISTRY,
)
DRIFT_EVENTS = Counter(
    "driftline_drift_events",
    "Drift events published to the alerts topic.",
    ["type", "severity"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on addr:port (a daemon thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
