"""The streams a model version's concept-drift detectors are fed, from its joined outcomes
(pure numpy, no I/O): per outcome the ``error``, the ``score`` and the ``loss`` (see
:data:`~driftline.detectors.concept.settings.STREAMS`), and for a regression model the errors as ranks against the version's first
errors (:func:`error_ranks`), so that ADWIN's [0, 1] bound holds.

The worker (``streams/outcomes.py``) releases a model's outcomes in (order time, prediction id)
order and hands each version's rows to :func:`outcome_streams`, then to
:class:`~driftline.detectors.concept.stage.ConceptStage`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.detectors.normalise import class_texts

__all__ = ["error_ranks", "outcome_streams"]


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def outcome_streams(
    labels: Sequence[Any], predictions: Sequence[Any], scores: Sequence[float], regression: bool
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """The streams a detector can watch (see `settings.STREAMS`), NaN where undefined.

    Classification: ``error`` 1 when the label's class differs from the prediction's (the
    label join's class rule), ``loss`` the log loss of the score (probability of class "1").
    Regression: ``error`` the absolute error, ``loss`` its square; a label or prediction that
    is not a finite number gives NaN (not fed).

    >>> s = outcome_streams(["1", "0", "1"], ["1", "1", "0"], [0.9, 0.8, float("nan")], False)
    >>> s["error"].tolist(), np.round(s["loss"][:2], 3).tolist(), bool(np.isnan(s["loss"][2]))
    ([0.0, 1.0, 1.0], [0.105, 1.609], True)
    >>> outcome_streams(["2.5", "x"], [2.0, 1.0], [float("nan")] * 2, True)["error"].tolist()
    [0.5, nan]
    """
    score = np.asarray(scores, dtype=np.float64)
    if regression:
        truth = np.array([_number(v) for v in labels], dtype=np.float64)
        guess = np.array([_number(v) for v in predictions], dtype=np.float64)
        error = np.abs(truth - guess)
        return {"error": error, "score": score, "loss": error * error}
    # the label join's class rule (normalise.py): True, 1, "1", "true", 1.0 are one class
    truths = class_texts(labels)
    error = np.array(
        [t != p for t, p in zip(truths, class_texts(predictions), strict=True)], dtype=np.float64
    )
    positive = np.array([t == "1" for t in truths], dtype=bool)
    p = np.clip(score, 1e-6, 1 - 1e-6)
    with np.errstate(invalid="ignore"):
        loss = np.where(positive, -np.log(p), -np.log1p(-p))
    return {"error": error, "score": score, "loss": loss}


def error_ranks(
    errors: np.ndarray[Any, np.dtype[np.float64]], reference: list[float], calibration: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A regression model's absolute errors as their mid-rank (empirical CDF, in [0, 1]) among
    the version's first `calibration` errors, which are collected into `reference` (kept
    sorted) and fed as NaN (not fed). ADWIN's bound assumes values in [0, 1]: raw errors are
    unbounded, heavy-tailed and in the label's units (false alarms on a stationary lognormal
    error, a slow delay at small scales); ranks are bounded and unit-free (0.5 on average while
    the errors keep their distribution). The reference is never re-learnt (also not after an
    event): the stream fed is then the same whatever the batches it is released in.

    >>> reference: list[float] = []
    >>> error_ranks(np.array([3.0, 1.0, 2.0, 1e9, 2.0, np.nan]), reference, 3).tolist()
    [nan, nan, nan, 1.0, 0.5, nan]
    >>> reference
    [1.0, 2.0, 3.0]
    """
    ranks = np.full(errors.shape, np.nan)
    i = 0
    while len(reference) < calibration and i < errors.size:  # the first errors: the reference
        if errors[i] == errors[i]:
            reference.append(float(errors[i]))
        i += 1
    reference.sort()
    if i < errors.size and reference:
        rest = errors[i:]
        below = np.searchsorted(reference, rest, side="left")
        not_above = np.searchsorted(reference, rest, side="right")
        ranks[i:] = np.where(rest == rest, (below + not_above) / (2.0 * len(reference)), np.nan)
    return ranks
