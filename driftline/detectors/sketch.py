"""Window sketches: bounded, mergeable, JSON-serialisable summaries of one event-time window.

A :class:`WindowSketch` summarises the records of one (model, version, window) on the bins
of a :class:`~driftline.detectors.profile.ReferenceProfile`. Its size does not depend on the
traffic: a window of ten million records costs as much memory as one of ten.

What it keeps, and how two sketches merge (``merge(a, b)`` equals the sketch of the
concatenated records; exactly for counts, histograms and moments up to float rounding,
in distribution for the sample):

==========================  ==================================================  ===============
field                       content                                             merge
==========================  ==================================================  ===============
numeric histograms          counts on the reference bins + underflow/overflow   sum
numeric moments             n, mean, M2 of the finite values, min, max           Chan et al.
missing / invalid           NaN = missing, +/-inf (or not a number) = invalid   sum
reservoir                   joint numeric rows with the k smallest random keys  k smallest keys
reservoir predictions       each reservoir row's prediction (its class as text)  with its row
categorical counts          reference categories, the rest in ``__other__``     sum
outside categories          heavy hitters among the values outside them (100)   Misra-Gries
score histogram             50 bins over [0, 1], overall and per class          sum
latency                     relative-error log buckets (DDSketch, alpha=1%)     sum
classes / errors            counts per predicted class / error type (capped)    sum, capped
records, event time         record count, min/max event time                    sum, min/max
attributions                sum of |attribution| and count per feature          sum
==========================  ==================================================  ===============

The reservoir is priority sampling (Efraimidis and Spirakis, 2006, with equal weights): each
record draws a uniform key and the sketch keeps the ``reservoir_size`` (default 2,000) rows
with the smallest keys, so the union of two sketches is sampled by keeping the smallest keys
of both. When the batch carries ``record_keys`` (a stable 64-bit identity per record, e.g.
Kafka partition, offset and index), a record's key is a hash of its identity (splitmix64):
the sample then depends only on *which* records a window holds, not on how they were split
into batches or partitions, so one worker and several give the same sample, and a replay
after a crash rebuilds it exactly. Without ``record_keys``, keys come from
``numpy.random.default_rng([seed, n_updates])``: reproducible, and sketches of the same window
built in parallel must be given distinct seeds for the merged sample to be uniform. The
reservoir is kept sorted by key, so equal samples are equal arrays.

One module of ~900 lines on purpose: every field of the table above appears in `update`,
`merge`, `to_dict` and `from_dict`, and the four must change together (a field missed in one of
them is a silent merge or checkpoint bug), so they stay in one class in one file.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftline.detectors.batch import RecordBatch
from driftline.detectors.normalise import class_value
from driftline.detectors.profile import (
    OTHER,
    SCORE_BINS,
    NumericProfile,
    ReferenceProfile,
    prediction_as_float,
    score_bin_index,
)

__all__ = ["RESERVOIR_FIELDS", "LatencySketch", "SketchMismatchError", "WindowSketch"]

MAX_CLASSES = 100
MAX_SCORE_CLASSES = 20
MAX_ERROR_TYPES = 50
MAX_UNSEEN = 100
MAX_NEW_FEATURES = 50
MAX_ATTRIBUTION_FEATURES = 500
ERROR_TYPE_CHARS = 100
# the fields of `WindowSketch.to_dict` that a checkpoint stores in segments instead
RESERVOIR_FIELDS = ("reservoir_keys", "reservoir_rows", "reservoir_predictions")


class SketchMismatchError(ValueError):
    """Two sketches that do not describe the same model, version and reference bins."""


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _rows_with_none(rows: NDArray[np.float64]) -> list[list[float | None]]:
    """Rows as lists with NaN as None, vectorised (the checkpoint's hot spot when per value)."""
    out = rows.astype(object)
    out[np.isnan(rows)] = None
    result: list[list[float | None]] = out.tolist()
    return result


def _packed_floats(values: NDArray[np.float64]) -> dict[str, Any]:
    """A float array as JSON: base64 of its little-endian float64 bytes, with its shape. NaN
    stays NaN (no None); a full window is 3.5x cheaper to write and read back than with lists
    of floats, at 10.7 characters per value instead of up to 24 (docs/BENCHMARKS.md,
    "Checkpoint size").

    >>> _packed_floats(np.array([[1.0, np.nan]]))
    {'dtype': '<f8', 'shape': [1, 2], 'base64': 'AAAAAAAA8D8AAAAAAAD4fw=='}
    """
    data = np.ascontiguousarray(values, dtype="<f8")
    return {
        "dtype": "<f8",
        "shape": list(data.shape),
        "base64": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def _floats_from_json(saved: Any) -> NDArray[np.float64]:
    """A float array from `_packed_floats`, or from a JSON list (None = NaN) as written before.

    >>> _floats_from_json(_packed_floats(np.array([[1.0, np.nan]]))).tolist()
    [[1.0, nan]]
    >>> _floats_from_json([[1, None]]).tolist()
    [[1.0, nan]]
    """
    if not isinstance(saved, Mapping):
        return _rows_from_json(saved)
    if saved.get("dtype") != "<f8":
        raise ValueError(f"packed array: dtype {saved.get('dtype')!r}, expected '<f8'")
    shape = tuple(int(n) for n in saved["shape"])
    try:
        raw = base64.b64decode(saved["base64"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"packed array: {exc}") from exc
    if len(raw) != 8 * math.prod(shape):
        raise ValueError(f"packed array: {len(raw)} bytes for shape {list(shape)}")
    # a writable native-order copy: the sketch keeps updating it in place
    return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)


def _rows_shaped(rows: NDArray[np.float64], n: int, width: int) -> NDArray[np.float64]:
    """Reservoir rows as (rows, columns); a model without numeric features has rows of width
    0, which ``reshape(-1, 0)`` cannot infer (ValueError if the sizes do not match).

    >>> _rows_shaped(np.empty((3, 0)), 3, 0).shape
    (3, 0)
    """
    if width == 0:
        if rows.size:
            raise ValueError(f"reservoir: {rows.size} values for rows without columns")
        return np.empty((n, 0))
    return rows.reshape(-1, width)


def _steps(below: NDArray[np.intp]) -> NDArray[np.intp]:
    """``np.diff(below, prepend=0)`` without its Python layers (a hot spot per feature).

    >>> _steps(np.array([2, 5, 5, 9])).tolist()
    [2, 3, 0, 4]
    """
    out = below.copy()
    out[1:] -= below[:-1]
    return out


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _rows_from_json(rows: Any) -> NDArray[np.float64]:
    """Reservoir rows from JSON (None = NaN) as floats: numpy converts the rows at once (stage 2
    reads four partials of 2,000 rows per window); value by value only for what it refuses.

    >>> _rows_from_json([[1, None], [2.5, 3.0]]).tolist()
    [[1.0, nan], [2.5, 3.0]]
    """
    try:
        return np.array(rows, dtype=np.float64)  # nothing missing
    except (TypeError, ValueError):
        pass
    try:
        values = np.array(rows, dtype=object)
        if values.ndim == 2:
            values[values == None] = np.nan  # noqa: E711 (elementwise on an object array)
            return values.astype(np.float64)
    except (TypeError, ValueError):
        pass
    return np.array([[_nan_if_none(x) for x in r] for r in rows], dtype=np.float64)


def _add_capped(target: dict[str, int], key: str, count: int, cap: int) -> None:
    if key in target or len(target) < cap or key == OTHER:
        target[key] = target.get(key, 0) + count
    else:
        target[OTHER] = target.get(OTHER, 0) + count


def _merge_capped(a: Mapping[str, int], b: Mapping[str, int], cap: int) -> dict[str, int]:
    out = dict(a)
    for key, count in b.items():
        _add_capped(out, key, count, cap)
    return out


# -- latency -------------------------------------------------------------------------------


@dataclass(slots=True)
class LatencySketch:
    """Relative-error quantile sketch (DDSketch; Masson, Rim and Lee, VLDB 2019).

    A value ``x > min_value`` goes to bucket ``ceil(log(x) / log(gamma))`` with
    ``gamma = (1 + alpha) / (1 - alpha)``; every quantile is then returned within a relative
    error ``alpha`` (default 1%, the paper's). Values ``<= min_value`` (default 1 µs) share a
    zero bucket. At most ``max_buckets`` (default 2,048, enough for 1 µs .. 10^8 s at 1%)
    are kept; beyond that the lowest buckets are collapsed, as in the paper. Merging sums the
    buckets (same ``alpha`` required).

    >>> sketch = LatencySketch()
    >>> sketch.update(np.linspace(0.001, 1.0, 1000))
    >>> abs(sketch.quantile(0.5) - 0.5) / 0.5 < 0.01
    True
    """

    alpha: float = 0.01
    min_value: float = 1e-6
    max_buckets: int = 2048
    buckets: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0

    @property
    def gamma(self) -> float:
        return (1.0 + self.alpha) / (1.0 - self.alpha)

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.buckets.values())

    def update(self, values: NDArray[np.float64]) -> None:
        x = values[np.isfinite(values)]
        if x.size == 0:
            return
        small = x <= self.min_value
        self.zero_count += int(small.sum())
        keys = np.ceil(np.log(x[~small]) / math.log(self.gamma)).astype(np.int64)
        if keys.size == 0:
            return
        base = int(keys.min())
        counts = np.bincount(keys - base)
        for i in np.flatnonzero(counts).tolist():
            self.buckets[base + i] = self.buckets.get(base + i, 0) + int(counts[i])
        self._collapse()

    def _collapse(self) -> None:
        if len(self.buckets) <= self.max_buckets:
            return
        keys = sorted(self.buckets)
        excess = keys[: len(keys) - self.max_buckets + 1]
        folded = sum(self.buckets.pop(k) for k in excess)
        target = keys[len(excess)]
        self.buckets[target] = self.buckets.get(target, 0) + folded

    def merge(self, other: LatencySketch) -> LatencySketch:
        if other.alpha != self.alpha:
            raise SketchMismatchError(f"latency alpha {self.alpha} != {other.alpha}")
        out = LatencySketch(self.alpha, self.min_value, self.max_buckets, dict(self.buckets))
        out.zero_count = self.zero_count + other.zero_count
        for k, c in other.buckets.items():
            out.buckets[k] = out.buckets.get(k, 0) + c
        out._collapse()
        return out

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), None when the sketch is empty."""
        n = self.count
        if n == 0:
            return None
        rank = q * (n - 1)
        seen = self.zero_count
        if rank < seen:
            return 0.0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if rank < seen:
                return 2.0 * self.gamma**k / (self.gamma + 1.0)
        return 2.0 * self.gamma ** max(self.buckets) / (self.gamma + 1.0)

    def to_dict(self) -> dict[str, Any]:
        keys = sorted(self.buckets)
        return {
            "alpha": self.alpha,
            "min_value": self.min_value,
            "max_buckets": self.max_buckets,
            "keys": keys,
            "counts": [self.buckets[k] for k in keys],
            "zero_count": self.zero_count,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencySketch:
        buckets = {int(k): int(c) for k, c in zip(d["keys"], d["counts"], strict=True)}
        return cls(
            float(d["alpha"]),
            float(d["min_value"]),
            int(d["max_buckets"]),
            buckets,
            int(d["zero_count"]),
        )


# -- numeric -------------------------------------------------------------------------------


@dataclass(slots=True)
class NumericSketch:
    """Histogram on the reference bins and moments of one numeric feature in one window."""

    cuts: NDArray[np.float64]
    low: float
    high: float
    counts: NDArray[np.int64]
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    missing: int = 0
    invalid: int = 0
    fine_cuts: NDArray[np.float64] | None = None
    fine_counts: NDArray[np.int64] | None = None
    # (low, *cuts) and (low, *fine_cuts), built on the first update (not state: never saved)
    edges: tuple[NDArray[np.float64], NDArray[np.float64] | None] | None = field(
        default=None, repr=False, compare=False
    )
    # `cuts` and `fine_cuts` as `to_dict` writes them, packed once: they never change, and a
    # window is checkpointed every few seconds (not state: never saved)
    packed_cuts: tuple[dict[str, Any], dict[str, Any] | None] | None = field(
        default=None, repr=False, compare=False
    )

    def _edges(self) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        if self.edges is None:
            fine = None if self.fine_cuts is None else np.concatenate(([self.low], self.fine_cuts))
            self.edges = (np.concatenate(([self.low], self.cuts)), fine)
        return self.edges

    @property
    def variance(self) -> float:
        """Population variance of the finite values (0 when fewer than two)."""
        return self.m2 / self.n if self.n > 1 else 0.0

    def update(self, values: NDArray[np.float64]) -> None:
        # ~10 numpy calls per feature and batch (a window of 100 models x 20 features gets
        # small batches): each kept cheap, and every float computed as before
        finite = np.isfinite(values)
        n_b = int(np.count_nonzero(finite))
        bad = values.size - n_b
        if bad:
            nan = int(np.isnan(values).sum())
            self.missing += nan
            self.invalid += bad - nan
            x = values[finite]
        else:
            x = values
        if n_b == 0:
            return
        xs = np.sort(x)
        lower_edges, fine_edges = self._edges()
        below = xs.searchsorted(lower_edges, side="left")
        upto_high = int(xs.searchsorted(self.high, side="right"))
        self.counts[: len(below)] += _steps(below)
        self.counts[-2] += upto_high - int(below[-1])
        self.counts[-1] += n_b - upto_high
        if self.fine_counts is not None and fine_edges is not None:
            fine_below = xs.searchsorted(fine_edges, side="left")
            self.fine_counts[: len(fine_below)] += _steps(fine_below)
            self.fine_counts[-2] += upto_high - int(fine_below[-1])
            self.fine_counts[-1] += n_b - upto_high
        mean_b = float(np.add.reduce(xs)) / n_b  # = xs.mean(), without its Python layers
        d = xs - mean_b
        self._combine(n_b, mean_b, float(d @ d), float(xs[0]), float(xs[-1]))

    def _combine(self, n_b: int, mean_b: float, m2_b: float, min_b: float, max_b: float) -> None:
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min = min(self.min, min_b)
        self.max = max(self.max, max_b)

    def merged(self, other: NumericSketch) -> NumericSketch:
        out = NumericSketch(
            self.cuts,
            self.low,
            self.high,
            self.counts + other.counts,
            self.n,
            self.mean,
            self.m2,
            self.min,
            self.max,
            self.missing + other.missing,
            self.invalid + other.invalid,
            self.fine_cuts,
            None
            if self.fine_counts is None or other.fine_counts is None
            else self.fine_counts + other.fine_counts,
        )
        if other.n:
            out._combine(other.n, other.mean, other.m2, other.min, other.max)
        return out

    def packed_edges(self) -> dict[str, Any]:
        """`cuts` and `fine_cuts` as `to_dict` writes them (packed once)."""
        if self.packed_cuts is None:
            fine = None if self.fine_cuts is None else _packed_floats(self.fine_cuts)
            self.packed_cuts = (_packed_floats(self.cuts), fine)
        return {"cuts": self.packed_cuts[0], "fine_cuts": self.packed_cuts[1]}

    def to_dict(self, edges: bool = True) -> dict[str, Any]:
        """Without ``edges``, `cuts` and `fine_cuts` are left out (see `packed_edges`)."""
        packed = self.packed_edges() if edges else {"cuts": None, "fine_cuts": None}
        d = {
            "cuts": packed["cuts"],
            "low": self.low,
            "high": self.high,
            "counts": self.counts.tolist(),
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
            "missing": self.missing,
            "invalid": self.invalid,
            "fine_cuts": packed["fine_cuts"],
            "fine_counts": None if self.fine_counts is None else self.fine_counts.tolist(),
        }
        if not edges:
            del d["cuts"], d["fine_cuts"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericSketch:
        return cls(
            _floats_from_json(d["cuts"]).reshape(-1),
            float(d["low"]),
            float(d["high"]),
            np.asarray(d["counts"], dtype=np.int64),
            int(d["n"]),
            float(d["mean"]),
            float(d["m2"]),
            math.inf if d["min"] is None else float(d["min"]),
            -math.inf if d["max"] is None else float(d["max"]),
            int(d["missing"]),
            int(d["invalid"]),
            None if d.get("fine_cuts") is None else _floats_from_json(d["fine_cuts"]).reshape(-1),
            None if d.get("fine_counts") is None else np.asarray(d["fine_counts"], dtype=np.int64),
        )


# -- categorical ---------------------------------------------------------------------------


def heavy_hitters(a: Mapping[str, int], b: Mapping[str, int], k: int) -> dict[str, int]:
    """Merge two heavy-hitter summaries of at most ``k`` counters (Misra-Gries, in the
    mergeable form of Agarwal et al., "Mergeable summaries", PODS 2012).

    Counts are summed; when more than ``k`` values remain, the (k+1)-th largest count is
    subtracted from every counter and the non-positive ones dropped. Every value whose true
    frequency exceeds ``N / (k + 1)`` (``N`` the records summarised) is kept, and a kept
    count underestimates the true one by at most ``N / (k + 1)``. A batch's exact tally is
    itself such a summary, so updating is merging.

    >>> heavy_hitters({"a": 5, "b": 1}, {"a": 2, "c": 3}, k=2)
    {'a': 6, 'c': 2}
    """
    out = dict(a)
    for key, c in b.items():
        out[key] = out.get(key, 0) + c
    if len(out) <= k:
        return out
    cut = sorted(out.values(), reverse=True)[k]
    return {key: c - cut for key, c in out.items() if c > cut}


_FINGERPRINTS: dict[int, tuple[Any, str]] = {}  # id(profile) -> (profile, fingerprint)


def _fingerprint(profile: Any) -> str:
    """`profile.fingerprint`, computed once per profile object (a JSON dump and a hash, ~1 ms:
    with many models a worker opens thousands of windows). Profiles are not changed once
    loaded; the cache holds the profile, so its id is not reused while it is cached."""
    cached = _FINGERPRINTS.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    if len(_FINGERPRINTS) >= 10_000:
        _FINGERPRINTS.clear()
    fingerprint = str(profile.fingerprint)
    _FINGERPRINTS[id(profile)] = (profile, fingerprint)
    return fingerprint


@dataclass(slots=True)
class CategoricalSketch:
    """Counts over the reference categories (+ ``__other__``), and a heavy-hitters summary
    (``unseen``, at most ``MAX_UNSEEN`` counters) of the values outside them: the frequent
    ones among thousands are found, with memory that does not grow with the vocabulary."""

    counts: dict[str, int]
    unseen: dict[str, int] = field(default_factory=dict)
    missing: int = 0

    def update(self, values: NDArray[np.object_]) -> None:
        tally = Counter(values.tolist())
        self.missing += tally.pop(None, 0)
        counts = self.counts
        outside: dict[str, int] = {}
        for key, c in tally.items():
            k = key if isinstance(key, str) else str(key)
            if k in counts and k != OTHER:
                counts[k] += c
            else:
                counts[OTHER] += c
                outside[k] = outside.get(k, 0) + c
        if outside:
            self.unseen = heavy_hitters(self.unseen, outside, MAX_UNSEEN)

    def merged(self, other: CategoricalSketch) -> CategoricalSketch:
        counts = {k: v + other.counts.get(k, 0) for k, v in self.counts.items()}
        return CategoricalSketch(
            counts,
            heavy_hitters(self.unseen, other.unseen, MAX_UNSEEN),
            self.missing + other.missing,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "unseen": dict(self.unseen), "missing": self.missing}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalSketch:
        return cls(
            {str(k): int(v) for k, v in d["counts"].items()},
            {str(k): int(v) for k, v in d["unseen"].items()},
            int(d["missing"]),
        )


# -- window --------------------------------------------------------------------------------


@dataclass(slots=True)
class WindowSketch:
    """Bounded, mergeable summary of one (model, version, window) on a profile's bins.

    Create it with :meth:`empty`, feed it :class:`RecordBatch` es with :meth:`update`
    (vectorised: ``np.searchsorted`` on the reference edges and ``np.bincount``), combine
    partial sketches with :meth:`merge`, store it with :meth:`to_dict` / :meth:`from_dict`
    (plain JSON types only, never pickle).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.from_columns({"x": rng.normal(size=2_000)},
    ...                                         model="m", model_version="1", bins=10)
    >>> def batch(n):
    ...     return RecordBatch(numeric={"x": rng.normal(size=n)}, categorical={},
    ...                        event_time=np.arange(n, dtype=float),
    ...                        prediction=np.full(n, "ok", dtype=object))
    >>> a = WindowSketch.empty(profile, 0.0, 60.0, seed=1)
    >>> a.update(batch(300))
    >>> b = WindowSketch.empty(profile, 0.0, 60.0, seed=2)
    >>> b.update(batch(700))
    >>> merged = a.merge(b)
    >>> merged.n_records, int(merged.numeric["x"].counts.sum()), merged.reservoir_rows.shape
    (1000, 1000, (1000, 1))
    >>> WindowSketch.from_dict(merged.to_dict()).class_counts
    {'ok': 1000}
    """

    model: str
    model_version: str
    window_start: float
    window_end: float
    profile_fingerprint: str
    numeric: dict[str, NumericSketch]
    categorical: dict[str, CategoricalSketch]
    reservoir_columns: list[str]
    reservoir_keys: NDArray[np.float64]
    reservoir_rows: NDArray[np.float64]
    reservoir_size: int = 2_000
    seed: int = 0
    n_updates: int = 0
    n_records: int = 0
    event_time_min: float = math.inf
    event_time_max: float = -math.inf
    class_counts: dict[str, int] = field(default_factory=dict)
    score_counts: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64)
    )
    score_counts_by_class: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    score_sum: float = 0.0
    score_n: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    error_counts: dict[str, int] = field(default_factory=dict)
    attribution_abs_sum: dict[str, float] = field(default_factory=dict)
    attribution_n: dict[str, int] = field(default_factory=dict)
    probability_counts: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    prediction_values: NumericSketch | None = None
    absent_counts: dict[str, int] = field(default_factory=dict)
    """Records of the window that did not carry the feature's key at all (monitored features)."""
    new_features: dict[str, int] = field(default_factory=dict)
    """Records carrying each feature the reference does not know (at most 50 names)."""
    reservoir_predictions: NDArray[np.object_] = field(
        default_factory=lambda: np.empty(0, dtype=object)
    )
    """The prediction of each reservoir row, aligned with ``reservoir_rows``: the class as text
    (``True``, ``1`` and ``"1"`` are ``"1"``, see ``class_value``), a regression model's value
    as text, None when missing. The importance proxy (``prediction_mi``) reads it."""

    @classmethod
    def empty(
        cls,
        profile: ReferenceProfile,
        window_start: float,
        window_end: float,
        *,
        seed: int = 0,
        reservoir_size: int = 2_000,
        latency_alpha: float = 0.01,
    ) -> WindowSketch:
        """An empty sketch of one window on ``profile``'s bins and categories."""
        columns = list(profile.sample_columns)
        return cls(
            model=profile.model,
            model_version=profile.model_version,
            window_start=float(window_start),
            window_end=float(window_end),
            profile_fingerprint=_fingerprint(profile),
            numeric={k: _empty_numeric(p) for k, p in profile.numeric.items()},
            categorical={
                k: CategoricalSketch({c: 0 for c in [*p.counts, OTHER]})
                for k, p in profile.categorical.items()
            },
            reservoir_columns=columns,
            reservoir_keys=np.empty(0),
            reservoir_rows=np.empty((0, len(columns))),
            reservoir_size=reservoir_size,
            seed=seed,
            latency=LatencySketch(alpha=latency_alpha),
            probability_counts={
                k: np.zeros(SCORE_BINS, np.int64) for k in profile.probability_counts
            },
            prediction_values=None
            if profile.prediction_values is None
            else _empty_numeric(profile.prediction_values),
        )

    # -- update ------------------------------------------------------------------------------

    def update(self, batch: RecordBatch) -> None:
        """Add a batch of records (all assumed to belong to this window)."""
        n = len(batch)
        if n == 0:
            return
        missing_col = np.full(n, np.nan)
        for name, sk in self.numeric.items():
            sk.update(batch.numeric.get(name, missing_col))
        for name, cs in self.categorical.items():
            values = batch.categorical.get(name)
            if values is None:
                cs.missing += n
            else:
                cs.update(values)
        self._update_reservoir(batch, n)
        self.n_records += n
        self.n_updates += 1
        times = batch.event_time[np.isfinite(batch.event_time)]
        if times.size:
            self.event_time_min = min(self.event_time_min, float(times.min()))
            self.event_time_max = max(self.event_time_max, float(times.max()))
        self._update_predictions(batch)
        for name, mask in (batch.absent or {}).items():
            if name in self.numeric or name in self.categorical:
                self.absent_counts[name] = self.absent_counts.get(name, 0) + int(mask.sum())
        for name, mask in (batch.extra or {}).items():
            if name not in self.numeric and name not in self.categorical:
                _add_capped(self.new_features, name, int(mask.sum()), MAX_NEW_FEATURES)
        self.latency.update(batch.latency_seconds)
        self._update_errors(batch.error)
        if batch.attributions:
            for name, attr in batch.attributions.items():
                if name not in self.attribution_n and len(self.attribution_n) >= (
                    MAX_ATTRIBUTION_FEATURES
                ):
                    continue
                finite = attr[np.isfinite(attr)]
                self.attribution_abs_sum[name] = self.attribution_abs_sum.get(name, 0.0) + float(
                    np.abs(finite).sum()
                )
                self.attribution_n[name] = self.attribution_n.get(name, 0) + int(finite.size)

    def _update_reservoir(self, batch: RecordBatch, n: int) -> None:
        k = self.reservoir_size
        if batch.record_keys is not None:
            keys = uniform_from_keys(batch.record_keys)
        else:
            keys = np.random.default_rng([self.seed, self.n_updates]).random(n)
        chosen = np.argpartition(keys, k - 1)[:k] if n > k else np.arange(n)
        if len(self.reservoir_keys) >= k:  # only rows that beat the current largest key
            chosen = chosen[keys[chosen] < self.reservoir_keys.max()]
        if chosen.size == 0:
            return
        rows = np.empty((chosen.size, len(self.reservoir_columns)))
        for j, name in enumerate(self.reservoir_columns):
            column = batch.numeric.get(name)
            rows[:, j] = np.nan if column is None else column[chosen]
        rows[~np.isfinite(rows)] = np.nan
        self.reservoir_keys, self.reservoir_rows, self.reservoir_predictions = _smallest(
            np.concatenate([self.reservoir_keys, keys[chosen]]),
            np.concatenate([self.reservoir_rows, rows]),
            k,
            np.concatenate([self._aligned_predictions(), self._prediction_texts(batch, chosen)]),
        )

    def _prediction_texts(
        self, batch: RecordBatch, chosen: NDArray[np.intp]
    ) -> NDArray[np.object_]:
        """The chosen rows' predictions as text (None when missing), one class per value."""
        out = np.empty(chosen.size, dtype=object)
        if self.prediction_values is not None:  # regression: the value, "nan" never stored
            values = prediction_as_float(batch.prediction[chosen])
            out[:] = [repr(float(v)) if math.isfinite(v) else None for v in values.tolist()]
        else:
            seen: dict[Any, str | None] = {}
            out[:] = [_class_text(v, seen) for v in batch.prediction[chosen].tolist()]
        return out

    def _aligned_predictions(self) -> NDArray[np.object_]:
        """``reservoir_predictions``, or all None when it does not match the rows (a sketch
        built without it), so a row never takes another row's prediction."""
        if len(self.reservoir_predictions) == len(self.reservoir_rows):
            return self.reservoir_predictions
        return np.full(len(self.reservoir_rows), None, dtype=object)

    def _update_predictions(self, batch: RecordBatch) -> None:
        if self.prediction_values is not None:  # regression: values, not classes
            self.prediction_values.update(prediction_as_float(batch.prediction))
        for name, counts in self.probability_counts.items():
            column = None if batch.probabilities is None else batch.probabilities.get(name)
            if column is not None:
                p = column[np.isfinite(column)]
                counts += np.bincount(score_bin_index(p), minlength=SCORE_BINS)
        if self.prediction_values is not None:
            tally: Counter[Any] = Counter()
        else:
            tally = Counter(batch.prediction.tolist())
        tally.pop(None, None)
        for key, c in tally.items():
            _add_capped(self.class_counts, str(key), c, MAX_CLASSES)
        if batch.score is None:
            return
        finite = np.isfinite(batch.score)
        s = batch.score[finite]
        bins = score_bin_index(s)
        self.score_counts += np.bincount(bins, minlength=SCORE_BINS)
        self.score_sum += float(s.sum())
        self.score_n += int(s.size)
        if len(tally) > MAX_SCORE_CLASSES:
            return
        pred = batch.prediction[finite]
        for key in tally:
            name = str(key)
            if name not in self.score_counts_by_class:
                if len(self.score_counts_by_class) >= MAX_SCORE_CLASSES:
                    continue
                self.score_counts_by_class[name] = np.zeros(SCORE_BINS, np.int64)
            self.score_counts_by_class[name] += np.bincount(bins[pred == key], minlength=SCORE_BINS)

    def _update_errors(self, error: NDArray[np.object_]) -> None:
        present = error[error.nonzero()[0]]  # None and "" are falsy: no error
        if present.size == 0:
            return
        tally = Counter(present.tolist())
        for text, c in tally.items():
            _add_capped(self.error_counts, error_type(text), c, MAX_ERROR_TYPES)

    # -- merge -------------------------------------------------------------------------------

    def merge(self, other: WindowSketch) -> WindowSketch:
        """Sketch of the records of both (window = the union of both time ranges).

        Also used to carry a window with too few records forward into the next one.
        """
        if (self.model, self.model_version, self.profile_fingerprint) != (
            other.model,
            other.model_version,
            other.profile_fingerprint,
        ):
            raise SketchMismatchError(
                f"cannot merge sketches of {self.model}/{self.model_version} "
                f"(profile {self.profile_fingerprint}) and {other.model}/{other.model_version} "
                f"(profile {other.profile_fingerprint})"
            )
        if self.reservoir_columns != other.reservoir_columns:
            raise SketchMismatchError("sketches have different reservoir columns")
        k = min(self.reservoir_size, other.reservoir_size)
        keys, rows, predictions = _smallest(
            np.concatenate([self.reservoir_keys, other.reservoir_keys]),
            np.concatenate([self.reservoir_rows, other.reservoir_rows]),
            k,
            np.concatenate([self._aligned_predictions(), other._aligned_predictions()]),
        )
        by_class = {k2: v.copy() for k2, v in self.score_counts_by_class.items()}
        for name, counts in other.score_counts_by_class.items():
            if name in by_class:
                by_class[name] += counts
            elif len(by_class) < MAX_SCORE_CLASSES:
                by_class[name] = counts.copy()
        attr_sum = dict(self.attribution_abs_sum)
        attr_n = dict(self.attribution_n)
        for name, total in other.attribution_abs_sum.items():
            if name in attr_n or len(attr_n) < MAX_ATTRIBUTION_FEATURES:
                attr_sum[name] = attr_sum.get(name, 0.0) + total
                attr_n[name] = attr_n.get(name, 0) + other.attribution_n[name]
        return WindowSketch(
            model=self.model,
            model_version=self.model_version,
            window_start=min(self.window_start, other.window_start),
            window_end=max(self.window_end, other.window_end),
            profile_fingerprint=self.profile_fingerprint,
            numeric={k2: v.merged(other.numeric[k2]) for k2, v in self.numeric.items()},
            categorical={k2: v.merged(other.categorical[k2]) for k2, v in self.categorical.items()},
            reservoir_columns=list(self.reservoir_columns),
            reservoir_keys=keys,
            reservoir_rows=rows,
            reservoir_size=k,
            seed=(self.seed * 1_000_003 + other.seed + 1) % (2**63),
            n_updates=self.n_updates + other.n_updates,
            n_records=self.n_records + other.n_records,
            event_time_min=min(self.event_time_min, other.event_time_min),
            event_time_max=max(self.event_time_max, other.event_time_max),
            class_counts=_merge_capped(self.class_counts, other.class_counts, MAX_CLASSES),
            score_counts=self.score_counts + other.score_counts,
            score_counts_by_class=by_class,
            score_sum=self.score_sum + other.score_sum,
            score_n=self.score_n + other.score_n,
            latency=self.latency.merge(other.latency),
            error_counts=_merge_capped(self.error_counts, other.error_counts, MAX_ERROR_TYPES),
            attribution_abs_sum=attr_sum,
            attribution_n=attr_n,
            probability_counts={
                k2: v + other.probability_counts[k2] for k2, v in self.probability_counts.items()
            },
            prediction_values=None
            if self.prediction_values is None or other.prediction_values is None
            else self.prediction_values.merged(other.prediction_values),
            absent_counts={
                k2: self.absent_counts.get(k2, 0) + other.absent_counts.get(k2, 0)
                for k2 in set(self.absent_counts) | set(other.absent_counts)
            },
            new_features=_merge_capped(self.new_features, other.new_features, MAX_NEW_FEATURES),
            reservoir_predictions=predictions,
        )

    # -- summaries ---------------------------------------------------------------------------

    def mean_abs_attribution(self) -> dict[str, float]:
        """Mean |attribution| per feature over the records that carried one."""
        return {k: self.attribution_abs_sum[k] / n for k, n in self.attribution_n.items() if n}

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self, reservoir: bool = True, edges: bool = True) -> dict[str, Any]:
        """Plain JSON types only: NaN stored as None, the reservoir's keys and rows as base64 of
        their float64 bytes (`_packed_floats`; `from_dict` reads the older lists too). Without
        ``reservoir``, the three reservoir fields (`RESERVOIR_FIELDS`) are left out, without
        ``edges`` the numeric features' bin edges (`numeric_edges`): a checkpoint stores them in
        segments (`reservoir_segment`, `with_reservoir_union`, streams/segments.py)."""
        d: dict[str, Any] = {
            "model": self.model,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "profile_fingerprint": self.profile_fingerprint,
            "numeric": {k: v.to_dict(edges) for k, v in self.numeric.items()},
            "categorical": {k: v.to_dict() for k, v in self.categorical.items()},
            "reservoir_columns": list(self.reservoir_columns),
            "reservoir_keys": None,  # placeholders, see below
            "reservoir_rows": None,
            "reservoir_size": self.reservoir_size,
            "seed": self.seed,
            "n_updates": self.n_updates,
            "n_records": self.n_records,
            "event_time_min": self.event_time_min if self.n_records else None,
            "event_time_max": self.event_time_max if self.n_records else None,
            "class_counts": dict(self.class_counts),
            "score_counts": self.score_counts.tolist(),
            "score_counts_by_class": {k: v.tolist() for k, v in self.score_counts_by_class.items()},
            "score_sum": self.score_sum,
            "score_n": self.score_n,
            "latency": self.latency.to_dict(),
            "error_counts": dict(self.error_counts),
            "attribution_abs_sum": dict(self.attribution_abs_sum),
            "attribution_n": dict(self.attribution_n),
            "probability_counts": {k: v.tolist() for k, v in self.probability_counts.items()},
            "prediction_values": None
            if self.prediction_values is None
            else self.prediction_values.to_dict(),
            "absent_counts": dict(self.absent_counts),
            "new_features": dict(self.new_features),
            "reservoir_predictions": None,
        }
        if reservoir:  # in place, so that the fields keep their order
            d.update(self._reservoir_fields(np.ones(len(self.reservoir_keys), dtype=bool)))
        else:
            for name in RESERVOIR_FIELDS:
                del d[name]
        return d

    def numeric_edges(self) -> dict[str, dict[str, Any]]:
        """Each numeric feature's bin edges as `to_dict` writes them (`cuts`, `fine_cuts`)."""
        return {k: v.packed_edges() for k, v in self.numeric.items()}

    def _reservoir_fields(self, rows: NDArray[np.bool_]) -> dict[str, Any]:
        return {
            "reservoir_keys": _packed_floats(self.reservoir_keys[rows]),
            "reservoir_rows": _packed_floats(self.reservoir_rows[rows]),
            "reservoir_predictions": self._aligned_predictions()[rows].tolist(),
        }

    def reservoir_segment(self, written: NDArray[np.float64]) -> dict[str, Any] | None:
        """The reservoir rows whose keys are not in ``written`` (keys already stored in an
        earlier segment of this window), with their keys and predictions, in `to_dict`'s
        fields; None when there is none. A checkpoint appends it to the window's segments
        (`streams/segments.py`).

        >>> rng = np.random.default_rng(0)
        >>> profile = ReferenceProfile.from_columns({"x": rng.normal(size=100)},
        ...                                         model="m", model_version="1", bins=4)
        >>> sketch = WindowSketch.empty(profile, 0.0, 60.0, reservoir_size=5)
        >>> sketch.update(RecordBatch({"x": rng.normal(size=3)}, {}, np.zeros(3),
        ...                           np.array(["a"] * 3, dtype=object)))
        >>> first = sketch.reservoir_segment(np.empty(0))
        >>> first["reservoir_keys"]["shape"], first["reservoir_predictions"]
        ([3], ['a', 'a', 'a'])
        >>> sketch.reservoir_segment(sketch.reservoir_keys) is None
        True
        """
        new = ~np.isin(self.reservoir_keys, written)
        return self._reservoir_fields(new) if new.any() else None

    @staticmethod
    def with_reservoir_union(
        d: Mapping[str, Any], segments: list[Mapping[str, Any]]
    ) -> tuple[dict[str, Any], NDArray[np.float64]]:
        """``d`` (a `to_dict` without the reservoir) with the reservoir of the
        ``reservoir_size`` smallest keys among every row of ``segments``, and the sorted keys
        of all those rows. When every row that was ever in the sketch's reservoir at a
        checkpoint is in a segment, that is the reservoir itself, bit for bit: the reservoir is
        the k smallest keys of every record seen, and the segments hold a superset of it and a
        subset of those records (docs/DESIGN.md, "Recovery").

        >>> seg = {"reservoir_keys": [0.5, 0.1], "reservoir_rows": [[5.0], [1.0]],
        ...        "reservoir_predictions": ["b", None]}
        >>> more = {"reservoir_keys": [0.3], "reservoir_rows": [[3.0]],
        ...         "reservoir_predictions": ["c"]}
        >>> d = {"reservoir_columns": ["x"], "reservoir_size": 2}
        >>> whole, keys = WindowSketch.with_reservoir_union(d, [seg, more])
        >>> _floats_from_json(whole["reservoir_rows"]).tolist(), whole["reservoir_predictions"]
        ([[1.0], [3.0]], [None, 'c'])
        >>> keys.tolist()
        [0.1, 0.3, 0.5]
        """
        width = len(d["reservoir_columns"])
        keys = [_floats_from_json(s["reservoir_keys"]).reshape(-1) for s in segments]
        rows = [
            _rows_shaped(_floats_from_json(s["reservoir_rows"]), len(part), width)
            for s, part in zip(segments, keys, strict=True)
        ]
        predictions: list[Any] = []
        for s, part in zip(segments, keys, strict=True):
            saved = s["reservoir_predictions"]
            if not isinstance(saved, list) or len(saved) != len(part):
                raise ValueError(
                    f"reservoir segment: predictions do not match its {len(part)} rows"
                )
            predictions += [None if v is None else str(v) for v in saved]
        all_keys = np.concatenate([np.empty(0), *keys])
        all_rows = np.concatenate([np.empty((0, width)), *rows])
        all_predictions = np.empty(len(predictions), dtype=object)
        all_predictions[:] = predictions
        kept_keys, kept_rows, kept_predictions = _smallest(
            all_keys, all_rows, int(d["reservoir_size"]), all_predictions
        )
        whole = {
            **d,
            "reservoir_keys": _packed_floats(kept_keys),
            "reservoir_rows": _packed_floats(kept_rows),
            "reservoir_predictions": kept_predictions.tolist(),
        }
        return whole, np.sort(all_keys)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowSketch:
        columns = [str(c) for c in d["reservoir_columns"]]
        keys = _floats_from_json(d["reservoir_keys"]).reshape(-1)
        rows = _rows_shaped(_floats_from_json(d["reservoir_rows"]), len(keys), len(columns))
        if len(keys) != len(rows):
            raise ValueError(f"reservoir: {len(keys)} keys for {len(rows)} rows")
        t_min, t_max = d["event_time_min"], d["event_time_max"]
        # checkpoints written before the field (or with a damaged one): no prediction per row
        saved = d.get("reservoir_predictions")
        predictions = np.full(len(rows), None, dtype=object)
        if isinstance(saved, list) and len(saved) == len(rows):
            predictions[:] = [None if v is None else str(v) for v in saved]
        return cls(
            model=str(d["model"]),
            model_version=str(d["model_version"]),
            window_start=float(d["window_start"]),
            window_end=float(d["window_end"]),
            profile_fingerprint=str(d["profile_fingerprint"]),
            numeric={k: NumericSketch.from_dict(v) for k, v in d["numeric"].items()},
            categorical={k: CategoricalSketch.from_dict(v) for k, v in d["categorical"].items()},
            reservoir_columns=columns,
            reservoir_keys=keys,
            reservoir_rows=rows,
            reservoir_size=int(d["reservoir_size"]),
            seed=int(d["seed"]),
            n_updates=int(d["n_updates"]),
            n_records=int(d["n_records"]),
            event_time_min=math.inf if t_min is None else float(t_min),
            event_time_max=-math.inf if t_max is None else float(t_max),
            class_counts={str(k): int(v) for k, v in d["class_counts"].items()},
            score_counts=np.asarray(d["score_counts"], dtype=np.int64),
            score_counts_by_class={
                str(k): np.asarray(v, dtype=np.int64) for k, v in d["score_counts_by_class"].items()
            },
            score_sum=float(d["score_sum"]),
            score_n=int(d["score_n"]),
            latency=LatencySketch.from_dict(d["latency"]),
            error_counts={str(k): int(v) for k, v in d["error_counts"].items()},
            attribution_abs_sum={str(k): float(v) for k, v in d["attribution_abs_sum"].items()},
            attribution_n={str(k): int(v) for k, v in d["attribution_n"].items()},
            probability_counts={
                str(k): np.asarray(v, dtype=np.int64)
                for k, v in (d.get("probability_counts") or {}).items()
            },
            prediction_values=None
            if d.get("prediction_values") is None
            else NumericSketch.from_dict(d["prediction_values"]),
            absent_counts={str(k): int(v) for k, v in (d.get("absent_counts") or {}).items()},
            new_features={str(k): int(v) for k, v in (d.get("new_features") or {}).items()},
            reservoir_predictions=predictions,
        )


