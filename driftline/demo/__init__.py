"""`driftline demo`: the seed's story, end to end on the running local stack, in a few minutes.

A fraud model (scikit-learn, trained on "before" data) serves simulated traffic at a steady rate
through the A/B router (:class:`driftline.retrain.traffic.RoutedService`). Three incidents are
injected, one after the other (event time, compressed: windows close every few seconds):

1. a shopping-pattern shift: ``txn_per_day`` moves by 1.5 standard deviations (data drift);
2. a broken upstream feature: ``distance_from_home_km`` arrives null (data quality);
3. a change in fraud behaviour: the label relation flips (concept drift).

Everything driftline runs in production runs here too, on this run's own topics and PostgreSQL
schema (runs never see each other's data): the worker (a child process), the PostgreSQL sink,
the training-sample sink, ``retrain serve`` (policies, pipeline, A/B evaluator) and the notifier
posting to a local HTTP receiver that prints what Slack would have received. The demo waits for
each detection, the alerts, the retraining, the A/B test and the promotion; prints a summary
(detection delay per incident, alert latency, accuracy before/after) and writes the HTML report.
It ends with ``demo OK`` (exit 0) or ``demo FAILED: ...`` (exit 1).
"""

from __future__ import annotations

from driftline.demo.run import play, run_demo
from driftline.demo.shell import bootstrap_champion
from driftline.demo.story import (
    BROKEN_FEATURE,
    DATA_QUALITY_FALLBACK,
    DETECTED_BY,
    INCIDENTS,
    MISSING_RATE_SEEN,
    MODEL,
    SHIFTED_FEATURE,
    Incident,
    Outcome,
    Plan,
    Story,
    detection_of,
)

__all__ = [
    "BROKEN_FEATURE",
    "DATA_QUALITY_FALLBACK",
    "DETECTED_BY",
    "INCIDENTS",
    "MISSING_RATE_SEEN",
    "MODEL",
    "SHIFTED_FEATURE",
    "Incident",
    "Outcome",
    "Plan",
    "Story",
    "bootstrap_champion",
    "detection_of",
    "play",
    "run_demo",
]
