"""Columnar batches of prediction records.

The streaming layer parses prediction records (plain dicts) and calls
:meth:`RecordBatch.from_records` once per batch; everything downstream (window
assignment, sketch updates) then works on numpy arrays, never record by record.

A prediction record is a dict with these fields::

    prediction_id   str
    model           str
    model_version   str
    timestamp       epoch seconds (float) or ISO-8601 string (naive = UTC)
    features        {name: number | str | None}
    prediction      class label (str or number)
    score           float in [0, 1]            } one of the two, optional
    probabilities   {class: probability}       } score = probability of the predicted class
    attributions    {feature: float}           optional
    latency_ms      float                      optional
    error           str                        optional

Missing and invalid values (the convention used by the whole detection core):

* numeric feature: ``NaN`` means *missing* (``None``, absent key, or NaN sent);
  ``+inf``/``-inf`` mean *invalid* (an infinite number was sent, or a value that is
  not a number such as ``"abc"``, stored as ``+inf``). Booleans count as 1.0/0.0.
* categorical (and boolean) feature: ``None`` means missing; other values are normalised
  to their category text by :mod:`driftline.detectors.normalise` (``True`` and ``"True"``
  are ``"true"``, NaN and ``"null"`` are missing, ``1.0`` is ``"1"``).

Slightly above 400 lines: the columns (`RecordBatch`) and the C-level gathering passes that
build them (`_gather`, `_feature_columns`) are one hot path, measured together
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from driftline.detectors.normalise import (
    FeatureType,
    boolean_column,
    category_column,
    numeric_value,
)

MAX_PROBABILITY_CLASSES = 20
MAX_EXTRA_FEATURES = 50

__all__ = ["FeatureType", "RecordBatch", "parse_timestamp"]


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC); NaN if unusable.

    >>> parse_timestamp("1970-01-01T00:01:00Z")
    60.0
    >>> parse_timestamp(12.5)
    12.5
    """
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return math.nan
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return math.nan


_to_float = numeric_value
"""One numeric feature value: NaN when missing, +inf when not a number."""


def _float_column(values: Sequence[Any]) -> NDArray[np.float64]:
    """Fast path through numpy (None becomes NaN); per-value fallback on odd inputs."""
    try:
        out = np.array(values, dtype=np.float64)
        if out.ndim == 1:
            return out
    except (TypeError, ValueError):
        pass
    return np.array([_to_float(v) for v in values], dtype=np.float64)