def _empty_numeric(p: NumericProfile) -> NumericSketch:
    fine = None if p.fine_cuts is None else np.zeros(len(p.fine_cuts) + 3, np.int64)
    return NumericSketch(
        p.cuts, p.low, p.high, np.zeros(len(p.cuts) + 3, np.int64), fine_cuts=p.fine_cuts,
        fine_counts=fine,
    )  # fmt: skip


def error_type(text: Any) -> str:
    """Error type of an error text: what precedes the first ':' (at most 100 characters).

    >>> error_type("TimeoutError: upstream took 3s")
    'TimeoutError'
    """
    s = str(text)
    return s.split(":", 1)[0].strip()[:ERROR_TYPE_CHARS] or "error"


def _class_text(value: Any, seen: dict[Any, str | None]) -> str | None:
    """``value``'s class as text (``class_value``), None when missing; ``seen`` memoises it,
    since a batch holds few distinct predictions (an unhashable value is not memoised)."""
    try:
        return seen[value]
    except KeyError:
        cls = class_value(value)
        seen[value] = text = None if cls is None else str(cls)
        return text
    except TypeError:
        cls = class_value(value)
        return None if cls is None else str(cls)


def _smallest(
    keys: NDArray[np.float64],
    rows: NDArray[np.float64],
    k: int,
    predictions: NDArray[np.object_],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.object_]]:
    """The k rows (and their predictions) with the smallest keys, sorted by key (a canonical
    order)."""
    keep = np.argpartition(keys, k - 1)[:k] if len(keys) > k else np.arange(len(keys))
    keep = keep[np.argsort(keys[keep], kind="stable")]
    return keys[keep], rows[keep], predictions[keep]


def uniform_from_keys(record_keys: NDArray[np.uint64]) -> NDArray[np.float64]:
    """A uniform number in [0, 1) per record identity: splitmix64, vectorised.

    >>> uniform_from_keys(np.array([1, 2, 1], dtype=np.uint64)).round(6).tolist()
    [0.566562, 0.59119, 0.566562]
    """
    with np.errstate(over="ignore"):
        z = record_keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
