"""Stage 2 of the pipeline: per model (the partials topic is keyed by model), merge every source
partition's partial windows, evaluate each closed window against its reference (the core),
publish realised performance (provisional, then final), and run the model's concept-drift
suites on the ordered outcomes.

    partials topic -> ModelWindows (windows.py) -> evaluate_window -> events (events.py)
                                                -> window / performance_window summaries
                   -> ModelOutcomes (outcomes.py) -> concept_drift events
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import orjson

from driftline.detectors.concept import ConceptDriftConfig, ConceptSettings
from driftline.detectors.estimation import expected_confusion_from_histogram
from driftline.detectors.evaluate import evaluate_window
from driftline.detectors.performance import binary_metrics, relative_drop, roc_auc_from_histograms
from driftline.detectors.profile import SCORE_BINS
from driftline.detectors.sketch import WindowSketch
from driftline.detectors.thresholds import DriftThresholds
from driftline.streams.context import Message, Shared
from driftline.streams.events import (
    concept_event,
    estimated_performance_drop_event,
    performance_drop_event,
    service_events,
    suppress_combined,
    window_events,
)
from driftline.streams.labels import PerformancePartial
from driftline.streams.outcomes import STALE_HORIZONS
from driftline.streams.payloads import (
    OutcomesMessage,
    PartialMessage,
    PerformanceMessage,
    WatermarkMessage,
    parse_message,
)
from driftline.streams.windows import ClosedWindow, ModelWindows

log = logging.getLogger(__name__)

__all__ = ["ModelStage"]


class ModelStage:
    """Stage-2 state of the models whose partials partitions this worker holds."""

    def __init__(
        self,
        shared: Shared,
        thresholds: DriftThresholds,
        concept: ConceptDriftConfig,
        n_sources: int,
    ) -> None:
        self.shared = shared
        self.thresholds = thresholds
        self.concept = concept
        self.n_sources = n_sources
        self.models: dict[str, ModelWindows] = {}
        self.partition_of: dict[str, int] = {}  # model -> partials partition
        self.dirty: set[str] = set()  # changed since the last checkpoint
        self.lock = asyncio.Lock()

    def forget(self, partition: int) -> None:
        """Drop the models of a revoked partials partition."""
        for model in [m for m, p in self.partition_of.items() if p == partition]:
            self.models.pop(model, None)
            self.partition_of.pop(model, None)
            self.dirty.discard(model)

    def checkpoint_values(self) -> Iterator[tuple[str, bytes]]:
        """(key, value) of every model changed since the last call, one model's value built
        at a time (the caller holds `lock`): each is sent and dropped before the next exists.
        A list of them all held every pending partial of 100 models at once on top of the
        producer's copy (up to ~76 MiB in the packed 100-models scenario; BENCHMARKS.md)."""
        models = sorted(self.dirty & self.models.keys())
        self.dirty.clear()
        return ((f"s2/{m}", self.models[m].to_json()) for m in models)

    async def _model_state(self, model: str, partition: int) -> ModelWindows:
        state = self.models.get(model)
        if state is None:
            saved = await self.shared.checkpoints.get(f"s2/{model}")
            state = ModelWindows(model, self.n_sources)
            if saved is not None:
                try:
                    state = ModelWindows.from_dict(saved)
                except Exception as exc:  # never stick: start fresh, windows re-fill
                    log.warning(
                        "model %s: stage-2 checkpoint dropped, it cannot be restored (%s: %s)",
                        model,
                        type(exc).__name__,
                        exc,
                    )
                    error = f"{type(exc).__name__}: {exc}"
                    await self.shared.checkpoint_dropped(
                        "stage2", f"s2/{model}", saved, error, model
                    )
            self.models[model] = state
        self.partition_of[model] = partition
        return state

    async def on_partials(self, messages: list[Message]) -> None:
        async with self.lock:
            changed: set[str] = set()
            touched: set[str] = set()
            for message in messages:
                model = (message.key or b"").decode()
                payload = parse_message(message.value)
                state = await self._model_state(model, message.partition)
                source, watermark = payload.source, payload.watermark
                state.add_watermark(
                    source, -np.inf if watermark is None else float(watermark), payload.idle
                )
                if isinstance(payload, PartialMessage):
                    # kept as received: parsed again when the window closes, written
                    # unchanged into the checkpoint
                    state.add_partial(source, payload.sketch, message.value)
                    changed.add(model)
                elif isinstance(payload, PerformanceMessage):
                    state.add_performance(source, payload.partial, payload.final)
                    changed.add(model)
                elif isinstance(payload, OutcomesMessage):
                    late = state.outcome_state().add(payload.outcomes)
                    self.shared.metrics.concept_outcomes_late.inc(late)
                    changed.add(model)
                if isinstance(payload, WatermarkMessage | OutcomesMessage):
                    # re-sent every second: not worth a save
                    state.outcome_state().add_watermark(source, payload.outcome_watermark)
                touched.add(model)
            for model in sorted(touched):
                if await self._close_windows(model) | await self._concept_drift(model):
                    changed.add(model)
            self.dirty |= changed  # written by the next checkpoint

    async def _concept_drift(self, model: str) -> bool:
        """Feed the outcomes every source's watermark has passed to the model versions'
        concept-drift suites, in order; one event per detection (`outcomes.py`). True if any
        outcome was fed."""
        outcomes = self.models[model].outcomes
        if outcomes is None:
            return False
        frontier = outcomes.frontier
        profiles = self.shared.monitored.profiles

        def suite(version: str) -> tuple[ConceptSettings, bool]:
            profile = profiles.get((model, version))
            regression = profile is not None and profile.prediction_values is not None
            return self.concept.for_model(model), regression

        stale_after = STALE_HORIZONS * float(self.shared.config.labels.horizon_seconds)
        for version, found in outcomes.release(suite, stale_after):
            await self.shared.alert(
                model, concept_event(model, version, found, self.shared.clock())
            )
        return outcomes.frontier != frontier

    async def _close_windows(self, model: str) -> bool:
        state = self.models[model]
        closed = state.close_ready()
        for window in closed:
            await self._publish_window(state, window)
        performance = state.close_performance_ready()
        for partials, n_records in performance:
            await self._publish_performance(state, partials, n_records, final=True)
        interval = self.shared.config.labels.provisional_interval_seconds
        provisional = state.provisional_performance_ready(self.shared.clock(), interval)
        for partials, n_records in provisional:
            await self._publish_performance(state, partials, n_records, final=False)
        return bool(closed or performance or provisional)

    async def _publish_performance(
        self,
        state: ModelWindows,
        partials: Mapping[int, Mapping[str, Any]],
        n_records: int,
        final: bool,
    ) -> None:
        """Realised performance of one window, provisional (`final: false`, the labels so far
        of the sources that reported) or final (every contributing source past the horizon).
        The metrics topic key and the PostgreSQL row key are the window's: a later summary
        replaces an earlier one."""
        sources = sorted(partials)
        merged = PerformancePartial.from_dict(partials[sources[0]])
        for source in sources[1:]:
            merged = merged.merge(PerformancePartial.from_dict(partials[source]))
        realised = dict(binary_metrics(merged.confusion, positive_label="1"))
        realised["roc_auc"] = roc_auc_from_histograms(
            merged.positive_scores, merged.negative_scores
        )
        profile = self.shared.monitored.profiles.get((merged.model, merged.model_version))
        baseline = (profile.performance or {}).get("accuracy") if profile else None
        drop = relative_drop(realised["accuracy"], baseline)
        labelled = merged.confusion.n
        coverage = labelled / n_records if n_records else None
        summary = {
            "type": "performance_window",
            "model": merged.model,
            "model_version": merged.model_version,
            "window_start": merged.window_start,
            "window_end": merged.window_end,
            "sources": sources,
            "labelled": labelled,
            "label_coverage": coverage,
            "metrics": realised,
            "baseline_accuracy": baseline,
            "accuracy_drop": drop,
            "final": final,
        }
        metrics = self.shared.metrics
        version, window = merged.model_version, (merged.window_start, merged.window_end)
        if final:
            metrics.export_performance(merged.model, version, realised, coverage, baseline, window)
        else:
            metrics.export_provisional_performance(
                merged.model, version, realised["accuracy"], coverage, window
            )
        labels = self.shared.config.labels
        event = performance_drop_event(
            model=merged.model,
            model_version=merged.model_version,
            window_start=merged.window_start,
            window_end=merged.window_end,
            accuracy=realised["accuracy"],
            baseline=baseline,
            drop=drop,
            limit=labels.max_accuracy_drop,
            labelled=labelled,
            coverage=coverage,
            final=final,
            min_coverage=labels.provisional_min_coverage,
            min_labelled=labels.provisional_min_labelled,
            detected_at=self.shared.clock(),
        )
        if event is not None:
            # sent once per window; every later summary of it still names it (still degraded)
            if state.alert_performance_once(merged.model_version, merged.window_start):
                await self.shared.alert(merged.model, event)
            summary["event_ids"] = [event["event_id"]]
        await self.shared.send(
            self.shared.topics.metrics, merged.model.encode(), orjson.dumps(summary), None
        )

    async def _publish_window(self, state: ModelWindows, window: ClosedWindow) -> None:
        sketch = window.sketch
        carried = state.carry.pop(sketch.model_version, None)
        if carried is not None:  # too few records last time: merged forward into this window
            sketch = WindowSketch.from_dict(carried).merge(sketch)
        key = (sketch.model, sketch.model_version)
        monitored = self.shared.monitored
        if key not in monitored.profiles:
            # stage 1 (maybe another worker) already windows a version this one has not seen
            monitored.refresh(self.shared.clock(), force=True)
        profile = monitored.profiles.get(key)
        if profile is None:
            log.warning("window of %s@%s without its reference profile: not evaluated", *key)
            return
        thresholds = self.thresholds.for_model(sketch.model)
        evaluation = evaluate_window(profile, sketch, thresholds)
        if evaluation.status == "insufficient_samples":
            state.carry[sketch.model_version] = sketch.to_dict()
        detected_at = self.shared.clock()
        events = window_events(evaluation, detected_at) + service_events(
            evaluation, thresholds, detected_at
        )
        estimate = estimated_performance(sketch)
        baseline = (profile.performance or {}).get("accuracy")
        estimated = estimated_performance_drop_event(
            evaluation,
            estimate,
            baseline,
            relative_drop(estimate.get("accuracy"), baseline),
            self.shared.config.labels.max_accuracy_drop,
            detected_at,
        )
        if estimated is not None:
            events.append(estimated)
        events = suppress_combined(events)  # output drift + CBPE drop: one page, not two
        for event in events:
            await self.shared.alert(sketch.model, event)
        evaluated = evaluation.to_dict()
        summary = {
            "type": "window",
            "sources": list(window.sources),
            "event_ids": [e["event_id"] for e in events],
            "estimated_performance": estimate,
            "evaluation": evaluated,
        }
        if evaluation.status == "evaluated":
            self.shared.metrics.export_window(evaluated, estimate.get("accuracy"))
        await self.shared.send(
            self.shared.topics.metrics,
            sketch.model.encode(),
            orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY),
            None,
        )
        self.shared.metrics.windows_closed.labels(evaluation.status).inc()
        log.info(
            "window %s/%s [%s, %s) closed: %d records, %s%s",
            sketch.model,
            sketch.model_version,
            sketch.window_start,
            sketch.window_end,
            sketch.n_records,
            evaluation.status,
            f", drift: {', '.join(evaluation.reasons)}" if evaluation.drifted else "",
        )


_SCORE_MIDPOINTS = (np.arange(SCORE_BINS) + 0.5) / SCORE_BINS


def estimated_performance(sketch: WindowSketch) -> dict[str, float | None]:
    """Label-free estimate (CBPE, expected confusion matrix) from the window's score
    histogram, assuming calibrated scores and a 0.5 decision threshold."""
    if sketch.score_n == 0:
        return {}
    confusion = expected_confusion_from_histogram(
        sketch.score_counts, _SCORE_MIDPOINTS, _SCORE_MIDPOINTS >= 0.5
    )
    return confusion.metrics()
