"""Feature-importance drift: false alarms on a stationary stream, delay after a swap of roles.

Run from the repository root::

    .cache/venv/bin/python benchmarks/bench_importance.py            # 10 seeds (about a minute)
    .cache/venv/bin/python benchmarks/bench_importance.py --quick    # 3 seeds

Stream: 8 standard-normal features (same marginals throughout) and a binary label drawn from a
logistic model, weights (1.5, 1.0, 0.6, 0.4, 0.2, 0, 0, 0) on x0..x7, intercept -2 (about 20 %
positives). **Swap**: from the first record of window ``SWAP_WINDOW`` on, x0 and x1 exchange
their roles (weights 1.0, 1.5, ...): the same features, a different relation to the label.
Windows of ``--window`` records (default 2,000: a window sketch's reservoir size).

Two paths, as the worker takes them (:func:`driftline.detectors.importance.window_importance`
and :func:`~driftline.detectors.importance.importance_drift` with the default thresholds):

* **attributions**: predictions carry exact SHAP values of the served model's logit
  (coefficient x (value - reference mean), a linear model of independent features). A frozen
  model's attributions cannot see the swap (they depend on the model and the inputs only), so
  the served model changes with the data, in two ways:

  - ``attributions_replaced``: the reference model (a logistic regression on the 20,000
    reference records) serves until the swap, then a model retrained on 20,000 records of the
    new relation is pushed under the same version; on the stationary stream the reference
    model serves throughout (frozen);
  - ``attributions_online``: a logistic regression refitted every ``--refit`` (500) records on
    the last ``--train`` (6,000) labelled ones (labels without delay), on both streams: its
    coefficients move a little with every refit, and after the swap it learns the new roles
    within a few thousand records; the delay is the model's, not the detector's.

  Each window goes through ``WindowSketch.update`` and ``window_importance``, as in the
  worker.
* **proxy** (no attributions): mutual information of each feature with the **label** on the
  window's records (``label_mi``, a frozen model), compared with the reference's on as many
  rows; and, reported beside it, with the online model's **prediction** (``prediction_mi``).
  The reference's MI importances come from ``ReferenceProfile`` (10,000-row sample).

Reported per path: share of stationary windows with importance drift (false alarms over
``--windows`` windows per seed), and after the swap the window of the first detection
(1 = the first window after the swap) per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from driftline.detectors.batch import RecordBatch
from driftline.detectors.importance import (
    ImportanceThresholds,
    importance_drift,
    proxy_importance,
    window_importance,
)
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.sketch import WindowSketch

FEATURES = [f"x{i}" for i in range(8)]
WEIGHTS = np.array([1.5, 1.0, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0])
SWAPPED = WEIGHTS[[1, 0, 2, 3, 4, 5, 6, 7]]
INTERCEPT = -2.0
SWAP_WINDOW = 5  # windows 0..4 before the swap (the online model settles), then swapped
PATHS = ("attributions_replaced", "attributions_online", "label_mi", "prediction_mi")


def labels(rng: np.random.Generator, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    p = 1.0 / (1.0 + np.exp(-(x @ weights + INTERCEPT)))
    return (rng.random(len(x)) < p).astype(int)


class OnlineModel:
    """Logistic regression refitted every `refit` records on the last `train` labelled ones."""

    def __init__(self, x: np.ndarray, y: np.ndarray, refit: int, train: int) -> None:
        self.refit, self.train = refit, train
        self.x, self.y = x[-train:], y[-train:]
        self.since = 0
        self._fit()

    def _fit(self) -> None:
        self.model = LogisticRegression(C=10.0).fit(self.x, self.y)

    def predict_and_learn(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attributions, predictions) of a block, each record scored by the model of its time."""
        shap, pred = np.empty_like(x), np.empty(len(x), dtype=int)
        for start in range(0, len(x), self.refit):
            block = slice(start, start + self.refit)
            coef = self.model.coef_[0]
            shap[block] = x[block] * coef  # reference means are 0
            pred[block] = (x[block] @ coef + self.model.intercept_[0] > 0).astype(int)
            self.x = np.concatenate([self.x, x[block]])[-self.train :]
            self.y = np.concatenate([self.y, y[block]])[-self.train :]
            self._fit()
        return shap, pred


