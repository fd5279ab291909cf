"""The worker's fast path for driftline JSON predictions: records decoded into msgspec Structs.

`DriftlineJson.decode` returns plain dicts (the `Decoder` contract). Decoding a batch message
into ~10 dicts per record (a record, its features) and taking them apart again into columns
was most of a worker's time with batch messages (docs/BENCHMARKS.md). Here the same message is
decoded, with the same types and bounds (`contract.PREDICTION_TYPE`), into Structs: fixed
slots instead of hash tables, no key strings, not tracked by the garbage collector. The
features become a Struct too, with one field per feature name seen so far and
`forbid_unknown_fields`: a message with a feature the Struct does not know, or with anything
the fast path refuses, is decoded by `DriftlineJson` exactly as before, and the names of its
features are learnt for the next messages (at most `MAX_FIELDS`; beyond that the fast path
turns itself off).

The records read like the dicts (`record["model"]`, `.get`, `in`), and
`RecordBatch.from_records` takes their columns directly (`gather_columns`, see
`detectors/batch.py`), so windows see the same columns either way
(`tests/unit/test_formats_structs.py` compares the two).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from operator import attrgetter, countOf, itemgetter
from typing import Any, NotRequired, get_args, get_origin, get_type_hints

import msgspec
import numpy as np
from numpy.typing import NDArray

from driftline.detectors.normalise import boolean_column, category_column
from driftline.streams.formats.base import Decoded, GuardedDecoder, Headers
from driftline.streams.formats.contract import (
    _PREDICTION_REQUIRED,
    MAX_NAME_LENGTH,
    PREDICTION_TYPE,
    _Value,
    may_hold_nul,
)
from driftline.streams.formats.driftline_json import decode_predictions

log = logging.getLogger(__name__)

__all__ = ["MAX_FIELDS", "StructPredictions", "field_values"]

MAX_FIELDS = 64
"""Feature names a Struct holds at most. Every record allocates a slot for each of them, and
`gather_columns` reads each name outside a model's schema once per batch (to find new
features): with several models of different features that costs one pass per other name."""

UNSET = msgspec.UNSET
_UnsetType = type(UNSET)
_RECORDS_KEY = b'"records"'
_FIELDS = frozenset(get_type_hints(PREDICTION_TYPE))  # the record Struct's fields
_ENVELOPE_HEAD = 32
_new = tuple.__new__
_STR = {str}
_CATEGORICAL = {"categorical": category_column, "boolean": boolean_column}


class _Record(msgspec.Struct, gc=False):
    """Base of the record Struct: read access like the dict it stands for."""

    def __getitem__(self, key: str) -> Any:
        # the worker reads four required fields per record through here: keep it short
        if key in _FIELDS:
            value = getattr(self, key)
            if value is not UNSET:
                return value if key != "features" else _features_dict(value)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.__struct_fields__ and getattr(self, str(key)) is not UNSET

    def keys(self) -> list[str]:
        return [k for k in self.__struct_fields__ if getattr(self, k) is not UNSET]

    def to_dict(self) -> dict[str, Any]:
        """The record as `DriftlineJson.decode` returns it."""
        return {k: self[k] for k in self.keys()}

    @classmethod
    def gather_columns(
        cls,
        records: Sequence[Any],
        fields: Sequence[str],
        schema: Mapping[str, Any],
        max_extra: int,
    ) -> tuple[
        list[Sequence[Any]],
        set[str],
        dict[str, Sequence[Any]],
        dict[str, NDArray[np.bool_]],
        dict[str, NDArray[np.bool_]],
    ]:
        """Columns of `records` (all of this class) for `RecordBatch.from_records`: each of
        `fields` (None where absent), the fields some record has, each monitored feature's
        values (None where absent), where monitored features are absent (only those absent
        somewhere), and where other features are present (at most `max_extra`, by name)."""
        n = len(records)
        present: set[str] = set()
        top: list[Sequence[Any]] = []
        for name in fields:
            if name == "features" or name not in _FIELDS:
                top.append([None] * n)
                continue
            getter = attrgetter(name)
            if (
                name not in _PREDICTION_REQUIRED
                and n
                and getter(records[0]) is UNSET
                and countOf(map(getter, records), UNSET) == n
            ):  # an optional field no record has (the usual case): one pass, no list
                top.append([None] * n)
                continue
            column = list(map(getter, records))
            absent = None if name in _PREDICTION_REQUIRED else _unset_mask(column)
            if absent is None or not absent.all():
                present.add(name)
            top.append(column if absent is None else _none_for_unset(column, absent))
        feats = list(map(attrgetter("features"), records))
        attribute = getattr(cls, "__feature_attributes__", {})
        # column by column: over the ~1,000 records of a piece (stage 1 cuts batches into
        # cache-sized pieces) ten `np.fromiter` passes beat one pass of a tuple per record
        values: dict[str, Any] = {}
        absent_masks: dict[str, NDArray[np.bool_]] = {}
        for name, kind in schema.items():
            attr = attribute.get(name)
            if attr is None:
                values[name], absent_masks[name] = [None] * n, np.ones(n, dtype=bool)
                continue
            if kind in _CATEGORICAL:
                column = list(map(attrgetter(attr), feats))
                if set(map(type, column)) == _STR:  # no UNSET: normalised here, once
                    values[name] = _CATEGORICAL[kind](column, strings=True)
                    continue
                mask = _unset_mask(column)
                values[name] = column if mask is None else _none_for_unset(column, mask)
                if mask is not None and mask.any():
                    absent_masks[name] = mask
                continue
            if kind == "numeric":
                try:  # each value as `_float_column` converts it; UNSET (and odd values) fail
                    values[name] = np.fromiter(map(attrgetter(attr), feats), np.float64, n)
                    continue
                except (TypeError, ValueError):
                    pass
            column = list(map(attrgetter(attr), feats))
            mask = _unset_mask(column)
            values[name] = column if mask is None else _none_for_unset(column, mask)
            if mask is not None and mask.any():
                absent_masks[name] = mask
        extra: dict[str, NDArray[np.bool_]] = {}
        for name in sorted(k for k in attribute if k not in schema):
            mask = _unset_mask(list(map(attrgetter(attribute[name]), feats)))
            if mask is None:
                extra[name] = np.ones(n, dtype=bool)
            elif not mask.all():
                extra[name] = ~mask
            if len(extra) == max_extra:
                break
        if feats:
            present.add("features")
        return top, present, values, absent_masks, extra


def field_values(records: Sequence[Any], *names: str) -> list[list[Any]]:
    """`[[record[name] for record in records] for name in names]`: one column per name of
    required fields, for dict records and Structs alike, the records' types looked at once;
    each column read in C (`attrgetter` on Structs, `itemgetter` on dicts) instead of a Python
    `__getitem__` per record and field.

    >>> field_values([{"model": "m", "timestamp": 1.0}], "model", "timestamp")
    [['m'], [1.0]]
    """
    kinds = set(map(type, records))
    if kinds and all(issubclass(kind, _Record) for kind in kinds):
        return [list(map(attrgetter(name), records)) for name in names]
    if dict in kinds and len(kinds) == 1:
        return [list(map(itemgetter(name), records)) for name in names]
    return [[record[name] for record in records] for name in names]


def _unset_mask(column: list[Any]) -> NDArray[np.bool_] | None:
    """Where the column is UNSET (the record lacks the key); None: nowhere."""
    kinds = set(map(type, column))
    if _UnsetType not in kinds:
        return None
    if len(kinds) == 1:  # an optional field no record has: the usual case, no loop
        return np.ones(len(column), dtype=bool)
    return np.array([v is UNSET for v in column], dtype=bool)


def _none_for_unset(column: list[Any], mask: NDArray[np.bool_]) -> list[Any]:
    if mask.all():
        return [None] * len(column)
    return [None if absent else v for v, absent in zip(column, mask.tolist(), strict=True)]


def _features_dict(features: Any) -> dict[str, Any]:
    names = type(features).__struct_encode_fields__
    return {
        name: value
        for name, value in zip(
            names, (getattr(features, f) for f in features.__struct_fields__), strict=True
        )
        if value is not UNSET
    }


def _record_fields(features: type) -> list[tuple[str, Any, Any]]:
    """`PREDICTION_TYPE` as Struct fields: optional keys default to UNSET, features typed by
    the given Struct (its values have the type of the dict's values: `_Value`)."""
    hints = get_type_hints(PREDICTION_TYPE, include_extras=True)
    fields: list[tuple[str, Any, Any]] = []
    for name, hint in hints.items():
        if get_origin(hint) is NotRequired:
            hint = get_args(hint)[0]
        if name == "features":
            hint = features
        if name in _PREDICTION_REQUIRED:  # (__required_keys__ misses NotRequired in strings)
            fields.append((name, hint, msgspec.NODEFAULT))
        else:
            fields.append((name, hint | _UnsetType, UNSET))
    return fields


def _decoders(names: Sequence[str]) -> tuple[Any, Any]:
    attributes = [f"f{i}" for i in range(len(names))]
    features = msgspec.defstruct(
        "Features",
        [(a, _Value | _UnsetType, UNSET) for a in attributes],
        rename=dict(zip(attributes, names, strict=True)),
        forbid_unknown_fields=True,
        gc=False,
    )
    record: Any = msgspec.defstruct(
        "PredictionRecord", _record_fields(features), bases=(_Record,), gc=False
    )
    record.__feature_attributes__ = dict(zip(names, attributes, strict=True))
    only_records = msgspec.defstruct(
        "OnlyRecords",
        [("records", list[record])],
        forbid_unknown_fields=True,
    )
    return (
        msgspec.json.Decoder(record | list[record]).decode,
        msgspec.json.Decoder(only_records).decode,
    )


class StructPredictions(GuardedDecoder):
    """Decodes driftline JSON predictions into Struct records where it can, and exactly like
    `DriftlineJson("prediction")` otherwise (dicts, same rejections). Headers are ignored.

    >>> decoder = StructPredictions()
    >>> message = (b'{"records": [{"prediction_id": 1, "model": "m", "model_version": "1", '
    ...            b'"timestamp": 5, "features": {"x": 0.5}}]}')
    >>> record = decoder.decode(message).records[0]  # "x" is learnt from the dict path first
    >>> type(record).__name__, record["timestamp"], record["features"], "score" in record
    ('PredictionRecord', 5.0, {'x': 0.5}, False)
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.enabled = True
        self._one_or_many: Any = None
        self._only_records: Any = None

    def decode(self, payload: bytes | None, headers: Headers = None) -> Decoded:
        fast = self._fast(payload)
        if fast is not None:
            return fast
        result = decode_predictions(payload)
        if self.enabled and result.records and self._learn(result.records):
            # the same message with the names learnt (else the first batch of a model would
            # mix Structs and dicts, which `from_records` reads the slow way)
            return self._fast(payload) or result
        return result

    def _fast(self, payload: bytes | None) -> Decoded | None:
        if self._one_or_many is None or not payload or may_hold_nul(payload):
            return None
        # the order of `driftline_json._fast_path`; anything refused goes the usual way
        if _RECORDS_KEY in payload[:_ENVELOPE_HEAD]:
            try:
                return _new(Decoded, (self._only_records(payload).records, []))
            except Exception:
                pass
        try:
            decoded = self._one_or_many(payload)
            return _new(Decoded, (decoded if type(decoded) is list else [decoded], []))
        except Exception:
            return None

    def _learn(self, records: list[dict[str, Any]]) -> bool:
        """Take the feature names of `records`; whether there were new ones."""
        seen = set().union(*(r["features"] for r in records))
        new = sorted(seen.difference(self.names))
        if not new:
            return False
        if len(self.names) + len(new) > MAX_FIELDS or any(
            len(k) > MAX_NAME_LENGTH or "\x00" in k for k in new
        ):
            log.info(
                "more than %d feature names (or unusual ones) on the predictions topic: "
                "decoding into dicts from now on",
                MAX_FIELDS,
            )
            self.enabled, self._one_or_many, self._only_records = False, None, None
            return False
        self.names += new
        self._one_or_many, self._only_records = _decoders(self.names)
        return True
