"""Concept drift on per-prediction streams: a uniform wrapper over river's detectors.

Every detector here is river's own implementation (river 0.26), fed one value at a time in a
tight loop; nothing is re-derived.  This package adds what river lacks, one module each:

* ``monitor``: :class:`ConceptDriftMonitor`, a batch interface
  (:meth:`ConceptDriftMonitor.update_many`, returning the *indices* where a drift, and for the
  binary family a warning, fired), standardisation of scale-dependent inputs with a reference
  mean/std fixed at construction, and a JSON checkpoint (:meth:`ConceptDriftMonitor.to_state` /
  :meth:`from_state`; the encoding is ``checkpoint``) that restores a detector that flags at
  exactly the same indices as one that was never interrupted;
* ``suite``: several detectors per model fed in batches (:class:`ConceptDriftSuite`);
* ``settings``: the configurable suite of a model (:func:`concept_config_from_dict`: the
  ``concept_drift`` section of ``config/drift_thresholds.yaml``, default
  :data:`DEFAULT_CONCEPT_DRIFT`);
* ``inputs``: what is fed, from a version's joined outcomes (:func:`outcome_streams`: error,
  score, loss; :func:`error_ranks`: a regression's errors as ranks in [0, 1]);
* ``stage``: :class:`ConceptStage`, which runs it on one model version's ordered outcome stream
  with a cooldown, a reset after a detection, a change-point estimate and the error
  before/after (the worker feeds it from ``streams/outcomes.py``).

Every public name is importable from ``driftline.detectors.concept`` itself.

Checkpoint design
-----------------
river detectors are Python objects whose state lives in plain attributes, small river statistics
(``stats.Mean``, ``stats.Var``, ``stats.EWMean``, HDDM_W's ``SampleInfo``), a ``deque`` and a
``random.Random`` (KSWIN), and two Rust objects (ADWIN's ``AdaptiveWindowing`` and the Rust core
of ``EWMean``) that expose their state as serde/bincode bytes through ``__getstate__``.  The
state is encoded as JSON: scalars as themselves, non-finite floats as tagged strings, the Rust
objects as base64 of *their own bytes* (decoded by Rust's ``__setstate__``: data, never code),
the Python statistics as their attribute dicts.  Only an allow-list of classes can be rebuilt,
so a tampered checkpoint can at worst fail to load; it can never run code (no pickle).
This was preferred to

* replaying a tail of the input: DDM, EDDM, HDDM and Page-Hinkley summarise *every* value since
  the last reset, so an exact replay needs an unbounded tail on a stationary stream, and a
  bounded one is not exact;
* a base64 pickle: exact and simple, but the project rule is "never unpickle", and a checkpoint
  store is one misconfiguration away from holding foreign data.

The cost is coupling to river's private attribute names.  The river version is written into the
checkpoint and :meth:`ConceptDriftMonitor.from_state` refuses another version
(:class:`CheckpointVersionError`): the caller then starts a fresh detector.  The round-trip test
for all seven detectors (``tests/unit/test_concept.py``) guards a river upgrade.
"""

from __future__ import annotations

from driftline.detectors.concept.river_import import defer_drift_datasets

defer_drift_datasets()  # before river.drift is first imported: 81 MiB less per worker

from driftline.detectors.concept.checkpoint import CheckpointVersionError  # noqa: E402
from driftline.detectors.concept.inputs import error_ranks, outcome_streams  # noqa: E402
from driftline.detectors.concept.monitor import (  # noqa: E402
    BINARY_KINDS,
    DETECTOR_KINDS,
    ConceptDriftMonitor,
    DriftState,
)
from driftline.detectors.concept.settings import (  # noqa: E402
    DEFAULT_CONCEPT_DRIFT,
    DEFAULT_DETECTORS,
    STREAMS,
    ConceptConfigError,
    ConceptDriftConfig,
    ConceptSettings,
    DetectorSpec,
    concept_config_from_dict,
)
from driftline.detectors.concept.stage import HISTORY, ConceptStage, Detection, change_point  # noqa: E402
from driftline.detectors.concept.suite import ConceptDriftSuite, DriftRecord, SuiteMember  # noqa: E402

__all__ = [
    "BINARY_KINDS",
    "DEFAULT_CONCEPT_DRIFT",
    "DEFAULT_DETECTORS",
    "DETECTOR_KINDS",
    "HISTORY",
    "STREAMS",
    "CheckpointVersionError",
    "ConceptConfigError",
    "ConceptDriftConfig",
    "ConceptDriftMonitor",
    "ConceptDriftSuite",
    "ConceptSettings",
    "ConceptStage",
    "Detection",
    "DetectorSpec",
    "DriftRecord",
    "DriftState",
    "SuiteMember",
    "change_point",
    "concept_config_from_dict",
    "error_ranks",
    "outcome_streams",
]
