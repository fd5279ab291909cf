"""The worker imports river's drift detectors without river's example datasets (scikit-learn,
pandas), and the datasets still load when asked for. Fresh interpreters: the test process has
long imported everything."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_worker_import_leaves_sklearn_and_pandas_out() -> None:
    out = _run(
        "import sys, driftline.streams.worker\n"
        "from driftline.detectors.concept import ConceptDriftMonitor\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'river.stream') if m in sys.modules))"
    )
    assert out == "[]"


def test_detectors_work_and_datasets_load_on_first_use() -> None:
    out = _run(
        "import driftline.detectors.concept, sys\n"
        "import river.drift\n"
        "from river.drift import ADWIN, KSWIN, PageHinkley\n"
        "from river.drift.binary import DDM, EDDM, HDDMA, HDDMW\n"
        "a = ADWIN()\n"
        "hits = [i for i in range(4000) if a.update(float(i >= 2000)) is None and a.drift_detected]\n"
        "print(bool(hits), 'sklearn' in sys.modules, river.drift.datasets.Apple.__name__)"
    )
    assert out == "True False Apple"


def test_nothing_changes_when_river_drift_was_imported_first() -> None:
    out = _run(
        "import river.drift, sys\n"
        "import driftline.detectors.concept\n"
        "print('Apple' in vars(sys.modules['river.drift.datasets']), 'sklearn' in sys.modules)"
    )
    assert out == "True True"
