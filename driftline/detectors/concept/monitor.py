"""One river drift detector behind a batch interface, with a JSON checkpoint.

Every detector is river's own implementation (river 0.26), fed one value at a time in a tight
loop; nothing is re-derived.  See :class:`ConceptDriftMonitor`.

Import cost: ``river.drift``'s ``__init__`` imports ``river.drift.datasets`` (then
``river.stream``: scikit-learn, pandas, SQLAlchemy), about 1.3-2 s of CPU per process here, most
of a worker's start.  Importing a submodule (``river.drift.adwin``) runs that ``__init__`` too,
so river 0.26.1 offers no cheaper import (short of patching ``sys.modules``, which we do not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from river.drift import ADWIN, KSWIN, PageHinkley
from river.drift.binary import DDM, EDDM, HDDMA, HDDMW

from driftline.detectors.concept.checkpoint import (
    CHECKPOINT_FORMAT,
    RIVER_VERSION,
    CheckpointVersionError,
    decode,
    detector_state,
    encode,
)

__all__ = ["BINARY_KINDS", "DETECTOR_KINDS", "ConceptDriftMonitor", "DriftState"]

DriftState = Literal["stable", "warning", "drift"]

_FACTORIES: Final[dict[str, Callable[..., Any]]] = {
    "adwin": ADWIN,
    "ddm": DDM,
    "eddm": EDDM,
    "hddm_a": HDDMA,
    "hddm_w": HDDMW,
    "page_hinkley": PageHinkley,
    "kswin": KSWIN,
}
DETECTOR_KINDS: Final[tuple[str, ...]] = tuple(_FACTORIES)
"""Detector names accepted by :class:`ConceptDriftMonitor`."""
BINARY_KINDS: Final[frozenset[str]] = frozenset({"ddm", "eddm", "hddm_a", "hddm_w"})
"""Detectors that take 0/1 values (errors) and can raise a warning before a drift."""

_KSWIN_DEFAULT_SEED: Final = 0


class ConceptDriftMonitor:
    r"""One river drift detector behind a batch interface, with a JSON checkpoint.

    Feed it the per-prediction error stream (0 = correct, 1 = wrong) for the binary detectors,
    or any numeric stream (error, confidence, score, loss) for ADWIN, Page-Hinkley and KSWIN.
    Values are passed to river one by one, in order; NaN values (e.g. predictions whose label is
    missing) are skipped and not counted.  As in river, a detector resets itself on the update
    after a drift.

    Rules and defaults (river's defaults, which are the papers'):

    * ``adwin`` -- ADWIN [^1]: cut the window when two sub-windows' means differ by more than a
      Hoeffding-type bound at confidence ``delta``.  ``delta=0.002, clock=32, max_buckets=5,
      min_window_length=5, grace_period=10``.
    * ``ddm`` -- DDM [^2]: with error rate :math:`p_i` and :math:`s_i=\sqrt{p_i(1-p_i)/i}`,
      warning if :math:`p_i+s_i > p_{min}+2 s_{min}`, drift if :math:`> p_{min}+3 s_{min}`.
      ``warm_start=30, warning_threshold=2.0, drift_threshold=3.0``.
    * ``eddm`` -- EDDM [^3]: on the distance between errors; warning if
      :math:`(p'_i+2s'_i)/(p'_{max}+2s'_{max}) < \alpha`, drift if :math:`< \beta`.
      ``warm_start=30, alpha=0.95, beta=0.9``.
    * ``hddm_a`` / ``hddm_w`` -- HDDM [^4] with Hoeffding bounds on averages / on EWMA
      (``lambda_val=0.05``). ``drift_confidence=0.001, warning_confidence=0.005,
      two_sided_test=False``.
    * ``page_hinkley`` -- Page-Hinkley [^5]: cumulative deviation from the running mean minus
      ``delta``; drift when it exceeds ``threshold``.  ``min_instances=30, delta=0.005,
      threshold=50, alpha=0.9999, mode="both"``.  **The threshold is in the units of the
      data**: pass ``reference_mean`` / ``reference_std`` (or use :meth:`from_reference`) so
      values are fed as :math:`z=(x-\mu_{ref})/\sigma_{ref}`.  On unstandardised N(0, 1) data
      the defaults raise ~327 false alarms per 500k samples (measured, river 0.26).
    * ``kswin`` -- KSWIN [^6]: a two-sample KS test between the last ``stat_size`` values and a
      random sample of the rest of a ``window_size`` window; drift if p <= ``alpha`` and
      D > 0.1.  ``alpha=0.005, window_size=100, stat_size=30``.  ``seed`` defaults to 0 here
      (river: None) so runs are reproducible.  KSWIN calls scipy at every update (~220 µs):
      use it on a subsample or on per-window aggregates.

    Standardisation (``reference_mean``, ``reference_std``) is applied to the non-binary
    detectors only; binary detectors require values in {0, 1}.

    Parameters
    ----------
    kind
        One of :data:`DETECTOR_KINDS`.
    reference_mean, reference_std
        If given, values are standardised with them before being fed (not for binary kinds).
    params
        Keyword arguments for the river detector, overriding its defaults.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(2000) < 0.1, rng.random(2000) < 0.4]).astype(int)
    >>> ddm = ConceptDriftMonitor("ddm")
    >>> drifts = ddm.update_many(errors)
    >>> bool(drifts.size > 0 and 2000 <= drifts[0] < 2200), ddm.drift_count >= 1
    (True, True)
    >>> restored = ConceptDriftMonitor.from_state(ddm.to_state())
    >>> restored.n_seen, restored.drift_count == ddm.drift_count
    (4000, True)

    References
    ----------
    [^1]: Bifet, A., Gavaldà, R. (2007). Learning from time-changing data with adaptive
        windowing. SIAM SDM.
    [^2]: Gama, J., Medas, P., Castillo, G., Rodrigues, P. (2004). Learning with drift
        detection. SBIA.
    [^3]: Baena-García, M. et al. (2006). Early drift detection method. IWKDDS.
    [^4]: Frías-Blanco, I. et al. (2014). Online and non-parametric drift detection methods
        based on Hoeffding's bounds. IEEE TKDE 27(3).
    [^5]: Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2).
    [^6]: Raab, C., Heusinger, M., Schleif, F.-M. (2020). Reactive soft prototype computing for
        concept drift streams. Neurocomputing 416.
    """

    def __init__(
        self,
        kind: str = "adwin",
        *,
        reference_mean: float | None = None,
        reference_std: float | None = None,
        **params: Any,
    ) -> None:
        if kind not in _FACTORIES:
            raise ValueError(f"unknown detector kind {kind!r}; expected one of {DETECTOR_KINDS}")
        if (reference_mean is None) != (reference_std is None):
            raise ValueError("give both reference_mean and reference_std, or neither")
        if reference_std is not None:
            if kind in BINARY_KINDS:
                raise ValueError(f"{kind} takes 0/1 errors; standardisation does not apply")
            if not (math.isfinite(reference_std) and reference_std > 0):
                raise ValueError(f"reference_std must be finite and > 0, got {reference_std}")
        if kind == "kswin":
            params.setdefault("seed", _KSWIN_DEFAULT_SEED)
        self.kind = kind
        self.params: dict[str, Any] = dict(params)
        self.reference_mean = reference_mean
        self.reference_std = reference_std
        self._detector: Any = _FACTORIES[kind](**params)
        self._binary = kind in BINARY_KINDS
        self._has_warning = hasattr(self._detector, "warning_detected")
        self.n_seen = 0
        """Values fed so far (NaN excluded)."""
        self.drift_count = 0
        """Drifts detected so far."""
        self.warning_count = 0
        """Updates on which a warning was raised so far (binary detectors only)."""
        self.warning_indices: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        """Indices, within the last batch, where a warning was raised."""
        self._state: DriftState = "stable"

    @classmethod
    def from_reference(cls, kind: str, reference: ArrayLike, **params: Any) -> ConceptDriftMonitor:
        """Build a detector that standardises with the mean and std of ``reference``."""
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[~np.isnan(ref)]
        if ref.size < 2:
            raise ValueError("reference needs at least two non-NaN values")
        return cls(
            kind, reference_mean=float(ref.mean()), reference_std=float(ref.std(ddof=1)), **params
        )

    @property
    def state(self) -> DriftState:
        """State after the last value fed: ``stable``, ``warning`` or ``drift``."""
        return self._state

    def _prepare(self, values: ArrayLike) -> tuple[list[Any], NDArray[np.int64]]:
        arr = np.asarray(values, dtype=np.float64).ravel()
        keep = ~np.isnan(arr)
        positions = np.flatnonzero(keep).astype(np.int64)
        arr = arr[keep]
        if self._binary:
            if not np.all((arr == 0.0) | (arr == 1.0)):
                raise ValueError(f"{self.kind} takes 0/1 values (1 = error)")
            return arr.astype(np.int64).tolist(), positions
        if self.reference_std is not None and self.reference_mean is not None:
            arr = (arr - self.reference_mean) / self.reference_std
        return arr.tolist(), positions

    def update_many(self, values: ArrayLike) -> NDArray[np.int64]:
        """Feed ``values`` in order; return the indices (within ``values``) where drift fired.

        Indices of warnings are left in :attr:`warning_indices`.
        """
        xs, positions = self._prepare(values)
        det = self._detector
        drifts: list[int] = []
        warnings: list[int] = []
        if self._has_warning:
            for i, x in enumerate(xs):
                det.update(x)
                if det.drift_detected:
                    drifts.append(i)
                elif det.warning_detected:
                    warnings.append(i)
        else:
            for i, x in enumerate(xs):
                det.update(x)
                if det.drift_detected:
                    drifts.append(i)
        if xs:
            if det.drift_detected:
                self._state = "drift"
            elif self._has_warning and det.warning_detected:
                self._state = "warning"
            else:
                self._state = "stable"
        self.n_seen += len(xs)
        self.drift_count += len(drifts)
        self.warning_count += len(warnings)
        self.warning_indices = positions[np.asarray(warnings, dtype=np.int64)]
        return positions[np.asarray(drifts, dtype=np.int64)]

    def step(self, value: float) -> bool:
        """Feed one non-NaN value (standardised like `update_many`); True if a drift fired.
        The per-value path of :class:`ConceptStage`, without numpy per call."""
        if self._binary:
            if value != 0.0 and value != 1.0:
                raise ValueError(f"{self.kind} takes 0/1 values (1 = error)")
            x: float = int(value)
        elif self.reference_std is not None and self.reference_mean is not None:
            x = (value - self.reference_mean) / self.reference_std
        else:
            x = value
        det = self._detector
        det.update(x)
        self.n_seen += 1
        if det.drift_detected:
            self._state = "drift"
            self.drift_count += 1
            return True
        if self._has_warning and det.warning_detected:
            self._state = "warning"
            self.warning_count += 1
        else:
            self._state = "stable"
        return False

    def update(self, value: float) -> DriftState:
        """Feed one value; return the state after it."""
        self.update_many(np.asarray([value], dtype=np.float64))
        return self._state

    def to_state(self) -> dict[str, Any]:
        """A JSON-compatible checkpoint (see the module docstring for the design)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "river_version": RIVER_VERSION,
            "kind": self.kind,
            "params": {k: encode(v) for k, v in self.params.items()},
            "reference_mean": self.reference_mean,
            "reference_std": self.reference_std,
            "n_seen": self.n_seen,
            "drift_count": self.drift_count,
            "warning_count": self.warning_count,
            "state": self._state,
            "detector": detector_state(self._detector),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ConceptDriftMonitor:
        """Rebuild a monitor from :meth:`to_state` output.

        Raises :class:`CheckpointVersionError` if the checkpoint was written by another river
        version or checkpoint format: start a fresh detector in that case.
        """
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointVersionError(f"checkpoint format {state.get('format')!r} unsupported")
        if state.get("river_version") != RIVER_VERSION:
            raise CheckpointVersionError(
                f"checkpoint written with river {state.get('river_version')!r}, "
                f"running {RIVER_VERSION}: start a fresh detector"
            )
        params = {k: decode(v) for k, v in state["params"].items()}
        monitor = cls(
            state["kind"],
            reference_mean=state["reference_mean"],
            reference_std=state["reference_std"],
            **params,
        )
        for name, value in state["detector"].items():
            setattr(monitor._detector, name, decode(value))
        monitor.n_seen = int(state["n_seen"])
        monitor.drift_count = int(state["drift_count"])
        monitor.warning_count = int(state["warning_count"])
        monitor._state = state["state"]
        return monitor