@dataclass(slots=True)
class RecordBatch:
    """A columnar batch of prediction records (one numpy array per field).

    Parameters
    ----------
    numeric
        Numeric feature columns; NaN = missing, +/-inf = invalid.
    categorical
        Categorical feature columns (``object`` arrays of ``str``); None = missing.
    event_time
        Event time in epoch seconds (NaN when the timestamp was unusable).
    prediction
        Predicted class labels as given (``object`` array).
    score
        Model score in [0, 1] (NaN when absent), or None when no record has one.
    latency_seconds
        Serving latency (NaN when absent).
    error
        Error text (None when the record has no error).
    attributions
        Per-feature attributions (NaN when absent), or None when no record has any.

    Examples
    --------
    >>> records = [
    ...     {"prediction_id": "a", "model": "fraud", "model_version": "1", "timestamp": 10.0,
    ...      "features": {"amount": 12.5, "country": "FR"}, "prediction": "ok", "score": 0.1},
    ...     {"prediction_id": "b", "model": "fraud", "model_version": "1",
    ...      "timestamp": "1970-01-01T00:00:20Z",
    ...      "features": {"amount": None, "country": "DE"}, "prediction": "fraud",
    ...      "probabilities": {"ok": 0.3, "fraud": 0.7}, "latency_ms": 4.0},
    ... ]
    >>> batch = RecordBatch.from_records(records, {"amount": "numeric", "country": "categorical"})
    >>> len(batch), batch.numeric["amount"].tolist(), batch.event_time.tolist()
    (2, [12.5, nan], [10.0, 20.0])
    >>> batch.score.tolist(), batch.latency_seconds.tolist()
    ([0.1, 0.7], [nan, 0.004])
    >>> batch.take(batch.event_time >= 15).categorical["country"].tolist()
    ['DE']
    """

    numeric: dict[str, NDArray[np.float64]]
    categorical: dict[str, NDArray[np.object_]]
    event_time: NDArray[np.float64]
    prediction: NDArray[np.object_]
    score: NDArray[np.float64] | None = None
    latency_seconds: NDArray[np.float64] = field(
        default_factory=lambda: np.empty(0, dtype=np.float64)
    )
    error: NDArray[np.object_] = field(default_factory=lambda: np.empty(0, dtype=object))
    attributions: dict[str, NDArray[np.float64]] | None = None
    record_keys: NDArray[np.uint64] | None = None
    """Stable identity per record (e.g. partition, offset, index): decides the sketch sample."""
    absent: dict[str, NDArray[np.bool_]] | None = None
    """Per monitored feature whose key some record lacks: True where the key was absent (not
    sent at all, as opposed to sent as null). None when unknown (built from columns)."""
    extra: dict[str, NDArray[np.bool_]] | None = None
    """Keys of ``features`` outside the schema (new features; at most ``MAX_EXTRA_FEATURES``):
    True where the record carried it."""
    probabilities: dict[str, NDArray[np.float64]] | None = None
    """Per-class probability (NaN when a record has none for the class), at most
    ``MAX_PROBABILITY_CLASSES`` classes (the first seen), or None when no record has any."""

    def __post_init__(self) -> None:
        n = len(self.event_time)
        if len(self.latency_seconds) == 0 and n:
            self.latency_seconds = np.full(n, np.nan)
        if len(self.error) == 0 and n:
            self.error = np.full(n, None, dtype=object)
        columns: dict[str, Any] = {
            "prediction": self.prediction,
            "latency_seconds": self.latency_seconds,
            "error": self.error,
        }
        if self.score is not None:
            columns["score"] = self.score
        if self.record_keys is not None:
            columns["record_keys"] = self.record_keys
        columns.update({f"numeric.{k}": v for k, v in self.numeric.items()})
        columns.update({f"categorical.{k}": v for k, v in self.categorical.items()})
        if self.attributions is not None:
            columns.update({f"attributions.{k}": v for k, v in self.attributions.items()})
        if self.probabilities is not None:
            columns.update({f"probabilities.{k}": v for k, v in self.probabilities.items()})
        for prefix, masks in (("absent", self.absent), ("extra", self.extra)):
            columns.update({f"{prefix}.{k}": v for k, v in (masks or {}).items()})
        for name, col in columns.items():
            if len(col) != n:
                raise ValueError(f"RecordBatch column {name!r} has {len(col)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.event_time)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        schema: Mapping[str, FeatureType],
        record_keys: NDArray[np.uint64] | None = None,
    ) -> RecordBatch:
        """Build a batch from parsed prediction records.

        ``schema`` maps each monitored feature to ``"numeric"``, ``"categorical"`` or
        ``"boolean"`` (typically ``profile.feature_types``); features outside it are ignored.
        Values are normalised by :mod:`driftline.detectors.normalise` (boolean features are
        categorical columns of ``"true"``/``"false"``).
        """
        n = len(records)
        kinds = set(map(type, records))
        columnar = [k for k in kinds if hasattr(k, "gather_columns")]
        if columnar and len(kinds) == 1:
            # records that hand over their columns themselves (streams/formats/structs.py)
            top, layout, values, absent, extra = columnar[0].gather_columns(
                records, _TOP_LEVEL, schema, MAX_EXTRA_FEATURES
            )
        else:
            if columnar:  # mixed with dicts: as dicts
                records = [cast(Any, r).to_dict() if type(r) in columnar else r for r in records]
            top, layout = _gather(records, _TOP_LEVEL)
            feats = top[0] if all(top[0]) else [f or {} for f in top[0]]
            values, absent, extra = _feature_columns(feats, schema)
        raw_ts, raw_prediction, raw_score = top[1:4]
        raw_probabilities, raw_latency, raw_error, attr_rows = top[4:]
        numeric = {
            name: _float_column(values[name]) for name, kind in schema.items() if kind == "numeric"
        }
        categorical = {
            # an object array: normalised already (by `gather_columns`)
            name: values[name]
            if isinstance(values[name], np.ndarray)
            else (boolean_column if kind == "boolean" else category_column)(values[name])
            for name, kind in schema.items()
            if kind in ("categorical", "boolean")
        }
        try:
            event_time = np.array(raw_ts, dtype=np.float64)
        except (TypeError, ValueError):
            event_time = np.array([parse_timestamp(t) for t in raw_ts], dtype=np.float64)
        prediction = np.empty(n, dtype=object)
        prediction[:] = list(raw_prediction)

        score: NDArray[np.float64] | None = None
        if (
            ("score" in layout or "probabilities" in layout)
            if layout is not None
            else any("score" in r or "probabilities" in r for r in records)
        ):
            score = _score_column(records, raw_score)
        latency = _float_column(raw_latency) / 1000.0
        error = np.empty(n, dtype=object)
        error[:] = [e or None for e in raw_error] if any(raw_error) else [None] * n

        attributions: dict[str, NDArray[np.float64]] | None = None
        if any(attr_rows):
            names = sorted({k for a in attr_rows if a for k in a})
            attributions = {
                k: _float_column([a.get(k) if a else None for a in attr_rows]) for k in names
            }
        return cls(
            numeric=numeric,
            categorical=categorical,
            event_time=event_time,
            prediction=prediction,
            score=score,
            latency_seconds=latency,
            error=error,
            attributions=attributions,
            record_keys=record_keys,
            probabilities=_probability_columns(raw_probabilities),
            absent=absent,
            extra=extra,
        )

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer[Any]]) -> RecordBatch:
        """The rows selected by a boolean mask or an index array (e.g. one event-time window)."""
        return RecordBatch(
            numeric={k: v[index] for k, v in self.numeric.items()},
            categorical={k: v[index] for k, v in self.categorical.items()},
            event_time=self.event_time[index],
            prediction=self.prediction[index],
            score=None if self.score is None else self.score[index],
            latency_seconds=self.latency_seconds[index],
            error=self.error[index],
            attributions=None
            if self.attributions is None
            else {k: v[index] for k, v in self.attributions.items()},
            record_keys=None if self.record_keys is None else self.record_keys[index],
            probabilities=None
            if self.probabilities is None
            else {k: v[index] for k, v in self.probabilities.items()},
            absent=None if self.absent is None else {k: v[index] for k, v in self.absent.items()},
            extra=None if self.extra is None else {k: v[index] for k, v in self.extra.items()},
        )


