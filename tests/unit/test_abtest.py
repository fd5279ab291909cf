"""The A/B test's pure decisions: the mSPRT, guardrails, and the decision order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftline.detectors.abtest import (
    ABSettings,
    ArmStats,
    decide,
    guardrail_breach,
    msprt_proportions,
)


def test_likelihood_ratio_matches_the_closed_form_of_johari_et_al() -> None:
    # Equal arms of n: V = 2 sigma^2 / n, so Lambda = sqrt(2s2/(2s2 + n tau2))
    # * exp(n^2 tau2 d^2 / (4 s2 (2 s2 + n tau2))) (Johari et al. 2017, eq. for two streams).
    n, tau = 1000, 0.03
    result = msprt_proportions(880, n, 910, n, mde=tau)
    pooled = (880 + 910) / (2 * n)
    s2 = pooled * (1 - pooled)
    d = 0.03
    expected = math.sqrt(2 * s2 / (2 * s2 + n * tau**2)) * math.exp(
        n**2 * tau**2 * d**2 / (4 * s2 * (2 * s2 + n * tau**2))
    )
    assert result.likelihood_ratio == pytest.approx(expected, rel=1e-9)
    assert result.p_value == pytest.approx(min(1.0, 1 / expected))


def test_p_value_is_a_running_minimum_and_ci_covers_the_difference() -> None:
    first = msprt_proportions(9000, 10000, 2900, 3000)
    assert first.p_value < 1e-6
    assert first.ci_low < first.difference < first.ci_high
    assert first.ci_low > 0  # significant: the confidence sequence excludes 0
    later = msprt_proportions(9000, 10000, 2700, 3000, previous_p_value=first.p_value)
    assert later.p_value == first.p_value


def test_all_agree_does_not_divide_by_zero() -> None:
    result = msprt_proportions(500, 500, 200, 200)
    assert math.isfinite(result.likelihood_ratio) and result.p_value == 1.0


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="correct counts"):
        msprt_proportions(11, 10, 0, 5)
    with pytest.raises(ValueError, match="mde"):
        msprt_proportions(1, 10, 0, 5, mde=0)


def test_guardrail_breach_is_immediate_even_when_more_accurate() -> None:
    champion = ArmStats(n=10_000, errors=10, labelled=10_000, correct=9_000, latency_p99=0.04)
    challenger = ArmStats(n=500, errors=60, labelled=400, correct=400, latency_p99=0.04)
    decision = decide(champion, challenger, elapsed_seconds=1)
    assert decision.outcome == "rollback"
    assert decision.reason.startswith("guardrail: error rate")
    assert decision.evidence["guardrail"]


def test_latency_guardrail_uses_the_ratio_of_p99() -> None:
    champion = ArmStats(n=1000, errors=0, labelled=0, correct=0, latency_p99=0.1)
    settings = ABSettings(max_latency_p99_ratio=2.0)
    ok = ArmStats(n=1000, errors=0, labelled=0, correct=0, latency_p99=0.19)
    slow = ArmStats(n=1000, errors=0, labelled=0, correct=0, latency_p99=0.21)
    assert guardrail_breach(champion, ok, settings) is None
    assert "latency p99" in (guardrail_breach(champion, slow, settings) or "")


def test_no_accuracy_decision_before_min_samples_per_arm() -> None:
    champion = ArmStats(n=5000, errors=0, labelled=5000, correct=2500)
    challenger = ArmStats(n=150, errors=0, labelled=150, correct=150)
    decision = decide(champion, challenger, 1.0, ABSettings(min_samples_per_arm=200))
    assert decision.outcome == "continue"
    assert "waiting for 200" in decision.reason


def test_evidence_is_json_serialisable() -> None:
    import orjson

    decision = decide(
        ArmStats(0, 0, 0, 0), ArmStats(0, 0, 0, 0), 0.0, ABSettings(max_duration_seconds=0)
    )
    assert decision.outcome == "inconclusive"
    orjson.dumps(decision.evidence)


def test_false_promotion_rate_under_continuous_monitoring_is_at_most_alpha() -> None:
    """200 runs of equal arms looked at every 50 labels up to 10,000 (a small version of
    benchmarks/bench_abtest.py): promotions + rollbacks stay near or below alpha."""
    rng = np.random.default_rng(7)
    settings = ABSettings()
    wrong = 0
    runs = 200
    for _ in range(runs):
        n_b = rng.binomial(50, 0.2, size=200)
        x_a = np.cumsum(rng.binomial(50 - n_b, 0.9))
        x_b = np.cumsum(rng.binomial(n_b, 0.9))
        c_a, c_b = np.cumsum(50 - n_b), np.cumsum(n_b)
        p = 1.0
        for k in range(200):
            d = decide(
                ArmStats(int(c_a[k]), 0, int(c_a[k]), int(x_a[k])),
                ArmStats(int(c_b[k]), 0, int(c_b[k]), int(x_b[k])),
                0.0,
                settings,
                p,
            )
            p = d.p_value
            if d.outcome != "continue":
                wrong += 1
                break
    # alpha = 0.05; with 200 runs the binomial 99% upper bound of 5% is about 10%.
    assert wrong / runs <= 0.10


def test_a_look_before_min_samples_does_not_count_and_cannot_flip_the_direction() -> None:
    """The reviewer's repro (/tmp/review/flip.py): at 150 labels per arm the challenger is 20
    points worse (p tiny, but below min_samples_per_arm); at 1000 per arm it is 1 point better
    and not significant. The early p must not be carried to the later look, and nothing may
    be promoted on it."""
    settings = ABSettings()
    early = decide(ArmStats(150, 0, 150, 140), ArmStats(150, 0, 150, 110), 60, settings, 1.0)
    assert early.outcome == "continue"
    assert early.p_value == 1.0  # not recorded: too few samples per arm
    later = decide(
        ArmStats(1000, 0, 1000, 900), ArmStats(1000, 0, 1000, 910), 3600, settings, early.p_value
    )
    fresh = msprt_proportions(900, 1000, 910, 1000).p_value
    assert later.outcome == "continue"
    assert later.p_value == pytest.approx(fresh)


def test_a_stale_significant_p_never_decides_against_the_current_evidence() -> None:
    """A running p below alpha stored by an earlier version (or any earlier look) without a
    decision: the direction is only ever taken from a look whose confidence sequence excludes
    0, so a challenger that is now better is not rolled back on it, nor promoted on it."""
    settings = ABSettings()
    champion, challenger = ArmStats(1000, 0, 1000, 900), ArmStats(1000, 0, 1000, 910)
    decision = decide(champion, challenger, 3600, settings, previous_p_value=1e-6)
    assert decision.outcome == "continue"
    worse = decide(champion, ArmStats(1000, 0, 1000, 800), 3600, settings, previous_p_value=1e-6)
    assert worse.outcome == "rollback" and worse.evidence["ci_high"] < 0
    better = decide(champion, ArmStats(1000, 0, 1000, 960), 3600, settings, 1e-6)
    assert better.outcome == "promote" and better.evidence["ci_low"] > 0
