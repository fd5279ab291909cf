"""The statistical-test registry: one declaration per test, everything else derived from it.

A :class:`StatTest` names a test (its key in ``drift_thresholds`` and its ``TestResult.test``),
its kind (``p_value``: the threshold is a significance level in (0, 1), drift when
``p < alpha``; ``effect``: a positive threshold, drift when ``statistic >= threshold``), what
it applies to (``numeric`` or ``categorical`` features, the ``multivariate`` joint sample), how
it runs on a window (``run``, given a :class:`TestInput` and the threshold), its default
threshold, where that default comes from, and its rule in one line.

Derived from :data:`REGISTRY`, so they cannot disagree with it:

* ``thresholds.py``: the test keys accepted at model and feature level, how each is validated
  (alpha or positive threshold), the defaults, the choices of ``numeric_test``;
* ``window_tests.py`` (called by ``evaluate.py``): the tests run on every numeric and
  categorical feature and on the joint sample, in registry order;
* the table of tests in ``docs/DRIFT_DETECTION.md`` (:func:`render_table`; a unit test checks
  the committed table is current);
* ``tests/unit/test_stat_registry.py``: the conformance checks every entry must pass (valid
  results, identical samples do not drift, shifted ones do, deterministic, ties, NaN, tiny and
  empty inputs), river's ``utils.estimator_checks`` idea.

Adding a test: write its function (next to its kind: ``univariate.py``, ``counts.py``,
``multivariate.py``) and add one ``StatTest(...)`` to :data:`REGISTRY`; run the conformance
tests, then ``driftline config tests --write docs/DRIFT_DETECTION.md``.
See "How to extend" in ``docs/DESIGN.md``.

>>> [t.name for t in applicable("categorical")]
['chi_square', 'psi', 'jensen_shannon', 'hellinger']
>>> REGISTRY_BY_NAME["psi"].default, REGISTRY_BY_NAME["psi"].kind
(0.2, 'effect')
>>> REGISTRY_BY_NAME["psi"].run(TestInput([50, 50], [90, 10]), 0.2).drifted
True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from driftline.detectors.stats import counts, multivariate, univariate
from driftline.detectors.stats.base import Counts, TestResult

__all__ = [
    "REGISTRY",
    "REGISTRY_BY_NAME",
    "FineHistograms",
    "StatTest",
    "TestInput",
    "applicable",
    "names",
    "on_counts",
    "on_samples",
    "render_table",
    "replace_table",
]

Kind = Literal["p_value", "effect"]
Scope = Literal["numeric", "categorical", "multivariate"]
Run = Callable[["TestInput", float], TestResult | None]

MMD_PERMUTATIONS = 400
"""Permutations of the MMD test in a window: its smallest p-value, 1/401, must be able to pass
Holm over the three multivariate tests at ``multivariate_alpha`` = 0.01 (0.01/3 = 0.0033);
stats.mmd's default of 200 (smallest p 0.005) never could."""
MMD_MAX_SAMPLES = 200
"""Rows per side in the MMD test: the permutation matrix product grows with its square
(300 rows: 27 ms, 200 rows: about 11 ms here). Correlation changes are caught by the PCA
covariance test, which uses the whole sample; MMD is the catch-all for joint shifts."""


def _empty() -> NDArray[np.float64]:
    return np.empty(0)


class FineHistograms(NamedTuple):
    """Counts of both sides on the same fine bins, and the bins' ``len + 1`` finite edges."""

    reference_counts: NDArray[Any]
    window_counts: NDArray[Any]
    edges: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TestInput:
    """What a registered test is given: one feature (or the joint sample) of one window.

    A numeric feature has histogram counts on the reference-quantile bins, the samples, the
    reference std and (recent profiles) fine histograms; a categorical feature has category
    counts (Mappings); the joint sample has standardised rows, the reference's PCA fit (if
    any) and a per-window seed. ``verdict_test`` names the test whose p-value decides the
    feature, so a test that is only reported may take a faster approximation.
    ``reference_sorted``: the reference sample holds only finite values, sorted (the
    evaluation prepares each profile's columns so once, not in every window); the tests of
    one numeric variable do not depend on the order of its values.
    """

    __test__ = False  # not a pytest test class despite the name

    reference_counts: Counts = field(default_factory=_empty)
    window_counts: Counts = field(default_factory=_empty)
    reference_sample: NDArray[np.float64] = field(default_factory=_empty)
    window_sample: NDArray[np.float64] = field(default_factory=_empty)
    reference_std: float = 1.0
    fine: FineHistograms | None = None
    pca: multivariate.PCAReconstruction | None = None
    seed: int = 0
    verdict_test: str = ""
    reference_sorted: bool = False  # reference_sample is finite and sorted (a numeric feature)


