"""Unit tests of driftline.detectors.multiple_testing against hand-computed values."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import stats as st

from driftline.detectors import multiple_testing
from driftline.detectors.multiple_testing import _bh_manual, adjust_p_values

# Worked example (values as R's p.adjust / statsmodels multipletests give them).
P = [0.01, 0.02, 0.03, 0.04, 0.05]


def test_doctests() -> None:
    result = doctest.testmod(multiple_testing)
    assert result.attempted > 0 and result.failed == 0


def test_bonferroni_by_hand() -> None:
    np.testing.assert_allclose(adjust_p_values(P, "bonferroni"), [0.05, 0.1, 0.15, 0.2, 0.25])
    np.testing.assert_allclose(adjust_p_values([0.3, 0.5], "bonferroni"), [0.6, 1.0])


def test_holm_by_hand() -> None:
    # 5*.01, 4*.02, 3*.03, 2*.04, 1*.05 = .05 .08 .09 .08 .05 -> running max
    np.testing.assert_allclose(adjust_p_values(P, "holm"), [0.05, 0.08, 0.09, 0.09, 0.09])
    # unsorted input keeps its order
    np.testing.assert_allclose(
        adjust_p_values([0.04, 0.01, 0.05, 0.03, 0.02], "holm"),
        [0.09, 0.05, 0.09, 0.09, 0.08],
    )


def test_bh_by_hand() -> None:
    # k p_(i) / i = .05 for all five -> .05
    np.testing.assert_allclose(adjust_p_values(P, "bh"), [0.05] * 5)
    np.testing.assert_allclose(
        adjust_p_values([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205], "bh"),
        [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.08457142857142857, 0.205],
    )


@pytest.mark.parametrize("seed", range(10))
def test_bh_scipy_and_manual_agree(seed: int) -> None:
    p = np.random.default_rng(seed).uniform(size=25) ** 3
    np.testing.assert_allclose(adjust_p_values(p, "bh"), _bh_manual(p), rtol=1e-12)
    if hasattr(st, "false_discovery_control"):
        np.testing.assert_allclose(
            adjust_p_values(p, "bh"), st.false_discovery_control(p), rtol=1e-12
        )


@pytest.mark.parametrize("method", ["holm", "bh", "bonferroni"])
@pytest.mark.parametrize("seed", range(5))
def test_properties(method: str, seed: int) -> None:
    p = np.random.default_rng(seed).uniform(size=40) ** 2
    adj = adjust_p_values(p, method)  # type: ignore[arg-type]
    assert adj.shape == p.shape
    assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the raw p-values


def test_edges() -> None:
    assert adjust_p_values([], "holm").shape == (0,)
    assert adjust_p_values([0.2]).tolist() == [0.2]
    out = adjust_p_values([float("nan"), 0.01, 1.5, -0.1], "holm")
    assert not np.isnan(out).any()
    assert out[0] == 1.0 and out[2] == 1.0 and out[3] == 0.0
    with pytest.raises(ValueError, match="holm, bh, bonferroni"):
        adjust_p_values([0.1], "fdr")  # type: ignore[arg-type]