_TOP_LEVEL = (
    "features",
    "timestamp",
    "prediction",
    "score",
    "probabilities",
    "latency_ms",
    "error",
    "attributions",
)


def _gather(
    rows: Sequence[Mapping[Any, Any]], names: Sequence[Any]
) -> tuple[list[Sequence[Any]], set[Any] | None]:
    """``[[row.get(name) for row in rows] for name in names]``, and the rows' common keys when
    every row has exactly the same keys (None otherwise).

    Records off the wire nearly always share one layout; then a C-level pass per name
    (``map(itemgetter(name), rows)``) replaces a Python-level ``get`` per row and name, and no
    object is allocated per row (a tuple per row, with ``zip``, woke the garbage collector).

    >>> columns, keys = _gather([{"a": 1, "b": 2}, {"b": 3, "a": 4}], ["b", "c"])
    >>> columns, sorted(keys)
    ([[2, 3], [None, None]], ['a', 'b'])
    >>> _gather([{"a": 1}, {"b": 3}], ["a"])
    ([[1, None]], None)
    """
    n = len(rows)
    union: set[Any] = set().union(*rows) if n else set()
    if not set(map(len, rows)) <= {len(union)}:  # some row lacks a key another one has
        return [[row.get(name) for row in rows] for name in names], None
    missing = [None] * n
    return [
        list(map(itemgetter(name), rows)) if name in union else missing for name in names
    ], union


