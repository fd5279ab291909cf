"""One normalisation of feature values, used when a profile is built and when live records
are read, so that the same value means the same thing on both sides.

Rules (the same for CSV strings, JSON values and Python objects):

* **missing**: ``None``, a float NaN, and the strings ``""``, ``"nan"``, ``"null"``,
  ``"none"`` (any case, surrounding spaces ignored) are missing values, never a category.
* **boolean** features: ``True``/``False``, ``1``/``0`` (numbers or strings) and
  ``"true"``/``"false"`` in any case are the categories ``"true"``/``"false"``; anything
  else is kept as its own string, so it shows up as a category unseen in the reference.
* **categorical** features: booleans become ``"true"``/``"false"`` (so does a string
  ``"True"``), integral numbers their integer text (``1``, ``1.0`` -> ``"1"``), other values
  ``str(value)``.
* **numeric** features: numbers as floats, numeric strings parsed (``"38.5"``), booleans and
  ``"true"``/``"false"`` as 1/0; a value that cannot be read as a number is *invalid*
  (``+inf``, counted as a type error, see :mod:`driftline.detectors.batch`).
* **type inference** (:func:`infer_type`): a feature whose present values are all booleans
  (or boolean strings) is ``boolean``; all numbers or numeric strings: ``numeric``; otherwise
  ``categorical``. ``--feature-type`` / ``feature_types`` override it.

>>> [category_value(v) for v in [None, float("nan"), " NULL ", True, "True", 1.0, 2.5, "FR"]]
[None, None, None, 'true', 'true', '1', '2.5', 'FR']
>>> [boolean_value(v) for v in [True, 0, "1", "FALSE", "maybe", None]]
['true', 'false', 'true', 'false', 'maybe', None]
>>> [numeric_value(v) for v in ["38.5", True, "false", "", "38,51"]]
[38.5, 1.0, 0.0, nan, inf]
>>> infer_type(["true", "False", None]), infer_type([1, "2.5", None]), infer_type(["a", 1])
('boolean', 'numeric', 'categorical')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FEATURE_TYPES",
    "boolean_column",
    "boolean_value",
    "category_column",
    "category_value",
    "class_text",
    "class_texts",
    "class_value",
    "infer_type",
    "is_missing",
    "numeric_value",
]

FeatureType = Literal["numeric", "categorical", "boolean"]
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical", "boolean")
MISSING_STRINGS = frozenset({"", "nan", "null", "none"})
TRUE_STRINGS = frozenset({"true", "1", "1.0"})
FALSE_STRINGS = frozenset({"false", "0", "0.0"})


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in MISSING_STRINGS
    return False


def category_value(value: Any) -> str | None:
    """A categorical feature's value as its category (None when missing)."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in MISSING_STRINGS:
            return None
        if key in ("true", "false"):
            return key
        return value
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        x = float(value)
        if math.isnan(x):
            return None
        return str(int(x)) if x.is_integer() else repr(x)
    return str(value)


def boolean_value(value: Any) -> str | None:
    """A boolean feature's value as ``"true"``/``"false"`` (None when missing; any other
    value kept as its text, an unseen category)."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if is_missing(value):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        if value == 1:
            return "true"
        if value == 0:
            return "false"
        return category_value(value)
    key = str(value).strip().lower()
    if key in TRUE_STRINGS:
        return "true"
    if key in FALSE_STRINGS:
        return "false"
    return str(value)


def class_value(value: Any) -> Any:
    """A label or predicted class typed like the model's classes: ``"1"``, ``1.0``, ``True``
    and ``1`` are the class 1 (so a CSV's string labels match numeric predictions and the
    positive class ``1``); other strings stay strings; missing values are None.

    >>> [class_value(v) for v in ["1", 0.0, True, "fraud", "", None, float("nan")]]
    [1, 0, 1, 'fraud', None, None, None]
    """
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            key = value.strip().lower()
            return {"true": 1, "false": 0}.get(key, value)
        return int(number) if number.is_integer() else value
    return value


def class_text(value: Any) -> str:
    """A class as the text the label join counts it under: `class_value`'s class as a string
    (``True``, ``1``, ``"1"``, ``"true"``, ``1.0`` are all ``"1"``); a missing value is
    ``"None"``, its own class, as before.

    >>> [class_text(v) for v in [True, 1, "1", "true", 1.0, "fraud", 0.5, None]]
    ['1', '1', '1', '1', '1', 'fraud', '0.5', 'None']
    """
    return str(class_value(value))


def class_texts(values: Iterable[Any]) -> list[str]:
    """`class_text` of many values, each distinct (type, value) converted once: a label column
    holds few distinct classes, so this costs a dict lookup per value.

    >>> class_texts([True, 1, "1", 0.0, None, True])
    ['1', '1', '1', '0', 'None', '1']
    """
    memo: dict[tuple[type, Any], str] = {}
    texts = []
    for value in values:
        try:
            key = (type(value), value)
            text = memo.get(key)
            if text is None:
                text = memo[key] = class_text(value)
        except TypeError:  # unhashable: not a class anyway, converted on its own
            text = class_text(value)
        texts.append(text)
    return texts


def numeric_value(value: Any) -> float:
    """A numeric feature's value: NaN when missing, +inf when it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):  # bool included: 1.0/0.0
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            key = value.strip().lower()
            if key in MISSING_STRINGS:
                return math.nan
            if key == "true":
                return 1.0
            if key == "false":
                return 0.0
            return math.inf
    return math.inf


def _object_array(values: Iterable[Any]) -> NDArray[np.object_]:
    items = list(values)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _column(values: Sequence[Any], normalise: Any, strings: bool = False) -> NDArray[np.object_]:
    # A column of strings with few distinct values (the usual categorical): normalise each
    # distinct value once. Mixed types go value by value (True == 1 == 1.0 in a set).
    # `strings`: the caller has seen that every value is a `str` (saves a pass).
    distinct = set(values) if strings or set(map(type, values)) <= {str} else None
    if distinct is None:
        return _object_array([normalise(v) for v in values])
    mapping = {v: normalise(v) for v in distinct}
    if all(mapping[v] is v for v in distinct):
        return _object_array(values)
    return _object_array([mapping[v] for v in values])


def category_column(values: Sequence[Any], *, strings: bool = False) -> NDArray[np.object_]:
    """Categorical values normalised (`category_value`); `strings`: all are `str` already.

    >>> category_column(["FR", 3, None]).tolist()
    ['FR', '3', None]
    """
    return _column(values, category_value, strings)


def boolean_column(values: Sequence[Any], *, strings: bool = False) -> NDArray[np.object_]:
    """Boolean values normalised (`boolean_value`); `strings`: all are `str` already."""
    return _column(values, boolean_value, strings)


def _is_boolean(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    return isinstance(value, str) and value.strip().lower() in ("true", "false")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | float | np.integer | np.floating):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def infer_type(values: Iterable[Any]) -> FeatureType:
    """The type of a feature from its present values (see the module docstring)."""
    present = [v for v in values if not is_missing(v)]
    if present and all(_is_boolean(v) for v in present):
        return "boolean"
    if all(_is_number(v) for v in present):
        return "numeric"
    return "categorical"
