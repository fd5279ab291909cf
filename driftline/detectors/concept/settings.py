"""The configurable concept-drift suite of a model: the ``concept_drift`` section of
``config/drift_thresholds.yaml``, validated (:func:`concept_config_from_dict`), with the
defaults (:data:`DEFAULT_CONCEPT_DRIFT`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from driftline.detectors.concept.checkpoint import encode
from driftline.detectors.concept.monitor import BINARY_KINDS, DETECTOR_KINDS, ConceptDriftMonitor

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
first ``calibration`` errors, fed by streams/outcomes.py), ``score`` (the model's score as sent)
and ``loss`` (classification: log loss of the score as P(label "1"); regression: the squared
error)."""


class ConceptConfigError(ValueError):
    """The ``concept_drift`` section is wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One detector of a model's suite: a river detector ``kind`` on one ``stream``."""

    name: str
    kind: str
    stream: str = "error"
    params: Mapping[str, Any] = field(default_factory=dict)
    standardise: bool = False
    """Non-binary kinds: feed z-scores, with the mean/std of the first ``calibration`` values
    after a start or reset (Page-Hinkley's threshold is in the data's units)."""


@dataclass(frozen=True, slots=True)
class ConceptSettings:
    """The concept-drift suite of one model and what happens after a detection."""

    detectors: tuple[DetectorSpec, ...]
    cooldown_records: int = 0
    """After an event, detections on the next this many labelled predictions are suppressed."""
    cooldown_seconds: float = 0.0
    """... and those within this many seconds of event time (both must have passed)."""
    reset_on_detection: bool = True
    """An event resets every detector of the suite (they learn the new error level)."""
    calibration: int = 500
    critical_increase: float = 0.5
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
    models: Mapping[str, ConceptSettings] = field(default_factory=dict)

    def for_model(self, model: str) -> ConceptSettings:
        return self.models.get(model, self.defaults)


_SETTINGS_KEYS: Final = (
    "detectors",
    "cooldown_records",
    "cooldown_seconds",
    "reset_on_detection",
    "calibration",
    "critical_increase",
)
_DETECTOR_KEYS: Final = ("name", "kind", "stream", "params", "standardise")


def _mapping_at(path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConceptConfigError(f"{path}: expected a mapping, got {value!r}")
    return value


def _integer(path: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConceptConfigError(f"{path}: expected an integer >= {low}, got {value!r}")
    return value


def _real(path: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConceptConfigError(f"{path}: expected a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConceptConfigError(f"{path}: expected a number {'>' if positive else '>='} 0")
    return float(value)


def _detector_spec(path: str, raw: Any) -> DetectorSpec:
    body = _mapping_at(path, raw)
    for key in body:
        if key not in _DETECTOR_KEYS:
            raise ConceptConfigError(
                f"{path}.{key}: unknown key (allowed: {', '.join(_DETECTOR_KEYS)})"
            )
    kind = body.get("kind")
    if kind not in DETECTOR_KINDS:
        raise ConceptConfigError(
            f"{path}.kind: expected one of {', '.join(DETECTOR_KINDS)}, got {kind!r}"
        )
    stream = body.get("stream", "error")
    if stream not in STREAMS:
        raise ConceptConfigError(
            f"{path}.stream: expected one of {', '.join(STREAMS)}, got {stream!r}"
        )
    if kind in BINARY_KINDS and stream != "error":
        raise ConceptConfigError(f"{path}.stream: {kind} takes the 0/1 error stream only")
    params = dict(_mapping_at(f"{path}.params", body.get("params")))
    try:
        ConceptDriftMonitor(kind, **params)
    except (TypeError, ValueError) as exc:
        raise ConceptConfigError(f"{path}.params: {exc}") from None
    standardise = body.get("standardise", kind == "page_hinkley")
    if not isinstance(standardise, bool):
        raise ConceptConfigError(f"{path}.standardise: expected true or false, got {standardise!r}")
    if standardise and kind in BINARY_KINDS:
        raise ConceptConfigError(f"{path}.standardise: {kind} takes 0/1 values, not z-scores")
    name = body.get("name", f"{kind}_{stream}")
    if not isinstance(name, str) or not name:
        raise ConceptConfigError(f"{path}.name: expected a non-empty string, got {name!r}")
    return DetectorSpec(name, kind, stream, params, standardise)


def _settings(path: str, raw: Any, base: ConceptSettings) -> ConceptSettings:
    body = _mapping_at(path, raw)
    for key in body:
        if key not in _SETTINGS_KEYS:
            raise ConceptConfigError(
                f"{path}.{key}: unknown key (allowed: {', '.join(_SETTINGS_KEYS)})"
            )
    detectors = base.detectors
    if "detectors" in body:
        listed = body["detectors"]
        if not isinstance(listed, list):
            raise ConceptConfigError(f"{path}.detectors: expected a list, got {listed!r}")
        detectors = tuple(_detector_spec(f"{path}.detectors[{i}]", d) for i, d in enumerate(listed))
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ConceptConfigError(f"{path}.detectors: names must be unique, got {names}")
    reset = body.get("reset_on_detection", base.reset_on_detection)
    if not isinstance(reset, bool):
        raise ConceptConfigError(f"{path}.reset_on_detection: expected true or false")
    return ConceptSettings(
        detectors,
        _integer(
            f"{path}.cooldown_records", body.get("cooldown_records", base.cooldown_records), 0
        ),
        _real(
            f"{path}.cooldown_seconds",
            body.get("cooldown_seconds", base.cooldown_seconds),
            positive=False,
        ),
        reset,
        _integer(f"{path}.calibration", body.get("calibration", base.calibration), 2),
        _real(
            f"{path}.critical_increase",
            body.get("critical_increase", base.critical_increase),
            positive=True,
        ),
    )


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
    body = _mapping_at("concept_drift", section)
    for key in body:
        if key not in ("defaults", "models"):
            raise ConceptConfigError(
                f"concept_drift.{key}: unknown key (allowed: defaults, models)"
            )
    defaults = _settings("concept_drift.defaults", body.get("defaults"), DEFAULT_CONCEPT_DRIFT)
    models = {
        str(name): _settings(f"concept_drift.models.{name}", raw, defaults)
        for name, raw in _mapping_at("concept_drift.models", body.get("models")).items()
    }
    return ConceptDriftConfig(defaults, models)