def run_seed(
    seed: int, n_windows: int, window: int, refit: int, train: int, swap_window: int
) -> dict[str, Any]:
    """Flags per path over `n_windows` windows, the swap from window `swap_window` on
    (never when it is `n_windows`)."""
    rng = np.random.default_rng(seed)
    thresholds = ImportanceThresholds()
    n_ref = 20_000
    x_ref = rng.standard_normal((n_ref, len(FEATURES)))
    y_ref = labels(rng, x_ref, WEIGHTS)
    reference_model = LogisticRegression(C=10.0).fit(x_ref, y_ref)
    coef = reference_model.coef_[0]
    profile = ReferenceProfile.from_columns(
        {f: x_ref[:, j] for j, f in enumerate(FEATURES)},
        model="bench",
        model_version="1",
        prediction=(x_ref @ coef + reference_model.intercept_[0] > 0).astype(int),
        labels=y_ref,
        attributions={f: x_ref[:, j] * coef[j] for j, f in enumerate(FEATURES)},
        fit_pca=False,
    )
    model = OnlineModel(x_ref, y_ref, refit, train)
    served = coef
    flags: dict[str, list[bool]] = {s: [] for s in PATHS}
    for w in range(n_windows):
        weights = SWAPPED if w >= swap_window else WEIGHTS
        if w == swap_window:  # a model retrained on the new relation is pushed
            x_new = rng.standard_normal((n_ref, len(FEATURES)))
            served = LogisticRegression(C=10.0).fit(x_new, labels(rng, x_new, SWAPPED)).coef_[0]
        x = rng.standard_normal((window, len(FEATURES)))
        y = labels(rng, x, weights)
        shap_online, pred = model.predict_and_learn(x, y)
        for path, shap in (
            ("attributions_replaced", x * served),
            ("attributions_online", shap_online),
        ):
            sketch = WindowSketch.empty(profile, 60.0 * w, 60.0 * (w + 1), seed=w)
            sketch.update(
                RecordBatch(
                    numeric={f: x[:, j] for j, f in enumerate(FEATURES)},
                    categorical={},
                    event_time=np.full(window, 60.0 * w),
                    prediction=pred.astype(object),
                    attributions={f: shap[:, j] for j, f in enumerate(FEATURES)},
                )
            )
            verdict = window_importance(profile, sketch, thresholds)
            assert verdict is not None and verdict.source == "attributions"
            flags[path].append(verdict.drifted)
        for source, target in (("label_mi", y), ("prediction_mi", pred)):
            current = proxy_importance(x, FEATURES, target)
            result = importance_drift(
                profile.importance[source], current, n=window, source=source, thresholds=thresholds
            )
            flags[source].append(result.drifted)
    out: dict[str, Any] = {}
    for source, found in flags.items():
        before, after = found[:swap_window], found[swap_window:]
        first = next((i + 1 for i, hit in enumerate(after) if hit), None)
        out[source] = {"false_alarms": int(sum(before)), "windows": len(before), "delay": first}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 30 stationary windows")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--windows", type=int, default=100, help="stationary windows per seed")
    parser.add_argument("--window", type=int, default=2_000, help="records per window")
    parser.add_argument("--refit", type=int, default=500, help="online model: refit every N")
    parser.add_argument("--train", type=int, default=6_000, help="online model: on the last N")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    seeds = 3 if args.quick else args.seeds
    windows = 30 if args.quick else args.windows
    started = time.perf_counter()
    stationary = [
        run_seed(s, windows, args.window, args.refit, args.train, swap_window=windows)
        for s in range(seeds)
    ]
    swapped = [
        run_seed(1000 + s, SWAP_WINDOW + 4, args.window, args.refit, args.train, SWAP_WINDOW)
        for s in range(seeds)
    ]
    figures: dict[str, Any] = {
        "seeds": seeds,
        "window_records": args.window,
        "online_model": {"refit_every": args.refit, "train_on_last": args.train},
        "load": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"windows of {args.window} records, {seeds} seeds, load {figures['load']:.2f}\n"
        f"{'path':<24}{'false alarms (stationary)':>26}{'delay after swap (windows)':>30}"
    )
    for source in PATHS:
        alarms = sum(r[source]["false_alarms"] for r in stationary)
        total = sum(r[source]["windows"] for r in stationary)
        delays = [r[source]["delay"] for r in swapped]
        figures[source] = {
            "false_alarms": alarms,
            "stationary_windows": total,
            "delays": delays,
            "detected_within_2": sum(1 for d in delays if d is not None and d <= 2),
        }
        shown = ", ".join("-" if d is None else str(d) for d in delays)
        print(f"{source:<24}{f'{alarms} / {total}':>26}{shown:>30}")
    print(f"({figures['seconds']} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
