"""Time each statistical test of driftline.detectors.stats at typical sizes.

Sizes: reference sample 2,000 rows, window reservoir 2,000 rows, 20 quantile bins +
under/overflow (22 counts), 13 features; MMD and PCA at their defaults. Each time is
also given as a ratio to a same-run baseline (``np.sort`` of one 2,000-value column),
so results from a loaded or faster machine stay comparable.

Run: .cache/venv/bin/python benchmarks/bench_stats_speed.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from driftline.detectors.multiple_testing import adjust_p_values
from driftline.detectors.stats import (
    PCAReconstruction,
    chi_square,
    hellinger,
    jensen_shannon,
    ks_binned,
    ks_exact,
    mmd,
    psi,
    wasserstein,
)

N_REF, N_WIN, N_FEATURES, N_BINS = 2_000, 2_000, 13, 20


def best_of(fn: Callable[[], object], repeat: int = 5, number: int = 0) -> float:
    """Best mean time per call (seconds) over ``repeat`` rounds of ``number`` calls."""
    if number == 0:  # calibrate to ~50 ms per round
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        number = max(1, int(0.05 / once))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(N_REF, N_FEATURES))
    win = rng.normal(0.1, 1.0, size=(N_WIN, N_FEATURES))
    col_r, col_w = ref[:, 0], win[:, 0]
    edges = np.concatenate([[-np.inf], np.quantile(col_r, np.linspace(0, 1, N_BINS + 1)), [np.inf]])
    c_r, _ = np.histogram(col_r, edges)
    c_w, _ = np.histogram(col_w, edges)
    cats = [f"c{i}" for i in range(N_BINS)]
    m_r = dict(zip(cats, c_r.tolist(), strict=False))
    m_w = dict(zip(cats, c_w.tolist(), strict=False))
    std = float(col_r.std())
    model = PCAReconstruction.fit(ref)
    p13 = rng.uniform(size=N_FEATURES)

    baseline = best_of(lambda: np.sort(col_r))
    cases: list[tuple[str, Callable[[], object]]] = [
        ("ks_exact (2000 vs 2000)", lambda: ks_exact(col_r, col_w)),
        ("ks_binned (22 bins)", lambda: ks_binned(c_r, c_w)),
        ("psi (22 bins)", lambda: psi(c_r, c_w)),
        ("chi_square (20 categories)", lambda: chi_square(m_r, m_w)),
        ("jensen_shannon (22 bins)", lambda: jensen_shannon(c_r, c_w)),
        ("hellinger (22 bins)", lambda: hellinger(c_r, c_w)),
        ("wasserstein (2000 vs 2000)", lambda: wasserstein(col_r, col_w, std)),
        ("mmd (13 features, defaults)", lambda: mmd(ref, win)),
        ("PCAReconstruction.fit (2000x13)", lambda: PCAReconstruction.fit(ref)),
        ("PCA test reconstruction (2000x13)", lambda: model.test(win)),
        ("PCA test covariance (2000x13)", lambda: model.test(win, method="covariance")),
        ("adjust_p_values holm (13)", lambda: adjust_p_values(p13, "holm")),
        ("adjust_p_values bh (13)", lambda: adjust_p_values(p13, "bh")),
    ]
    print(f"baseline np.sort(2000 floats): {baseline * 1e6:9.1f} us")
    print(f"{'test':38s} {'time':>12s} {'x baseline':>11s}")
    for name, fn in cases:
        t = best_of(fn, repeat=5 if "mmd" not in name else 7)
        print(f"{name:38s} {t * 1e3:9.3f} ms {t / baseline:11.1f}")
    per_window = sum(
        best_of(fn)
        for fn in (
            lambda: ks_binned(c_r, c_w),
            lambda: psi(c_r, c_w),
            lambda: jensen_shannon(c_r, c_w),
            lambda: wasserstein(col_r, col_w, std),
        )
    )
    print(
        f"univariate set (ks_binned+psi+js+wasserstein) x 13 features: "
        f"{per_window * N_FEATURES * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