@dataclass(frozen=True, slots=True)
class StatTest:
    """One registered test; see the module docstring for what is derived from it."""

    name: str
    kind: Kind
    applies_to: tuple[Scope, ...]
    run: Run  # None from run: the inputs it needs are absent (e.g. a profile without PCA)
    default: float
    source: str  # where the default comes from
    rule: str  # the decision rule in one line (docs table)

    @property
    def function(self) -> str:
        """Qualified name of the function ``run`` calls (for the docs)."""
        return str(inspect.unwrap(self.run).__qualname__)


def _calls(function: Callable[..., Any]) -> Callable[[Run], Run]:
    """Mark a runner as calling ``function`` (``StatTest.function`` reads it)."""

    def mark(run: Run) -> Run:
        functools.update_wrapper(run, function, assigned=(), updated=())
        return run

    return mark


def on_counts(function: Callable[[Any, Any, float], TestResult]) -> Run:
    """Runner calling ``function(reference_counts, window_counts, threshold)``."""

    @_calls(function)
    def run(x: TestInput, threshold: float) -> TestResult:
        return function(x.reference_counts, x.window_counts, threshold)

    return run


def on_samples(
    function: Callable[[NDArray[np.float64], NDArray[np.float64], float], TestResult],
) -> Run:
    """Runner calling ``function(reference_sample, window_sample, threshold)``."""

    @_calls(function)
    def run(x: TestInput, threshold: float) -> TestResult:
        return function(x.reference_sample, x.window_sample, threshold)

    return run


@_calls(univariate.ks_exact)
def _ks(x: TestInput, alpha: float) -> TestResult:
    # Reported only (not the verdict): the asymptotic p-value is ~10x cheaper on samples of
    # thousands and accurate there.
    method: Literal["auto", "asymp"] = "auto" if x.verdict_test == "ks" else "asymp"
    return univariate.ks_exact(
        x.reference_sample,
        x.window_sample,
        alpha=alpha,
        method=method,
        reference_sorted=x.reference_sorted,
    )


@_calls(univariate.wasserstein_binned)
def _wasserstein(x: TestInput, threshold: float) -> TestResult:
    """On the full fine histograms (every record counts, so it does not carry the noise of two
    2,000-row samples); on the samples for profiles built before fine histograms existed."""
    if x.fine is None:
        return univariate.wasserstein(
            x.reference_sample, x.window_sample, x.reference_std, threshold=threshold
        )
    ref, win, edges = x.fine
    return univariate.wasserstein_binned(ref, win, edges, x.reference_std, threshold)


@_calls(multivariate.mmd)
def _mmd(x: TestInput, alpha: float) -> TestResult:
    return multivariate.mmd(
        x.reference_sample,
        x.window_sample,
        alpha=alpha,
        n_permutations=MMD_PERMUTATIONS,
        max_samples=MMD_MAX_SAMPLES,
        seed=x.seed,
    )


@_calls(multivariate.PCAReconstruction.test)
def _pca_reconstruction(x: TestInput, alpha: float) -> TestResult | None:
    return None if x.pca is None else x.pca.test(x.window_sample, alpha=alpha)


@_calls(multivariate.PCAReconstruction.test)
def _pca_covariance(x: TestInput, alpha: float) -> TestResult | None:
    return None if x.pca is None else x.pca.test(x.window_sample, alpha, method="covariance")


_CONVENTION = "convention (5 %; Evidently's and alibi-detect's default)"

