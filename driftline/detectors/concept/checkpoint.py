"""JSON encoding of river drift-detector state (allow-listed classes only; never pickle).

The checkpoint design (why JSON of river's own attributes rather than a replayed tail or a
pickle) is described in :mod:`driftline.detectors.concept`.

>>> import collections
>>> decode(encode(collections.deque([1.0, float("inf")], maxlen=3)))
deque([1.0, inf], maxlen=3)
"""

from __future__ import annotations

import base64
import collections
import math
import random
from importlib.metadata import version
from typing import Any, Final

import numpy as np
from river import stats as river_stats
from river._river_rust.drift import AdaptiveWindowing
from river._river_rust.stats import RsEWMean
from river.drift.binary.hddm_w import SampleInfo

__all__ = [
    "CHECKPOINT_FORMAT",
    "RIVER_VERSION",
    "CheckpointVersionError",
    "decode",
    "detector_state",
    "encode",
]

CHECKPOINT_FORMAT: Final = 1
RIVER_VERSION: Final = version("river")


class CheckpointVersionError(ValueError):
    """A checkpoint was written by another river or checkpoint format version."""


_RUST_CLASSES: Final[dict[str, Any]] = {
    "AdaptiveWindowing": AdaptiveWindowing,
    "RsEWMean": RsEWMean,
}
_PY_CLASSES: Final[dict[str, Any]] = {
    "Mean": river_stats.Mean,
    "Var": river_stats.Var,
    "EWMean": river_stats.EWMean,
    "SampleInfo": SampleInfo,
}


def encode(value: Any) -> Any:
    """``value`` as JSON-compatible data; raises TypeError for a class not allow-listed."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | tuple):  # e.g. KSWIN's ``window`` param from the YAML config
        return [encode(v) for v in value]
    if isinstance(value, collections.deque):
        return {"__deque__": [encode(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, random.Random):
        version, internal, gauss = value.getstate()
        return {"__random__": [version, list(internal), gauss]}
    name = type(value).__name__
    if name in _RUST_CLASSES and isinstance(value, _RUST_CLASSES[name]):
        return {
            "__rust__": name,
            "args": [encode(a) for a in value.__getnewargs__()],
            "state": base64.b64encode(value.__getstate__()).decode("ascii"),
        }
    if name in _PY_CLASSES and type(value) is _PY_CLASSES[name]:
        return {"__obj__": name, "attrs": {k: encode(v) for k, v in vars(value).items()}}
    raise TypeError(f"cannot checkpoint a {type(value).__qualname__} (not allow-listed)")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode` (allow-listed classes only: data, never code)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__deque__" in value:
        return collections.deque((decode(v) for v in value["__deque__"]), value["maxlen"])
    if "__random__" in value:
        version, internal, gauss = value["__random__"]
        rng = random.Random()
        rng.setstate((version, tuple(internal), gauss))
        return rng
    if "__rust__" in value:
        rust_cls = _RUST_CLASSES[value["__rust__"]]
        obj = rust_cls(*[decode(a) for a in value["args"]])
        obj.__setstate__(base64.b64decode(value["state"]))
        return obj
    if "__obj__" in value:
        py_cls = _PY_CLASSES[value["__obj__"]]
        obj = py_cls.__new__(py_cls)
        for k, v in value["attrs"].items():
            setattr(obj, k, decode(v))
        return obj
    raise ValueError(f"unknown encoded value with keys {sorted(value)}")


def detector_state(detector: Any) -> dict[str, Any]:
    """The attributes of a river detector, encoded."""
    # Bound methods (Page-Hinkley's _test_drift) are rebuilt by the constructor.
    return {k: encode(v) for k, v in vars(detector).items() if not callable(v)}