def _feature_columns(
    feats: Sequence[Mapping[str, Any]], schema: Mapping[str, Any]
) -> tuple[dict[str, Sequence[Any]], dict[str, NDArray[np.bool_]], dict[str, NDArray[np.bool_]]]:
    """Each monitored feature's values (None where absent), where monitored keys are absent,
    and where keys outside the schema are present (at most ``MAX_EXTRA_FEATURES``).

    When every record has the same keys (the common case) the masks are constant and the
    values are gathered in C-level passes (`_gather`).
    """
    n = len(feats)
    names = list(schema)
    if set(map(len, feats)) == {len(names)}:
        try:  # every record has every monitored key and no other one: nothing is absent
            return {name: list(map(itemgetter(name), feats)) for name in names}, {}, {}
        except KeyError:
            pass
    columns, union = _gather(feats, names)
    values = dict(zip(names, columns, strict=True))
    if union is not None:
        absent = {name: np.ones(n, dtype=bool) for name in schema if name not in union}
        extra_names = sorted(str(k) for k in union if k not in schema)[:MAX_EXTRA_FEATURES]
        return values, absent, {name: np.ones(n, dtype=bool) for name in extra_names}
    union = set().union(*feats)
    absent = {}
    for name in schema:
        mask = np.array([name not in f for f in feats], dtype=bool)
        if mask.any():
            absent[name] = mask
    extra = {
        str(name): np.array([name in f for f in feats], dtype=bool)
        for name in sorted((k for k in union if k not in schema), key=str)[:MAX_EXTRA_FEATURES]
    }
    return values, absent, extra


def _score_column(
    records: Sequence[Mapping[str, Any]], raw_score: Sequence[Any]
) -> NDArray[np.float64]:
    """Each record's score (`_record_score`); at once when every record has a numeric score."""
    if set(map(type, raw_score)) <= {float, int}:
        return np.array(raw_score, dtype=np.float64)
    return np.array([_record_score(r) for r in records], dtype=np.float64)


def _probability_columns(rows: Sequence[Any]) -> dict[str, NDArray[np.float64]] | None:
    """One column per class of the records' ``probabilities`` (``rows``: each record's, None
    when it has none; first ``MAX_PROBABILITY_CLASSES`` classes seen, class names as strings),
    or None when no record has probabilities."""
    if not any(rows) or not any(isinstance(p, Mapping) and p for p in rows if p):
        return None
    classes: list[str] = []
    for p in rows:
        if isinstance(p, Mapping):
            for k in p:
                name = str(k)
                if name not in classes and len(classes) < MAX_PROBABILITY_CLASSES:
                    classes.append(name)
    columns: dict[str, NDArray[np.float64]] = {}
    for name in classes:
        columns[name] = _float_column(
            [
                (p.get(name) if name in p else _lookup_class(p, name))
                if isinstance(p, Mapping)
                else None
                for p in rows
            ]
        )
    return columns


def _lookup_class(probabilities: Mapping[Any, Any], name: str) -> Any:
    """A class's probability when its key is not a string (e.g. ``{0: 0.9, 1: 0.1}``)."""
    for key, value in probabilities.items():
        if str(key) == name:
            return value
    return None


def _record_score(record: Mapping[str, Any]) -> float:
    score = record.get("score")
    if score is not None:
        return _to_float(score)
    probabilities = record.get("probabilities")
    if not probabilities:
        return math.nan
    predicted = record.get("prediction")
    if predicted is not None:
        for key in (predicted, str(predicted)):
            if key in probabilities:
                return _to_float(probabilities[key])
    return max(_to_float(p) for p in probabilities.values())