REGISTRY: tuple[StatTest, ...] = (
    StatTest(
        name="ks_binned",
        kind="p_value",
        applies_to=("numeric",),
        run=on_counts(univariate.ks_binned),
        default=0.05,
        source=_CONVENTION,
        rule=(
            "`D = max_j |C_ref[j]/n − C_win[j]/m|` at the bin edges (incl. under/overflow), "
            "`p = kstwo.sf(D, round(nm/(n+m)))`; conservative (CDFs compared at bin edges only)"
        ),
    ),
    StatTest(
        name="ks",
        kind="p_value",
        applies_to=("numeric",),
        run=_ks,
        default=0.05,
        source="convention; Evidently's test for references of at most 1,000 rows",
        rule=(
            "`D = max |F_ref − F_win|` on the samples, p from scipy `ks_2samp` (exact for small "
            "n, asymptotic for large); assumes continuous data (ties make it conservative)"
        ),
    ),
    StatTest(
        name="chi_square",
        kind="p_value",
        applies_to=("categorical",),
        run=on_counts(counts.chi_square),
        default=0.05,
        source=_CONVENTION,
        rule=(
            "`Σ (O−E)²/E`, `E_k = m p_k` (pseudo-count 0.5, rare categories pooled), "
            "`χ²(B−1)` via `scipy.stats.chisquare`; the reference proportions are taken as the "
            "truth (reference ≫ window)"
        ),
    ),
    StatTest(
        name="wasserstein",
        kind="effect",
        applies_to=("numeric",),
        run=_wasserstein,
        default=0.1,
        source="Evidently (10 % of a reference std, and the 0.001 floor)",
        rule=(
            "`∫|F_ref − F_win| / max(reference_std, 0.001)` on the fine histograms (mass uniform "
            "inside a bin); on the samples (`wasserstein`, scipy) for profiles without fine bins"
        ),
    ),
    StatTest(
        name="psi",
        kind="effect",
        applies_to=("numeric", "categorical"),
        run=on_counts(counts.psi),
        default=0.2,
        source="credit scoring, Siddiqi 2006 (0.1-0.2 = moderate)",
        rule="`Σ (q−p) ln(q/p)` on proportions smoothed by ε = 1e-4, same bins or categories",
    ),
    StatTest(
        name="jensen_shannon",
        kind="effect",
        applies_to=("numeric", "categorical"),
        run=on_counts(counts.jensen_shannon),
        default=0.1,
        source=(
            "Evidently's number, but Evidently takes the natural log: driftline's base-2 distance "
            "is Evidently's × 1.20, so Evidently's 0.1 is 0.12 here"
        ),
        rule="`sqrt(½KL(p‖a) + ½KL(q‖a))`, `a = (p+q)/2`, log base 2, in [0, 1]",
    ),
    StatTest(
        name="hellinger",
        kind="effect",
        applies_to=("numeric", "categorical"),
        run=on_counts(counts.hellinger),
        default=0.1,
        source="ours (no literature default; same scale as JS)",
        rule="`sqrt(1 − Σ sqrt(p q))`, in [0, 1]",
    ),
    StatTest(
        name="mmd",
        kind="p_value",
        applies_to=("multivariate",),
        run=_mmd,
        default=0.05,
        source="convention; kernel and bandwidth: Gretton et al. 2012",
        rule=(
            "unbiased MMD², RBF kernel, median-heuristic bandwidth, permutation "
            "`p = (1+#{MMD²_b ≥ MMD²})/(B+1)`; in a window B = 400 and 200 rows a side"
        ),
    ),
    StatTest(
        name="pca_reconstruction",
        kind="p_value",
        applies_to=("multivariate",),
        run=_pca_reconstruction,
        default=0.05,
        source="convention (NannyML-style data reconstruction)",
        rule=(
            "one-sided Welch z on the mean residual `‖z − zV_kV_k'‖²/d`, 90 % of the variance "
            "kept, axes cross-fitted on the reference"
        ),
    ),
    StatTest(
        name="pca_covariance",
        kind="p_value",
        applies_to=("multivariate",),
        run=_pca_covariance,
        default=0.05,
        source="convention; the test is ours (covariance compared in the reference's PCA basis)",
        rule=(
            "`Σ_{j≤l} (ū_jl,win − ū_jl,ref)² / (var_ref/n + var_win/m) ~ χ²(d(d+1)/2)` on "
            "whitened scores `u` (approximate: ignores the correlation between entries)"
        ),
    ),
)

REGISTRY_BY_NAME: dict[str, StatTest] = {t.name: t for t in REGISTRY}


def applicable(scope: Scope) -> tuple[StatTest, ...]:
    """The registered tests that apply to ``scope``, in registry order."""
    return tuple(t for t in REGISTRY if scope in t.applies_to)


def names(*, kind: Kind | None = None, scopes: tuple[Scope, ...] = ()) -> tuple[str, ...]:
    """Names of the tests of ``kind`` (any if None) applying to any of ``scopes`` (any if ())."""
    return tuple(
        t.name
        for t in REGISTRY
        if (kind is None or t.kind == kind)
        and (not scopes or any(s in t.applies_to for s in scopes))
    )


TABLE_BEGIN = (
    "<!-- statistical tests: generated from driftline/detectors/stats/registry.py by "
    "`driftline config tests --write docs/DRIFT_DETECTION.md`; do not edit -->"
)
TABLE_END = "<!-- end of the generated table -->"


def render_table() -> str:
    """The Markdown table of the registered tests (between the markers of the docs)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    kinds = {"p_value": "p-value (α)", "effect": "effect size"}
    lines = [
        TABLE_BEGIN,
        "",
        "| key | function | kind | applies to | rule | default | source of the default |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in REGISTRY:
        lines.append(
            f"| `{t.name}` | `{t.function}` | {kinds[t.kind]} | {', '.join(t.applies_to)} "
            f"| {cell(t.rule)} | {t.default:g} | {cell(t.source)} |"
        )
    return "\n".join([*lines, "", TABLE_END])


def replace_table(markdown: str) -> str:
    """``markdown`` with its generated table (between the markers) rendered afresh."""
    begin, end = markdown.find(TABLE_BEGIN), markdown.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ValueError("the document has no generated table markers")
    return markdown[:begin] + render_table() + markdown[end + len(TABLE_END) :]
