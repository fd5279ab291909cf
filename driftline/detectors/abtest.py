"""A/B test of a challenger model against the champion: pure decisions, no I/O.

Three pure functions decide what an A/B test does next; the imperative shell
(`RetrainService.evaluate_tests` in `driftline/retrain/service.py`) feeds them counts read
from PostgreSQL.

* :func:`msprt_proportions` -- the **mixture sequential probability ratio test** (mSPRT) for a
  difference of two proportions (accuracy of challenger minus accuracy of champion). Its
  p-value is *always valid*: it may be recomputed after every new label and acted upon the
  first time it falls below ``alpha`` without inflating the false-positive rate (Robbins 1970;
  Johari, Koomen, Pekelis & Walsh, "Peeking at A/B tests", KDD 2017; Johari, Pekelis & Walsh,
  "Always valid inference", Operations Research 2022). A fixed-horizon z-test checked
  repeatedly does not have this property (``benchmarks/bench_abtest.py`` measures both).
* :func:`guardrail_breach` -- error rate and latency p99 of the challenger against the
  champion's: a breach rolls back at once, whatever the accuracy says.
* :func:`decide` -- promote, rollback, inconclusive or continue, from the two above and the
  time limit.

The rule. With ``theta = p_B - p_A`` estimated by ``d = x_B/n_B - x_A/n_A`` and its variance
``V = p(1-p) (1/n_A + 1/n_B)`` (``p`` the pooled proportion, the variance under H0:
``theta = 0``), the mixture likelihood ratio with mixing distribution ``theta ~ N(0, tau^2)``
is (normal approximation of the two binomials)::

    Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

and the always-valid p-value is ``p_n = min(1, min_{k <= n} 1 / Lambda_k)``. By Ville's
inequality ``P_H0(exists n: Lambda_n >= 1/alpha) <= alpha``, so rejecting the first time
``p_n <= alpha`` keeps the type-I error at ``alpha`` under continuous monitoring. At that look
the confidence sequence below excludes 0, and its side of 0 says which arm is better (promote
or rollback). Looks before ``min_samples_per_arm`` are not part of the running minimum. The always-valid confidence
sequence is ``d +/- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log(alpha)))``.

Defaults and why. ``alpha = 0.05``. The **minimum detectable effect** is stated up front:
``mde = 0.03`` (3 accuracy points); the mixing standard deviation is ``tau = mde``, which makes
the test most sensitive around that effect (Johari et al. recommend matching ``tau`` to the
effects one expects to see). ``min_samples_per_arm = 200`` labelled records before any
decision, so the normal approximation and the plug-in variance are reasonable.

>>> test = msprt_proportions(900, 1000, 280, 300, mde=0.03)
>>> round(test.difference, 4), test.p_value < 0.05
(0.0333, False)
>>> msprt_proportions(9000, 10000, 2850, 3000, mde=0.03).p_value < 0.05
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "ABSettings",
    "ArmStats",
    "Decision",
    "MSPRTResult",
    "decide",
    "guardrail_breach",
    "msprt_proportions",
]

Outcome = Literal["promote", "rollback", "inconclusive", "continue"]


@dataclass(frozen=True)
class MSPRTResult:
    """One look of the mSPRT. ``p_value`` is the running minimum when ``previous_p_value`` was
    given (the always-valid p-value), else ``min(1, 1/likelihood_ratio)`` of this look."""

    difference: float  # challenger minus champion accuracy
    variance: float
    likelihood_ratio: float
    p_value: float
    ci_low: float
    ci_high: float
    n_champion: int
    n_challenger: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def msprt_proportions(
    correct_champion: int,
    n_champion: int,
    correct_challenger: int,
    n_challenger: int,
    *,
    mde: float = 0.03,
    alpha: float = 0.05,
    previous_p_value: float = 1.0,
) -> MSPRTResult:
    """The mSPRT of ``accuracy(challenger) - accuracy(champion)`` (see the module docstring).

    ``mde`` sets the mixing standard deviation ``tau``; ``previous_p_value`` is the p-value of
    the previous look (``1.0`` at the first), so the returned ``p_value`` never increases.

    >>> r = msprt_proportions(0, 0, 0, 0)
    >>> r.p_value, r.likelihood_ratio
    (1.0, 1.0)
    >>> msprt_proportions(90, 100, 90, 100, previous_p_value=0.2).p_value
    0.2
    """
    if n_champion < 0 or n_challenger < 0 or mde <= 0 or not 0 < alpha < 1:
        raise ValueError("counts must be >= 0, mde > 0 and 0 < alpha < 1")
    if not (0 <= correct_champion <= n_champion and 0 <= correct_challenger <= n_challenger):
        raise ValueError("correct counts must be between 0 and the number of records")
    if n_champion == 0 or n_challenger == 0:
        return MSPRTResult(
            0.0, math.inf, 1.0, min(1.0, previous_p_value), -1.0, 1.0, n_champion, n_challenger
        )
    p_a = correct_champion / n_champion
    p_b = correct_challenger / n_challenger
    difference = p_b - p_a
    pooled = (correct_champion + correct_challenger) / (n_champion + n_challenger)
    # A floor keeps the variance positive when every record agrees (p = 0 or 1): half a
    # success added to the pooled count (a continuity correction).
    floor = 0.5 / (n_champion + n_challenger)
    pooled = min(max(pooled, floor), 1 - floor)
    variance = pooled * (1 - pooled) * (1 / n_champion + 1 / n_challenger)
    tau2 = mde * mde
    log_lr = 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference**2 / (
        2 * variance * (variance + tau2)
    )
    likelihood_ratio = math.exp(min(log_lr, 700.0))
    p_value = min(1.0, previous_p_value, 1.0 / likelihood_ratio)
    half_width = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (math.log((variance + tau2) / variance) - 2 * math.log(alpha))
    )
    return MSPRTResult(
        difference,
        variance,
        likelihood_ratio,
        p_value,
        difference - half_width,
        difference + half_width,
        n_champion,
        n_challenger,
    )


@dataclass(frozen=True)
class ArmStats:
    """What the evaluator knows about one arm since the test started.

    ``n`` predictions served, ``errors`` of them failed, ``labelled`` have a label, of which
    ``correct`` were right; ``latency_p99`` in seconds (None if no latency was reported)."""

    n: int
    errors: int
    labelled: int
    correct: int
    latency_p99: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True)
class ABSettings:
    """The A/B test's settings (from ``retraining.ab_*`` in the config).

    alpha: type-I error of the sequential test (false promotion or false rollback), 0.05.
    mde: minimum detectable effect in accuracy points, 0.03; the mixing sd ``tau``.
    min_samples_per_arm: labelled records each arm needs before an accuracy decision, 200.
    max_duration_seconds: time limit; then the test ends ``inconclusive`` (champion stays).
    max_error_rate_increase: guardrail, absolute: challenger error rate above the champion's
        plus this rolls back, 0.02.
    max_latency_p99_ratio: guardrail: challenger p99 above this multiple of the champion's
        rolls back, 1.5.
    min_guardrail_samples: predictions the challenger needs before a guardrail can fire, 100.
    """

    alpha: float = 0.05
    mde: float = 0.03
    min_samples_per_arm: int = 200
    max_duration_seconds: float = 86_400.0
    max_error_rate_increase: float = 0.02
    max_latency_p99_ratio: float = 1.5
    min_guardrail_samples: int = 100


def guardrail_breach(
    champion: ArmStats, challenger: ArmStats, settings: ABSettings = ABSettings()
) -> str | None:
    """The guardrail the challenger breaches, as a sentence, or None.

    Rule: once the challenger has served ``min_guardrail_samples`` predictions, it breaches
    when its error rate exceeds the champion's by more than ``max_error_rate_increase``
    (absolute), or when its latency p99 exceeds ``max_latency_p99_ratio`` times the
    champion's. Guardrails are operational limits, not hypothesis tests: a breach rolls back
    at once.

    >>> a = ArmStats(n=1000, errors=5, labelled=0, correct=0, latency_p99=0.05)
    >>> guardrail_breach(a, ArmStats(n=200, errors=20, labelled=0, correct=0, latency_p99=0.05))
    'error rate 0.1000 > champion 0.0050 + 0.02'
    >>> guardrail_breach(a, ArmStats(n=200, errors=0, labelled=0, correct=0, latency_p99=0.2))
    'latency p99 0.2000 s > 1.5 x champion 0.0500 s'
    >>> guardrail_breach(a, ArmStats(n=50, errors=50, labelled=0, correct=0)) is None
    True
    """
    if challenger.n < settings.min_guardrail_samples:
        return None
    if challenger.error_rate > champion.error_rate + settings.max_error_rate_increase:
        return (
            f"error rate {challenger.error_rate:.4f} > champion {champion.error_rate:.4f}"
            f" + {settings.max_error_rate_increase:g}"
        )
    if (
        challenger.latency_p99 is not None
        and champion.latency_p99 is not None
        and champion.latency_p99 > 0
        and challenger.latency_p99 > settings.max_latency_p99_ratio * champion.latency_p99
    ):
        return (
            f"latency p99 {challenger.latency_p99:.4f} s > {settings.max_latency_p99_ratio:g}"
            f" x champion {champion.latency_p99:.4f} s"
        )
    return None


@dataclass(frozen=True)
class Decision:
    """What to do now, why, and the evidence (JSON-serialisable)."""

    outcome: Outcome
    reason: str
    evidence: dict[str, Any]
    p_value: float


def decide(
    champion: ArmStats,
    challenger: ArmStats,
    elapsed_seconds: float,
    settings: ABSettings = ABSettings(),
    previous_p_value: float = 1.0,
) -> Decision:
    """The next step of an A/B test.

    In order: a guardrail breach -> ``rollback``; else, once both arms have
    ``min_samples_per_arm`` labelled records, an always-valid p-value at or below ``alpha``
    -> ``promote`` if the confidence sequence lies above 0, ``rollback`` if below; else, past
    ``max_duration_seconds`` -> ``inconclusive`` (keep the champion); else ``continue``.
    Keep the returned ``p_value`` and pass it back as ``previous_p_value`` at the next look;
    looks before ``min_samples_per_arm`` return ``previous_p_value`` unchanged.

    >>> champ = ArmStats(n=10_000, errors=0, labelled=10_000, correct=9_000)
    >>> decide(champ, ArmStats(n=3_000, errors=0, labelled=3_000, correct=2_850), 60).outcome
    'promote'
    >>> decide(champ, ArmStats(n=3_000, errors=0, labelled=3_000, correct=2_550), 60).outcome
    'rollback'
    >>> decide(champ, ArmStats(n=3_000, errors=0, labelled=3_000, correct=2_700), 60).outcome
    'continue'
    >>> decide(champ, ArmStats(n=3_000, errors=0, labelled=3_000, correct=2_700), 1e9).outcome
    'inconclusive'
    """
    enough = min(champion.labelled, challenger.labelled) >= settings.min_samples_per_arm
    # This look's test on its own (previous p 1.0): its confidence interval says on which side
    # of 0 the difference lies, so the direction never comes from a stale look.
    test = msprt_proportions(
        champion.correct,
        champion.labelled,
        challenger.correct,
        challenger.labelled,
        mde=settings.mde,
        alpha=settings.alpha,
    )
    # Looks before min_samples_per_arm are not recorded: their normal approximation is poor
    # and a small early sample must not leave a p-value a later look would act upon.
    p_value = min(previous_p_value, test.p_value) if enough else previous_p_value
    evidence: dict[str, Any] = {
        "champion": {**asdict(champion), "accuracy": champion.accuracy},
        "challenger": {**asdict(challenger), "accuracy": challenger.accuracy},
        "test": "msprt",
        "mde": settings.mde,
        "alpha": settings.alpha,
        "elapsed_seconds": elapsed_seconds,
        **{k: _finite(v) for k, v in test.to_dict().items()},
        "p_value": p_value,
        "p_value_this_look": test.p_value,
    }
    breach = guardrail_breach(champion, challenger, settings)
    if breach is not None:
        evidence["guardrail"] = breach
        return Decision("rollback", f"guardrail: {breach}", evidence, p_value)
    # Decide at the look where the always-valid test crosses alpha: there the confidence
    # sequence excludes 0 (the mSPRT p-value and interval are dual), and its side of 0 is the
    # direction. A running p below alpha from an earlier look alone (which would have decided
    # then) is not acted upon in a direction the current interval does not support.
    if enough and test.p_value <= settings.alpha and (test.ci_low > 0 or test.ci_high < 0):
        better = test.ci_low > 0
        outcome: Outcome = "promote" if better else "rollback"
        reason = (
            f"challenger {'more' if better else 'less'} accurate by {abs(test.difference):.4f}"
            f" (always-valid p={test.p_value:.3g} <= {settings.alpha:g}; confidence sequence"
            f" [{test.ci_low:.4f}, {test.ci_high:.4f}])"
        )
        return Decision(outcome, reason, evidence, p_value)
    if elapsed_seconds >= settings.max_duration_seconds:
        return Decision(
            "inconclusive",
            f"time limit {settings.max_duration_seconds:g} s reached without a significant"
            f" difference (p={p_value:.3g})",
            evidence,
            p_value,
        )
    waiting = "" if enough else f", waiting for {settings.min_samples_per_arm} labels per arm"
    return Decision("continue", f"p={test.p_value:.3g}{waiting}", evidence, p_value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
