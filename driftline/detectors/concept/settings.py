"""The configurable concept-drift suite of a model: the ``concept_drift`` section of
``config/drift_thresholds.yaml``, validated (:func:`concept_config_from_dict`), with the
defaults (:data:`DEFAULT_CONCEPT_DRIFT`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from driftline.detectors.concept.checkpoint import encode
from driftline.detectors.concept.monitor import BINARY_KINDS, DETECTOR_KINDS, ConceptDriftMonitor
from driftline.keys import RuleError, SettingsError, key, read

__all__ = [
    "DEFAULT_CONCEPT_DRIFT",
    "DEFAULT_DETECTORS",
    "STREAMS",
    "ConceptConfigError",
    "ConceptDriftConfig",
    "ConceptSettings",
    "DetectorSpec",
    "concept_config_from_dict",
]

STREAMS: Final[tuple[str, ...]] = ("error", "score", "loss")
"""What a detector can watch, per labelled prediction: ``error`` (classification: 1 if the
prediction is wrong, else 0; regression: the rank of the absolute error among the version's
first ``calibration`` errors: ``inputs.error_ranks``), ``score`` (the model's score as sent)
and ``loss`` (classification: log loss of the score as P(label "1"); regression: the squared
error)."""


class ConceptConfigError(SettingsError):
    """The ``concept_drift`` section is wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One detector of a model's suite: a river detector ``kind`` on one ``stream``; read from
    the file by :func:`driftline.keys.read` (``name`` defaults to ``<kind>_<stream>``)."""

    name: str = key(derive=lambda given: f"{given['kind']}_{given['stream']}")
    kind: str = key(choices=DETECTOR_KINDS)
    stream: str = key("error", choices=STREAMS)
    params: Mapping[str, Any] = field(default_factory=dict)
    standardise: bool = key(False, derive=lambda given: given["kind"] == "page_hinkley")
    """Non-binary kinds: feed z-scores, with the mean/std of the first ``calibration`` values
    after a start or reset (Page-Hinkley's threshold is in the data's units)."""

    def __post_init__(self) -> None:
        if self.kind in BINARY_KINDS and self.stream != "error":
            raise RuleError("stream", f"{self.kind} takes the 0/1 error stream only")
        if self.standardise and self.kind in BINARY_KINDS:
            raise RuleError("standardise", f"{self.kind} takes 0/1 values, not z-scores")
        try:
            ConceptDriftMonitor(self.kind, **self.params)
        except (TypeError, ValueError) as exc:
            raise RuleError("params", str(exc)) from None


def _unique_names(detectors: tuple[DetectorSpec, ...]) -> str | None:
    names = [d.name for d in detectors]
    return None if len(set(names)) == len(names) else f"names must be unique, got {names}"


@dataclass(frozen=True, slots=True)
class ConceptSettings:
    """The concept-drift suite of one model and what happens after a detection."""

    detectors: tuple[DetectorSpec, ...] = key(check=_unique_names)
    cooldown_records: int = key(0, ge=0)
    """After an event, detections on the next this many labelled predictions are suppressed."""
    cooldown_seconds: float = key(0.0, ge=0)
    """... and those within this many seconds of event time (both must have passed)."""
    reset_on_detection: bool = True
    """An event resets every detector of the suite (they learn the new error level)."""
    calibration: int = key(500, ge=2)
    critical_increase: float = key(0.5, gt=0)
    """An event is critical when the error after the change point exceeds the error before it
    by this fraction of it (0.5: 50 % more errors), else a warning."""

    def signature(self) -> list[list[Any]]:
        """What a checkpointed stage must match to be restored under this configuration: every
        detector's name, kind, stream, ``params`` and ``standardise`` (JSON-compatible), so a
        suite whose detectors changed in any of these starts afresh.

        >>> a = ConceptSettings((DetectorSpec("adwin_error", "adwin", "error", {"clock": 1}),))
        >>> b = ConceptSettings((DetectorSpec("adwin_error", "adwin", "error", {"clock": 32}),))
        >>> a.signature()
        [['adwin_error', 'adwin', 'error', {'clock': 1}, False]]
        >>> a.signature() == b.signature()
        False
        """
        return [
            [
                d.name,
                d.kind,
                d.stream,
                {k: encode(v) for k, v in sorted(d.params.items())},
                d.standardise,
            ]
            for d in self.detectors
        ]


DEFAULT_DETECTORS: Final[tuple[DetectorSpec, ...]] = (
    DetectorSpec("adwin_error", "adwin", "error", {"clock": 1}),
)
DEFAULT_CONCEPT_DRIFT: Final = ConceptSettings(
    DEFAULT_DETECTORS, cooldown_records=2000, cooldown_seconds=0.0, reset_on_detection=True
)
"""The default suite (chosen by measurement: ``benchmarks/bench_concept_stage.py`` and
docs/DRIFT_DETECTION.md "Concept drift per model version")."""


@dataclass(frozen=True)
class ConceptDriftConfig:
    """Defaults and per-model suites (a model's entry overrides the keys it names)."""

    defaults: ConceptSettings = DEFAULT_CONCEPT_DRIFT
    models: Mapping[str, ConceptSettings] = key(factory=dict, base="defaults")

    def for_model(self, model: str) -> ConceptSettings:
        return self.models.get(model, self.defaults)


def concept_config_from_dict(section: Any) -> ConceptDriftConfig:
    """Validate the ``concept_drift`` section (``{"defaults": ..., "models": {...}}``).

    >>> c = concept_config_from_dict({"defaults": {"cooldown_records": 500},
    ...     "models": {"fraud": {"detectors": [{"kind": "ddm", "params": {"warm_start": 100}}]}}})
    >>> c.for_model("other").cooldown_records, [d.name for d in c.for_model("fraud").detectors]
    (500, ['ddm_error'])
    >>> concept_config_from_dict({"defaults": {"detectors": [{"kind": "ddm", "stream": "score"}]}})
    Traceback (most recent call last):
    ...
    driftline.detectors.concept.settings.ConceptConfigError: concept_drift.defaults.detectors[0].stream: ddm takes the 0/1 error stream only
    """
    return read(ConceptDriftConfig, section, "concept_drift", error=ConceptConfigError)
