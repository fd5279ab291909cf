"""Import river's drift detectors without river's example datasets.

``river/drift/__init__.py`` runs ``from . import binary, datasets``; ``river.drift.datasets``
imports ``river.datasets``, which imports ``river.stream``, which imports scikit-learn and pandas.
The worker never uses a dataset, yet that chain cost every worker process 81 MiB of resident
memory (199 MiB → 118 MiB for ``import driftline.streams.worker``, measured with
``ru_maxrss``), more than the join index of 100,000 pending predictions.

:func:`defer_drift_datasets` puts a stand-in for ``river.drift.datasets`` in ``sys.modules``
before river's drift package is first imported: the detectors import as usual, and the first
attribute read on the stand-in imports the real module (so ``river.drift.datasets.Apple`` still
works, just later). If river's drift package was already imported (by the user's own code, or by
a test) nothing changes. ``tests/unit/test_river_import.py`` checks both in fresh interpreters.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any

__all__ = ["defer_drift_datasets"]

_DATASETS = "river.drift.datasets"


def defer_drift_datasets() -> None:
    """Register the stand-in for ``river.drift.datasets`` (idempotent; see the module doc)."""
    if "river.drift" in sys.modules or _DATASETS in sys.modules:
        return
    river = importlib.util.find_spec("river")  # a top-level spec: imports nothing
    if river is None or not river.submodule_search_locations:
        return  # river missing: the real import fails later with its own message
    drift_dir = os.path.join(next(iter(river.submodule_search_locations)), "drift")
    # PathFinder, not importlib.util.find_spec: the latter would import river.drift to get
    # its __path__, which is the very import being avoided
    spec = importlib.machinery.PathFinder.find_spec(_DATASETS, [drift_dir])
    if spec is None:
        return
    stand_in = types.ModuleType(_DATASETS)
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin
    stand_in.__path__ = list(spec.submodule_search_locations or [])

    def load_on_first_use(name: str) -> Any:
        del sys.modules[_DATASETS]
        real = importlib.import_module(_DATASETS)
        stand_in.__dict__.update(real.__dict__)
        return getattr(real, name)

    stand_in.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules[_DATASETS] = stand_in
