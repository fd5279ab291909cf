"""Reference profiles: what "normal" looks like for one model version.

A :class:`ReferenceProfile` is computed once from the training or validation data of a model
version and then compared with every window (:mod:`driftline.detectors.evaluate`). It holds

* per numeric feature: quantile bin edges (default 20 bins, as Evidently and the PSI
  literature use 10-20), the reference counts on those bins, count/mean/variance/min/max and
  the number of missing (NaN) and invalid (+/-inf or not a number) values;
* per categorical feature: the vocabulary (every category up to ``vocabulary_size``, default
  10,000, the most frequent) and category counts, the ``max_categories`` (default 50) most frequent
  kept by name and the rest folded into ``__other__``;
* a uniform joint sample of the numeric rows (default 2,000 rows, missing values kept as NaN)
  for the exact KS, Wasserstein, MMD and PCA tests;
* predicted-class counts, a score histogram (50 equal bins over [0, 1]) and, when labels
  are given, baseline performance (accuracy, positive rate);
* the PCA reconstruction model fitted once on the sample;
* reference feature importances per source (``importance``, :mod:`driftline.detectors.importance`):
  mean |attribution| per feature when the training records carry attributions (e.g. SHAP
  values), and the mutual information of each feature with the label and with the prediction
  (on a 10,000-row sample, bias-corrected) when those are given.

Bins, for a numeric feature with reference minimum ``low`` and maximum ``high``::

    bin 0                    x < low                   (underflow)
    bin i (1..len(cuts)+1)   low <= x <= high, searchsorted(cuts, x, side="right") + 1
    bin len(cuts) + 2        x > high                  (overflow)

``cuts`` are the interior quantiles, deduplicated; when a feature has at most ``bins``
distinct values (discrete data) the cuts are the midpoints between them, so each value
gets its own bin. A constant feature has a single interior bin.

One module of ~850 lines on purpose: the profile is the contract every window is compared
against, and its building, its bins and its JSON form (with the version checks) must agree
field for field; split, a field added in one place and not the other breaks old profiles.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from driftline.detectors.batch import RecordBatch
from driftline.detectors.normalise import (
    FEATURE_TYPES,
    FeatureType,
    boolean_column,
    category_column,
    class_value,
    infer_type,
    numeric_value,
)

Task = Literal["classification", "regression"]

__all__ = [
    "FORMAT_VERSION",
    "OTHER",
    "SCORE_BINS",
    "CategoricalProfile",
    "NumericProfile",
    "ProfileFormatError",
    "ReferenceProfile",
    "bin_counts",
    "bin_index",
    "score_bin_index",
    "standardised_sample",
]

FORMAT_VERSION = 1
OTHER = "__other__"
SCORE_BINS = 50
FINE_BINS = 200
"""Quantile bins of the fine histogram behind the numeric effect sizes (mergeable, every
record counts; ~1.6 KiB per feature in a sketch)."""
MAX_CLASSES = 100


class ProfileFormatError(ValueError):
    """A serialised profile cannot be read (unknown format version or malformed content)."""


def bin_index(
    x: NDArray[np.float64], cuts: NDArray[np.float64], low: float, high: float
) -> NDArray[np.intp]:
    """Bin of each finite value on a profile's bins (see the module docstring).

    >>> bin_index(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]), np.array([1.0]), 0.0, 2.0).tolist()
    [0, 1, 1, 2, 2, 3]
    """
    idx = np.searchsorted(cuts, x, side="right") + 1
    idx[x < low] = 0
    idx[x > high] = len(cuts) + 2
    return idx


def bin_counts(
    x: NDArray[np.float64], cuts: NDArray[np.float64], low: float, high: float
) -> NDArray[np.int64]:
    """Counts of finite values per bin, equal to ``np.bincount(bin_index(...))``.

    Sorts the values and looks the few edges up in them (what ``np.histogram`` does), which
    is about three times faster than looking every value up among the edges.

    >>> bin_counts(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]), np.array([1.0]), 0.0, 2.0).tolist()
    [1, 2, 2, 1]
    """
    xs = np.sort(x)
    below = np.searchsorted(xs, np.concatenate(([low], cuts)), side="left")
    upto_high = np.searchsorted(xs, high, side="right")
    edges = np.append(below, [upto_high, xs.size]).astype(np.int64)
    counts: NDArray[np.int64] = np.diff(edges, prepend=0)
    return counts


def score_bin_index(score: NDArray[np.float64]) -> NDArray[np.intp]:
    """Bin of each finite score on 50 equal bins over [0, 1] (out-of-range values clipped)."""
    return np.clip((score * SCORE_BINS).astype(np.intp), 0, SCORE_BINS - 1)


@dataclass(frozen=True, slots=True)
class NumericProfile:
    """Reference summary of one numeric feature (``counts`` has ``len(cuts) + 3`` bins)."""

    cuts: NDArray[np.float64]
    low: float
    high: float
    counts: NDArray[np.int64]
    count: int
    missing: int
    invalid: int
    mean: float
    variance: float
    fine_cuts: NDArray[np.float64] | None = None
    """Finer quantile cuts (``FINE_BINS``) for effect sizes on the window's full histogram."""
    fine_counts: NDArray[np.int64] | None = None

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @classmethod
    def fit(cls, values: NDArray[np.float64], bins: int = 20) -> NumericProfile:
        values = np.asarray(values, dtype=np.float64)
        missing = int(np.isnan(values).sum())
        invalid = int(np.isinf(values).sum())
        x = values[np.isfinite(values)]
        if x.size == 0:
            return cls(np.empty(0), 0.0, 0.0, np.zeros(3, np.int64), 0, missing, invalid, 0.0, 0.0)
        low, high = float(x.min()), float(x.max())
        distinct = np.unique(x)
        if distinct.size <= bins:
            cuts = (distinct[:-1] + distinct[1:]) / 2.0
        else:
            cuts = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        if distinct.size <= FINE_BINS:
            fine_cuts = (distinct[:-1] + distinct[1:]) / 2.0
        else:
            fine_cuts = np.unique(np.quantile(x, np.linspace(0.0, 1.0, FINE_BINS + 1)[1:-1]))
        return cls(
            cuts=cuts,
            low=low,
            high=high,
            counts=bin_counts(x, cuts, low, high),
            count=int(x.size),
            missing=missing,
            invalid=invalid,
            mean=float(x.mean()),
            variance=float(x.var()),
            fine_cuts=fine_cuts,
            fine_counts=bin_counts(x, fine_cuts, low, high),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fine_cuts": None if self.fine_cuts is None else self.fine_cuts.tolist(),
            "fine_counts": None if self.fine_counts is None else self.fine_counts.tolist(),
            "cuts": self.cuts.tolist(),
            "low": self.low,
            "high": self.high,
            "counts": self.counts.tolist(),
            "count": self.count,
            "missing": self.missing,
            "invalid": self.invalid,
            "mean": self.mean,
            "variance": self.variance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        return cls(
            cuts=np.asarray(d["cuts"], dtype=np.float64),
            low=float(d["low"]),
            high=float(d["high"]),
            counts=np.asarray(d["counts"], dtype=np.int64),
            count=int(d["count"]),
            missing=int(d["missing"]),
            invalid=int(d["invalid"]),
            mean=float(d["mean"]),
            variance=float(d["variance"]),
            fine_cuts=None
            if d.get("fine_cuts") is None
            else np.asarray(d["fine_cuts"], dtype=np.float64),
            fine_counts=None
            if d.get("fine_counts") is None
            else np.asarray(d["fine_counts"], dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    """Reference category counts of one categorical feature (rare ones folded into ``__other__``)."""

    counts: dict[str, int]
    missing: int
    vocabulary: frozenset[str] | None = None
    """Every category of the reference up to ``VOCABULARY_SIZE`` (the most frequent), so
    that "unseen" means unseen; None in profiles built before it existed."""
    vocabulary_complete: bool = True

    @classmethod
    def fit(
        cls,
        values: NDArray[np.object_],
        max_categories: int = 50,
        vocabulary_size: int = 10_000,
    ) -> CategoricalProfile:
        present = [v for v in values.tolist() if v is not None]
        counter = Counter(str(v) for v in present)
        kept = dict(counter.most_common(max_categories))
        folded = sum(counter.values()) - sum(kept.values())
        counts = {k: int(v) for k, v in sorted(kept.items())}
        if folded or OTHER in counts:
            counts[OTHER] = counts.get(OTHER, 0) + int(folded)
        vocabulary = frozenset(k for k, _ in counter.most_common(vocabulary_size))
        return cls(
            counts=counts,
            missing=len(values) - len(present),
            vocabulary=vocabulary,
            vocabulary_complete=len(counter) <= vocabulary_size,
        )

    def known(self, category: str) -> bool:
        """Whether the reference had this category (by its vocabulary)."""
        if self.vocabulary is None:
            return category in self.counts and category != OTHER
        return category in self.vocabulary

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "missing": self.missing,
            "vocabulary": None if self.vocabulary is None else sorted(self.vocabulary),
            "vocabulary_complete": self.vocabulary_complete,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        vocabulary = d.get("vocabulary")
        return cls(
            counts={str(k): int(v) for k, v in d["counts"].items()},
            missing=int(d["missing"]),
            vocabulary=None if vocabulary is None else frozenset(str(v) for v in vocabulary),
            vocabulary_complete=bool(d.get("vocabulary_complete", True)),
        )


@dataclass(slots=True)
class ReferenceProfile:
    """The reference distribution of one model version, computed once, compared with every window.

    Build it with :meth:`from_columns`, :meth:`from_records`, :meth:`from_batch` or
    :meth:`from_csv`; store it with :meth:`save` / :meth:`load` (JSON with a
    ``format_version``; other versions are refused with :class:`ProfileFormatError`).

    Parameters (of the builders)
    ----------------------------
    bins
        Quantile bins per numeric feature (default 20).
    max_categories
        Distinct categories kept by name per categorical feature (default 50).
    sample_size
        Rows of the joint numeric sample (default 2,000: the two-sample KS test then
        resolves a difference of about 0.04 in the CDF at alpha=0.05).
    feature_types
        Overrides the inferred type of some features (``"numeric"``, ``"categorical"`` or
        ``"boolean"``); by default a feature whose present values are all booleans (or
        ``"true"``/``"false"``) is boolean, all numbers or numeric strings numeric, else
        categorical (:mod:`driftline.detectors.normalise`, the rules live records follow).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.from_columns(
    ...     {"amount": rng.normal(100.0, 10.0, 5_000), "country": rng.choice(["FR", "DE"], 5_000)},
    ...     model="fraud", model_version="3", bins=10, sample_size=500,
    ... )
    >>> profile.feature_types
    {'amount': 'numeric', 'country': 'categorical'}
    >>> len(profile.numeric["amount"].cuts), profile.sample.shape
    (9, (500, 1))
    >>> sorted(profile.categorical["country"].counts)
    ['DE', 'FR']
    >>> ReferenceProfile.from_json(profile.to_json()).numeric["amount"].count
    5000
    """

    model: str
    model_version: str
    feature_types: dict[str, FeatureType]
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    sample_columns: list[str]
    sample: NDArray[np.float64]
    n_records: int
    class_counts: dict[str, int] = field(default_factory=dict)
    score_counts: NDArray[np.int64] | None = None
    performance: dict[str, float | None] | None = None
    pca: dict[str, Any] | None = None
    probability_counts: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    """Per class: histogram of the class's probability on the 50 score bins (multiclass)."""
    prediction_values: NumericProfile | None = None
    """Regression models: the predicted value's distribution on quantile bins."""
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    """Reference importances per source (``attributions``, ``label_mi``, ``prediction_mi``):
    feature -> importance; absent sources had no data (not part of the fingerprint)."""
    bins: int = 20
    max_categories: int = 50
    seed: int = 0

    # -- builders ---------------------------------------------------------------------------

    @classmethod
    def from_batch(
        cls,
        batch: RecordBatch,
        *,
        model: str,
        model_version: str,
        labels: ArrayLike | None = None,
        bins: int = 20,
        max_categories: int = 50,
        sample_size: int = 2_000,
        seed: int = 0,
        fit_pca: bool = True,
        task: Task | None = None,
        feature_types: Mapping[str, FeatureType] | None = None,
        vocabulary_size: int = 10_000,
        importance: bool = True,
    ) -> ReferenceProfile:
        """Profile of a :class:`RecordBatch` (its schema decides the feature types).

        ``task`` is ``"classification"`` or ``"regression"``; by default a model whose
        predictions are all numbers with more than ``MAX_CLASSES`` distinct values is a
        regression model: its predicted values are profiled like a numeric feature.
        ``importance=False`` skips the reference importances (mutual information costs about
        1 ms per feature and source).
        """
        if bins < 1 or max_categories < 1 or sample_size < 1:
            raise ValueError("bins, max_categories and sample_size must be >= 1")
        n = len(batch)
        numeric = {k: NumericProfile.fit(v, bins) for k, v in batch.numeric.items()}
        categorical = {
            k: CategoricalProfile.fit(v, max_categories, vocabulary_size)
            for k, v in batch.categorical.items()
        }
        types: dict[str, FeatureType] = {k: "numeric" for k in batch.numeric}
        types.update(
            {
                k: "boolean" if (feature_types or {}).get(k) == "boolean" else "categorical"
                for k in batch.categorical
            }
        )
        columns = list(batch.numeric)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(sample_size, n), replace=False))
        sample = np.empty((len(rows), len(columns)), dtype=np.float64)
        for j, name in enumerate(columns):
            col = batch.numeric[name][rows]
            sample[:, j] = np.where(np.isfinite(col), col, np.nan)

        if task is None:
            task = _infer_task(batch.prediction)
        if task not in ("classification", "regression"):
            raise ValueError(f"task: expected 'classification' or 'regression', got {task!r}")
        prediction_values = None
        if task == "regression":
            prediction_values = NumericProfile.fit(prediction_as_float(batch.prediction), bins)
            class_counts: dict[str, int] = {}
        else:
            class_counts = _capped_counts(batch.prediction, MAX_CLASSES)
        probability_counts = {
            name: np.bincount(score_bin_index(col[np.isfinite(col)]), minlength=SCORE_BINS).astype(
                np.int64
            )
            for name, col in (batch.probabilities or {}).items()
        }
        score_counts = None
        if batch.score is not None:
            s = batch.score[np.isfinite(batch.score)]
            score_counts = np.bincount(score_bin_index(s), minlength=SCORE_BINS).astype(np.int64)
        performance = None
        if labels is not None:
            performance = _baseline_performance(batch.prediction, np.asarray(labels, dtype=object))
        profile = cls(
            model=model,
            model_version=model_version,
            feature_types=types,
            numeric=numeric,
            categorical=categorical,
            sample_columns=columns,
            sample=sample,
            n_records=n,
            class_counts=class_counts,
            score_counts=score_counts,
            performance=performance,
            probability_counts=probability_counts,
            prediction_values=prediction_values,
            bins=bins,
            max_categories=max_categories,
            seed=seed,
        )
        if importance:
            profile.importance = _reference_importance(batch, labels, task, seed)
        if fit_pca:
            profile.pca = _fit_pca(profile)
        return profile

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, ArrayLike],
        *,
        model: str,
        model_version: str,
        prediction: ArrayLike | None = None,
        score: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        feature_types: Mapping[str, FeatureType] | None = None,
        probabilities: Mapping[str, ArrayLike] | None = None,
        attributions: Mapping[str, ArrayLike] | None = None,
        **options: Any,
    ) -> ReferenceProfile:
        """Profile of feature columns given as arrays (or lists) of equal length;
        ``probabilities`` maps each class to its probability column (multiclass models);
        ``attributions`` maps features to their attribution columns (e.g. SHAP values)."""
        arrays = {k: np.asarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        types = {k: _infer_type(v) for k, v in arrays.items()}
        types.update(_check_types(feature_types, arrays))
        numeric = {k: _as_float(arrays[k]) for k, t in types.items() if t == "numeric"}
        categorical = {
            k: (boolean_column if t == "boolean" else category_column)(arrays[k].tolist())
            for k, t in types.items()
            if t != "numeric"
        }
        pred = np.empty(n, dtype=object)
        if prediction is not None:
            pred[:] = np.asarray(prediction, dtype=object)
        batch = RecordBatch(
            numeric=numeric,
            categorical=categorical,
            event_time=np.zeros(n),
            prediction=pred,
            score=None if score is None else np.asarray(score, dtype=np.float64),
            probabilities=None
            if not probabilities
            else {str(k): np.asarray(v, dtype=np.float64) for k, v in probabilities.items()},
            attributions=None
            if not attributions
            else {str(k): _as_float(np.asarray(v)) for k, v in attributions.items()},
        )
        return cls.from_batch(
            batch,
            model=model,
            model_version=model_version,
            labels=labels,
            feature_types=types,
            **options,
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        model: str,
        model_version: str,
        labels: ArrayLike | None = None,
        feature_types: Mapping[str, FeatureType] | None = None,
        **options: Any,
    ) -> ReferenceProfile:
        """Profile of prediction records (dicts, see :mod:`driftline.detectors.batch`)."""
        names = sorted({k for r in records for k in (r.get("features") or {})})
        types: dict[str, FeatureType] = {
            name: infer_type((r.get("features") or {}).get(name) for r in records) for name in names
        }
        types.update(_check_types(feature_types, types))
        batch = RecordBatch.from_records(records, types)
        return cls.from_batch(
            batch,
            model=model,
            model_version=model_version,
            labels=labels,
            feature_types=types,
            **options,
        )

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        model: str,
        model_version: str,
        prediction_column: str | None = None,
        score_column: str | None = None,
        label_column: str | None = None,
        exclude: Sequence[str] = (),
        feature_types: Mapping[str, FeatureType] | None = None,
        **options: Any,
    ) -> ReferenceProfile:
        """Profile of a CSV file with a header row; empty cells are missing values.

        Every column that is not the prediction, score or label column (nor in ``exclude``)
        is a feature; it is numeric when every non-empty cell parses as a number.
        """
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty CSV file (no header row)")
            rows = list(reader)
        cols: dict[str, list[str | None]] = {
            h: [(r[i] if i < len(r) and r[i] != "" else None) for r in rows]
            for i, h in enumerate(header)
        }
        special = {prediction_column, score_column, label_column, *exclude}
        features: dict[str, NDArray[Any]] = {}
        for name, values in cols.items():
            if name in special:
                continue
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            features[name] = arr
        types = {k: infer_type(v.tolist()) for k, v in features.items()}
        types.update(_check_types(feature_types, features))
        prediction = _object_array(cols[prediction_column]) if prediction_column else None
        score = None
        if score_column:
            score = np.array([_parse_float(v) for v in cols[score_column]], dtype=np.float64)
        labels = _object_array(cols[label_column]) if label_column else None
        return cls.from_columns(
            features,
            model=model,
            model_version=model_version,
            prediction=prediction,
            score=score,
            labels=labels,
            feature_types=types,
            **options,
        )

    # -- serialisation ----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """Short hash of the bins and categories: sketches built on this profile carry it."""
        layout: dict[str, Any] = {
            "numeric": {k: [v.cuts.tolist(), v.low, v.high] for k, v in self.numeric.items()},
            "categorical": {k: sorted(v.counts) for k, v in self.categorical.items()},
        }
        fine = {  # hashed bytes: the 200 cuts per feature as JSON cost ~2 ms per call
            k: hashlib.sha256(v.fine_cuts.tobytes()).hexdigest()[:16]
            for k, v in self.numeric.items()
            if v.fine_cuts is not None
        }
        if fine:  # absent in older profiles: their fingerprints unchanged
            layout["fine"] = fine
        if self.prediction_values is not None:  # absent otherwise: older fingerprints unchanged
            p = self.prediction_values
            layout["prediction"] = {"values": [p.cuts.tolist(), p.low, p.high]}
        blob = json.dumps(layout, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "model_version": self.model_version,
            "feature_types": dict(self.feature_types),
            "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
            "categorical": {k: v.to_dict() for k, v in self.categorical.items()},
            "sample_columns": list(self.sample_columns),
            "sample": [[None if math.isnan(x) else x for x in row] for row in self.sample.tolist()],
            "n_records": self.n_records,
            "class_counts": dict(self.class_counts),
            "score_counts": None if self.score_counts is None else self.score_counts.tolist(),
            "performance": self.performance,
            "pca": self.pca,
            "probability_counts": {k: v.tolist() for k, v in self.probability_counts.items()},
            "prediction_values": None
            if self.prediction_values is None
            else self.prediction_values.to_dict(),
            "importance": {k: dict(v) for k, v in self.importance.items()},
            "bins": self.bins,
            "max_categories": self.max_categories,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        version = d.get("format_version") if isinstance(d, Mapping) else None
        if version != FORMAT_VERSION:
            raise ProfileFormatError(
                f"reference profile format_version {version!r} is not supported "
                f"(this driftline reads format_version {FORMAT_VERSION}); rebuild the profile"
            )
        try:
            columns = [str(c) for c in d["sample_columns"]]
            sample = np.array(
                [[math.nan if x is None else float(x) for x in row] for row in d["sample"]],
                dtype=np.float64,
            ).reshape(-1, len(columns))
            score_counts = d.get("score_counts")
            return cls(
                model=str(d["model"]),
                model_version=str(d["model_version"]),
                feature_types=_check_types(d["feature_types"], d["feature_types"]),
                numeric={k: NumericProfile.from_dict(v) for k, v in d["numeric"].items()},
                categorical={
                    k: CategoricalProfile.from_dict(v) for k, v in d["categorical"].items()
                },
                sample_columns=columns,
                sample=sample,
                n_records=int(d["n_records"]),
                class_counts={str(k): int(v) for k, v in d.get("class_counts", {}).items()},
                score_counts=None
                if score_counts is None
                else np.asarray(score_counts, dtype=np.int64),
                performance=d.get("performance"),
                pca=d.get("pca"),
                probability_counts={
                    str(k): np.asarray(v, dtype=np.int64)
                    for k, v in (d.get("probability_counts") or {}).items()
                },
                prediction_values=None
                if d.get("prediction_values") is None
                else NumericProfile.from_dict(d["prediction_values"]),
                importance={
                    str(source): {str(f): float(v) for f, v in values.items()}
                    for source, values in (d.get("importance") or {}).items()
                },
                bins=int(d.get("bins", 20)),
                max_categories=int(d.get("max_categories", 50)),
                seed=int(d.get("seed", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileFormatError(f"malformed reference profile: {exc!r}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


# -- helpers ---------------------------------------------------------------------------------


def parse_feature_types(items: Sequence[str]) -> dict[str, FeatureType]:
    """``NAME=TYPE`` options (``--feature-type``) as a mapping; a clear error otherwise.

    >>> parse_feature_types(["zip=categorical", "is_vip=boolean"])
    {'zip': 'categorical', 'is_vip': 'boolean'}
    >>> parse_feature_types(["zip"])
    Traceback (most recent call last):
    ...
    ValueError: --feature-type zip: expected NAME=TYPE with TYPE numeric, categorical or boolean
    """
    out: dict[str, FeatureType] = {}
    for item in items:
        name, sep, kind = item.partition("=")
        if not sep or not name.strip() or kind.strip() not in FEATURE_TYPES:
            raise ValueError(
                f"--feature-type {item}: expected NAME=TYPE with TYPE numeric, categorical "
                "or boolean"
            )
        out[name.strip()] = _check_types({"x": kind.strip()}, {"x": 0})["x"]
    return out


def describe_types(profile: ReferenceProfile) -> str:
    """The chosen type of every feature, one line each (printed at the end of a build)."""
    width = max((len(k) for k in profile.feature_types), default=0)
    return "\n".join(
        f"  {name:<{width}}  {kind}" for name, kind in sorted(profile.feature_types.items())
    )


def _check_types(
    feature_types: Mapping[str, Any] | None, known: Mapping[str, Any]
) -> dict[str, FeatureType]:
    out: dict[str, FeatureType] = {}
    for name, kind in (feature_types or {}).items():
        if name not in known:
            raise ValueError(f"feature_types.{name}: no such feature")
        if kind == "numeric":
            out[name] = "numeric"
        elif kind == "categorical":
            out[name] = "categorical"
        elif kind == "boolean":
            out[name] = "boolean"
        else:
            raise ValueError(
                f"feature_types.{name}: expected 'numeric', 'categorical' or 'boolean', "
                f"got {kind!r}"
            )
    return out


def _object_array(values: Sequence[Any]) -> NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _infer_type(values: NDArray[Any]) -> FeatureType:
    if values.dtype.kind == "b":
        return "boolean"
    if values.dtype.kind in "iuf":
        return "numeric"
    return infer_type(values.tolist())


def _parse_float(value: str | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.inf


def _as_float(values: NDArray[Any]) -> NDArray[np.float64]:
    if values.dtype.kind in "iufb":
        return values.astype(np.float64)
    return np.array([numeric_value(v) for v in values.tolist()], dtype=np.float64)


def _infer_task(prediction: NDArray[Any]) -> Task:
    present = [v for v in prediction.tolist() if v is not None]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    return (
        "regression"
        if present and numbers and len(set(present)) > MAX_CLASSES
        else "classification"
    )


def prediction_as_float(prediction: NDArray[Any]) -> NDArray[np.float64]:
    """Predicted values of a regression model as floats (NaN when missing, inf when not a
    number, the convention of numeric features)."""
    return _as_float(prediction.astype(object))


def _capped_counts(values: NDArray[Any], cap: int) -> dict[str, int]:
    counter = Counter(str(v) for v in values.tolist() if v is not None)
    kept = dict(counter.most_common(cap))
    folded = sum(counter.values()) - sum(kept.values())
    if folded:
        kept[OTHER] = kept.get(OTHER, 0) + folded
    return {k: int(v) for k, v in kept.items()}


def _baseline_performance(
    prediction: NDArray[Any], labels: NDArray[Any]
) -> dict[str, float | None]:
    """Reference metrics with the same definitions as the windows' (performance module)."""
    from driftline.detectors.performance import classification_metrics

    if len(labels) != len(prediction):
        raise ValueError(f"labels has {len(labels)} rows, expected {len(prediction)}")
    typed_labels = _object_array([class_value(v) for v in labels.tolist()])
    typed_prediction = _object_array([class_value(v) for v in prediction.tolist()])
    return dict(classification_metrics(typed_labels, typed_prediction))


def _reference_importance(
    batch: RecordBatch, labels: ArrayLike | None, task: Task, seed: int
) -> dict[str, dict[str, float]]:
    """Importances per source of the reference records (see :mod:`~driftline.detectors.importance`)."""
    from driftline.detectors.importance import reference_importance

    classification = task == "classification"
    prediction: NDArray[Any] = batch.prediction
    if not classification:
        prediction = prediction_as_float(batch.prediction)
    else:  # one class per spelling (True, "true", 1, "1.0"), for predictions as for labels
        prediction = _object_array([class_value(v) for v in batch.prediction.tolist()])
        if labels is not None:
            labels = np.asarray([class_value(v) for v in np.asarray(labels, dtype=object)], object)
    return reference_importance(
        {**batch.numeric, **batch.categorical},
        categorical=set(batch.categorical),
        attributions=batch.attributions,
        labels=labels,
        prediction=prediction,
        target_categorical=classification,
        seed=seed,
    )


def _fit_pca(profile: ReferenceProfile) -> dict[str, Any] | None:
    """PCA reconstruction model on the standardised, mean-imputed sample (needs >= 2 columns)."""
    from driftline.detectors.stats import PCAReconstruction

    matrix = standardised_sample(profile, profile.sample)
    if matrix.shape[1] < 2 or matrix.shape[0] < 10:
        return None
    result: dict[str, Any] = PCAReconstruction.fit(matrix).to_dict()
    return result


def standardised_sample(
    profile: ReferenceProfile, rows: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Rows of the profile's sample columns, standardised by the reference mean/std.

    Missing values become 0 (the reference mean); constant features get a unit std. Used for
    the multivariate tests so that every feature weighs the same.
    """
    if rows.shape[1] == 0:
        return rows
    mean = np.array([profile.numeric[c].mean for c in profile.sample_columns])
    std = np.array([profile.numeric[c].std for c in profile.sample_columns])
    std = np.where(std > 0, std, 1.0)
    z = (rows - mean) / std
    return np.where(np.isfinite(z), z, 0.0)
