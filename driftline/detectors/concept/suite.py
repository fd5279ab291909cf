"""Several detectors per model on named streams, fed in batches: :class:`ConceptDriftSuite`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from driftline.detectors.concept.checkpoint import decode, encode
from driftline.detectors.concept.monitor import ConceptDriftMonitor, DriftState
from driftline.detectors.concept.settings import DEFAULT_DETECTORS

__all__ = ["ConceptDriftSuite", "DriftRecord", "SuiteMember"]


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """One detection: which detector on which stream, where, and what state."""

    detector: str
    stream: str
    index: int
    """Position within the batch passed to :meth:`ConceptDriftSuite.update`."""
    sample: int
    """0-based count of values this detector had been fed before this one (its global index)."""
    state: DriftState


@dataclass(frozen=True, slots=True)
class SuiteMember:
    """Configuration of one detector in a :class:`ConceptDriftSuite`."""

    name: str
    stream: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    reference_mean: float | None = None
    reference_std: float | None = None


class ConceptDriftSuite:
    """Several :class:`ConceptDriftMonitor` per model, each on a named stream.

    :meth:`default` gives the worker's default detectors (:data:`DEFAULT_DETECTORS`: ADWIN with
    ``clock=1`` on the ``error`` stream, 0/1 per labelled prediction) and, when the reference
    mean/std of the score are known, Page-Hinkley on the standardised ``score`` stream.  :meth:`update` takes a mapping stream name -> values (streams absent from
    the mapping are skipped) and returns drift and warning records in detector order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> suite = ConceptDriftSuite.default(score_mean=0.0, score_std=1.0)
    >>> errors = (rng.random(3000) < np.r_[np.full(1500, 0.1), np.full(1500, 0.5)]).astype(int)
    >>> scores = rng.normal(np.r_[np.zeros(1500), np.full(1500, 2.0)], 1.0)
    >>> records = suite.update({"error": errors, "score": scores})
    >>> sorted({r.detector for r in records if r.state == "drift"})
    ['adwin_error', 'page_hinkley_score']
    >>> restored = ConceptDriftSuite.from_state(suite.to_state())
    >>> [m.name for m in restored.members]
    ['adwin_error', 'page_hinkley_score']
    """

    def __init__(self, members: Sequence[SuiteMember]) -> None:
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        self.members = tuple(members)
        self.monitors: dict[str, ConceptDriftMonitor] = {
            m.name: ConceptDriftMonitor(
                m.kind,
                reference_mean=m.reference_mean,
                reference_std=m.reference_std,
                **dict(m.params),
            )
            for m in members
        }

    @classmethod
    def default(
        cls, score_mean: float | None = None, score_std: float | None = None
    ) -> ConceptDriftSuite:
        """The default detectors on ``error``; Page-Hinkley on standardised ``score`` if stats
        given."""
        members = [SuiteMember(d.name, d.stream, d.kind, d.params) for d in DEFAULT_DETECTORS]
        if score_mean is not None and score_std is not None:
            members.append(
                SuiteMember(
                    "page_hinkley_score",
                    "score",
                    "page_hinkley",
                    reference_mean=score_mean,
                    reference_std=score_std,
                )
            )
        return cls(members)

    def update(self, streams: Mapping[str, ArrayLike]) -> list[DriftRecord]:
        """Feed each detector its stream; return drift and warning records."""
        records: list[DriftRecord] = []
        for member in self.members:
            if member.stream not in streams:
                continue
            monitor = self.monitors[member.name]
            values = np.asarray(streams[member.stream], dtype=np.float64).ravel()
            start = monitor.n_seen
            # sample number = start + rank of the index among non-NaN values
            fed_before = np.cumsum(~np.isnan(values)) - 1
            drifts = monitor.update_many(values)
            found: list[tuple[int, DriftState]] = [(int(i), "drift") for i in drifts]
            found += [(int(i), "warning") for i in monitor.warning_indices]
            for index, state in sorted(found):
                records.append(
                    DriftRecord(
                        member.name, member.stream, index, start + int(fed_before[index]), state
                    )
                )
        return records

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible checkpoint of every member."""
        return {
            "members": [
                {
                    "name": m.name,
                    "stream": m.stream,
                    "kind": m.kind,
                    "params": {k: encode(v) for k, v in m.params.items()},
                    "reference_mean": m.reference_mean,
                    "reference_std": m.reference_std,
                    "monitor": self.monitors[m.name].to_state(),
                }
                for m in self.members
            ]
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ConceptDriftSuite:
        """Rebuild a suite from :meth:`to_state` output (see ``ConceptDriftMonitor.from_state``)."""
        entries: Iterable[Mapping[str, Any]] = state["members"]
        members = []
        monitors = {}
        for e in entries:
            members.append(
                SuiteMember(
                    e["name"],
                    e["stream"],
                    e["kind"],
                    {k: decode(v) for k, v in e["params"].items()},
                    e["reference_mean"],
                    e["reference_std"],
                )
            )
            monitors[e["name"]] = ConceptDriftMonitor.from_state(e["monitor"])
        suite = cls(members)
        suite.monitors = monitors
        return suite
