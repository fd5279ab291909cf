"""Two-sample statistical tests for data drift: pure functions, numpy/scipy only, no I/O.

Every test compares a *reference* sample (or its binned/categorical counts) with a
*window* and returns a :class:`TestResult`. The verdict ``drifted`` is the raw,
per-test decision; correcting for many features is the job of
:func:`driftline.detectors.multiple_testing.adjust_p_values`.

Conventions shared by every function here (``base.py`` implements them once):

* Non-finite values (NaN, +/-inf) are dropped before testing; counting them is the
  sketch's job. Negative or non-finite *counts* are treated as zero.
* An empty reference or window (nothing left after filtering) gives a non-drifted
  result with ``statistic=0.0`` and ``p_value=1.0`` for p-value tests (``None`` for
  effect-size tests). Results never contain NaN.
* p-value tests decide ``p_value < alpha``; effect-size tests decide
  ``statistic >= threshold``.

Modules: ``base`` (:class:`TestResult`, the shared rules), ``univariate`` (one numeric
variable: KS, Wasserstein, binned or on samples; the two-proportion z-test), ``counts``
(PSI, chi-square, Jensen-Shannon, Hellinger on counts over bins or categories),
``multivariate`` (MMD, :class:`PCAReconstruction`) and ``registry`` (one declaration per
configurable test, from which thresholds, evaluation, docs and conformance tests derive).
"""

from driftline.detectors.stats.base import TestResult as TestResult
from driftline.detectors.stats.counts import CHI2_MIN_EXPECTED as CHI2_MIN_EXPECTED
from driftline.detectors.stats.counts import CHI2_PSEUDO_COUNT as CHI2_PSEUDO_COUNT
from driftline.detectors.stats.counts import PSI_EPSILON as PSI_EPSILON
from driftline.detectors.stats.counts import chi_square as chi_square
from driftline.detectors.stats.counts import hellinger as hellinger
from driftline.detectors.stats.counts import jensen_shannon as jensen_shannon
from driftline.detectors.stats.counts import psi as psi
from driftline.detectors.stats.multivariate import PCAReconstruction as PCAReconstruction
from driftline.detectors.stats.multivariate import mmd as mmd
from driftline.detectors.stats.registry import REGISTRY as REGISTRY
from driftline.detectors.stats.registry import StatTest as StatTest
from driftline.detectors.stats.registry import TestInput as TestInput
from driftline.detectors.stats.univariate import WASSERSTEIN_MIN_SCALE as WASSERSTEIN_MIN_SCALE
from driftline.detectors.stats.univariate import ks_binned as ks_binned
from driftline.detectors.stats.univariate import ks_exact as ks_exact
from driftline.detectors.stats.univariate import two_proportion as two_proportion
from driftline.detectors.stats.univariate import wasserstein as wasserstein
from driftline.detectors.stats.univariate import wasserstein_binned as wasserstein_binned
