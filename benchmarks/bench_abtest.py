"""Offline simulation of the A/B evaluator's sequential test (driftline.detectors.abtest.decide).

Each run streams labelled records into two arms (challenger share = the configured traffic
share), looks at the test every `--look-every` labels (continuous monitoring) until the
horizon, and stops at the first promote/rollback. Reported, over `--runs` runs per scenario:

- equal arms (both accuracies 0.90): false promotion rate (must be <= alpha = 5%) and false
  rollback rate;
- challenger +3 points (0.93 vs 0.90, the MDE): power (share promoted) and the labels needed;
- challenger -3 points: share rolled back;
- the same equal-arm streams judged by a fixed-horizon two-proportion z-test checked at every
  look ("peeking"): the false promotion rate the mSPRT avoids (same-run baseline).

    .cache/venv/bin/python benchmarks/bench_abtest.py            # 1,000 runs per scenario
    .cache/venv/bin/python benchmarks/bench_abtest.py --runs 200 # quicker
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from driftline.detectors.abtest import ABSettings, ArmStats, decide

Z_975 = 1.959963984540054


def run_scenario(
    rng: np.random.Generator,
    runs: int,
    p_champion: float,
    p_challenger: float,
    share: float,
    horizon: int,
    look_every: int,
    settings: ABSettings,
) -> dict[str, float]:
    looks = horizon // look_every
    promoted = rolled_back = peeking_promoted = 0
    labels_to_decision: list[int] = []
    for _ in range(runs):
        n_b = rng.binomial(look_every, share, size=looks)
        n_a = look_every - n_b
        x_a = np.cumsum(rng.binomial(n_a, p_champion))
        x_b = np.cumsum(rng.binomial(n_b, p_challenger))
        c_a, c_b = np.cumsum(n_a), np.cumsum(n_b)
        p_value = 1.0
        outcome = "continue"
        peeked = False
        for k in range(looks):
            a = ArmStats(n=int(c_a[k]), errors=0, labelled=int(c_a[k]), correct=int(x_a[k]))
            b = ArmStats(n=int(c_b[k]), errors=0, labelled=int(c_b[k]), correct=int(x_b[k]))
            if not peeked and min(a.labelled, b.labelled) >= settings.min_samples_per_arm:
                pooled = (a.correct + b.correct) / (a.labelled + b.labelled)
                se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / a.n + 1 / b.n))
                if (b.correct / b.n - a.correct / a.n) / se > Z_975:
                    peeked = True
            if outcome == "continue":
                decision = decide(a, b, 0.0, settings, previous_p_value=p_value)
                p_value = decision.p_value
                if decision.outcome != "continue":
                    outcome = decision.outcome
                    labels_to_decision.append((k + 1) * look_every)
            if outcome != "continue" and peeked:
                break
        promoted += outcome == "promote"
        rolled_back += outcome == "rollback"
        peeking_promoted += peeked
    return {
        "promoted": promoted / runs,
        "rolled_back": rolled_back / runs,
        "peeking_z_promoted": peeking_promoted / runs,
        "median_labels_to_decision": float(np.median(labels_to_decision))
        if labels_to_decision
        else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.2, help="challenger traffic share")
    parser.add_argument("--accuracy", type=float, default=0.90, help="champion accuracy")
    parser.add_argument("--gain", type=float, default=0.03, help="challenger gain for power")
    parser.add_argument(
        "--horizon", type=int, default=20_000, help="labelled records (both arms) at time limit"
    )
    parser.add_argument("--look-every", type=int, default=50, help="labels between looks")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    settings = ABSettings()
    rng = np.random.default_rng(args.seed)
    print(
        f"mSPRT alpha={settings.alpha} mde={settings.mde} min/arm={settings.min_samples_per_arm};"
        f" share={args.share}, horizon={args.horizon} labels, a look every {args.look_every}"
        f" labels, {args.runs} runs per scenario"
    )
    for name, p_b in (
        ("equal arms", args.accuracy),
        (f"challenger +{args.gain:g}", args.accuracy + args.gain),
        (f"challenger -{args.gain:g}", args.accuracy - args.gain),
    ):
        started = time.perf_counter()
        result = run_scenario(
            rng,
            args.runs,
            args.accuracy,
            p_b,
            args.share,
            args.horizon,
            args.look_every,
            settings,
        )
        elapsed = time.perf_counter() - started
        print(
            f"{name:16} promoted {result['promoted']:.3f}  rolled back {result['rolled_back']:.3f}"
            f"  median labels to decision {result['median_labels_to_decision']:.0f}"
            f"  | peeking z-test promoted {result['peeking_z_promoted']:.3f}  ({elapsed:.1f} s)"
        )


if __name__ == "__main__":
    main()
