"""What the columns of a training table mean for a reference profile: labels and predictions as
numbers, id-like columns, and the warnings a user needs before profiling (booleans written
several ways, too many categories, a score column on one side of the threshold, labels and
predictions of different kinds). Reading the file is :mod:`driftline.tabular.read`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftline.tabular.read import Table, TableError, parse_floats

_KEPT_CATEGORIES = 50  # ReferenceProfile's max_categories default
_ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key)$|^id[_\-]|_id$", re.IGNORECASE)
_BOOLEAN_SPELLINGS = frozenset(
    {"true", "false", "1", "0", "1.0", "0.0", "yes", "no", "y", "n", "t", "f"}
)
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


def as_labels(values: Sequence[Any]) -> NDArray[np.object_]:
    """Labels or predictions as the performance metrics count them: numbers when every present
    value is one ("1" -> 1, "1.0" -> 1, "0.5" -> 0.5), booleans ("true"/"False"/"yes") -> 1/0,
    anything else kept as text. A string "1" would not match the positive label 1.

    >>> as_labels(["0", "1", None, "1.0"]).tolist()
    [0, 1, None, 1]
    >>> as_labels(["True", "false", True]).tolist()
    [1, 0, 1]
    >>> as_labels(["cat", "dog"]).tolist()
    ['cat', 'dog']
    """
    present = [v for v in values if v is not None]
    out = np.empty(len(values), dtype=object)
    all_floats = parse_floats(list(values)) if parse_floats(present) is not None else None
    if all_floats is not None:
        out[:] = [
            None if v is None else (int(f) if f.is_integer() else f)
            for v, f in zip(values, all_floats.tolist(), strict=True)
        ]
        return out
    lowered = {str(v).strip().lower() for v in present}
    if lowered and lowered <= _TRUE | _FALSE | {"1", "0"}:
        out[:] = [
            None if v is None else int(str(v).strip().lower() in _TRUE | {"1"}) for v in values
        ]
        return out
    out[:] = [None if v is None else str(v) for v in values]
    return out


def id_like_columns(table: Table, names: Iterable[str]) -> list[tuple[str, str]]:
    """Columns that look like identifiers, with the reason: a name like ``id``/``txn_id``, or
    text/integer values that are all distinct (at least 50 rows).

    >>> from pathlib import Path
    >>> t = Table(Path("t.csv"), {"txn_id": ["1", "2"], "amount": ["1.5", "2.5"],
    ...     "user": [f"u{i}" for i in range(60)] and ["u1", "u2"]})
    >>> id_like_columns(t, ["txn_id", "amount", "user"])
    [('txn_id', 'its name')]
    """
    found: list[tuple[str, str]] = []
    for name in names:
        values = [v for v in table.columns[name] if v is not None]
        if _ID_NAME.search(name):
            found.append((name, "its name"))
            continue
        if len(values) < 50:
            continue
        floats = parse_floats(values)
        integral = floats is not None and bool(np.all(np.mod(floats, 1) == 0))
        if (floats is None or integral) and len(set(map(str, values))) == len(values):
            found.append((name, f"{len(values)} distinct values in {len(values)} rows"))
    return found


def reference_from_table(
    table: Table,
    *,
    model: str,
    model_version: str,
    prediction_column: str | None = None,
    score_column: str | None = None,
    label_column: str | None = None,
    threshold: float = 0.5,
    exclude: Sequence[str] = (),
    bins: int = 20,
    feature_types: Mapping[str, Any] | None = None,
    attribution_prefix: str | None = None,
) -> tuple[Any, list[str]]:
    """The reference profile of a training table, and warnings for the user.

    Label-only mode: with a label and a score column but no prediction column, the predictions
    of the baseline are ``score >= threshold``. Labels without predictions or scores give no
    baseline, which is an error rather than a silently empty one.
    """
    from driftline.detectors.profile import ReferenceProfile

    table.require(prediction_column, "--prediction-column")
    table.require(score_column, "--score-column")
    table.require(label_column, "--label-column")
    for name in exclude:
        table.require(name, "--exclude")
    if label_column and not (prediction_column or score_column):
        raise TableError(
            f"--label-column {label_column!r} needs the model's output to compare with: add "
            "--prediction-column, or --score-column (predictions are then score >= --threshold)"
        )
    if not 0.0 <= threshold <= 1.0:
        raise TableError(
            f"--threshold {threshold:g}: scores are probabilities, the threshold must be "
            "between 0 and 1"
        )
    roles: dict[str | None, str] = {
        prediction_column: "--prediction-column",
        score_column: "--score-column",
        label_column: "--label-column",
        **{name: "--exclude" for name in exclude},
    }
    for name in feature_types or {}:
        table.require(name, "--feature-type")
        if name in roles:
            raise TableError(
                f"--feature-type {name}: {name!r} is not a feature (it is given as {roles[name]})"
            )
    special = {prediction_column, score_column, label_column, *exclude}
    attributions: dict[str, Any] = {}
    if attribution_prefix:  # e.g. shap_amount: the attribution of feature amount
        for column in table.names:
            feature = column[len(attribution_prefix) :]
            if column.startswith(attribution_prefix) and feature and column not in special:
                attributions[feature] = _attribution(table, column)
        if not attributions:
            raise TableError(
                f"--attribution-prefix {attribution_prefix!r}: no column starts with it "
                f"(columns: {', '.join(table.names)})"
            )
        special |= {f"{attribution_prefix}{f}" for f in attributions}
    names = [n for n in table.names if n not in special]
    if not names:
        raise TableError(
            f"{table.path}: no feature columns left (columns: {', '.join(table.names)})"
        )
    warnings: list[str] = []
    if len(table.names) == 1 and table.delimiter is not None:
        warnings.append(
            f"one column only ({table.names[0]!r}): if the file uses another delimiter, "
            "pass --delimiter"
        )
    for name, why in id_like_columns(table, names):
        warnings.append(
            f"column {name!r} looks like an identifier ({why}): drift on it is noise; "
            f"leave it out with --exclude {name}"
        )
    warnings += _column_warnings(table, names, feature_types or {})
    score = table.scores(score_column) if score_column else None
    prediction = as_labels(table.columns[prediction_column]) if prediction_column else None
    if prediction is None and score is not None:
        prediction = np.empty(len(score), dtype=object)
        prediction[:] = [None if math.isnan(s) else int(s >= threshold) for s in score.tolist()]
        if label_column:
            warnings.append(f"no --prediction-column: predictions are score >= {threshold:g}")
            warnings += _one_class_warning(score, threshold)
    labels = as_labels(table.columns[label_column]) if label_column else None
    if labels is not None and prediction is not None:
        _same_kind_of_classes(labels, prediction, label_column, prediction_column, score_column)
        unpredicted = [
            i
            for i, (y, p) in enumerate(zip(labels, prediction, strict=True))
            if y is not None and p is None
        ]
        if unpredicted:
            source = (
                f"--prediction-column {prediction_column!r}"
                if prediction_column
                else f"--score-column {score_column!r}"
            )
            warnings.append(
                f"{len(unpredicted):,} labelled rows have no value in {source} (first on line "
                f"{unpredicted[0] + 2}): left out of the baseline performance"
            )
            labels = labels.copy()
            labels[unpredicted] = None
    profile = ReferenceProfile.from_columns(
        {name: table.numeric_or_text(name) for name in names},
        model=model,
        model_version=model_version,
        prediction=prediction,
        score=score,
        labels=labels,
        bins=bins,
        feature_types=feature_types,
        attributions=attributions or None,
    )
    unknown = sorted(set(attributions) - set(names))
    if unknown:
        warnings.append(
            f"attribution columns for features that are not columns: {', '.join(unknown[:5])}"
        )
    return profile, warnings


def _column_warnings(
    table: Table, names: Sequence[str], feature_types: Mapping[str, Any]
) -> list[str]:
    """What the user should know about how the feature columns were read."""
    from collections import Counter

    from driftline.detectors.normalise import category_value

    warnings: list[str] = []
    for name in names:
        if feature_types.get(name) is not None and feature_types[name] != "categorical":
            continue
        floats, how = table.numbers(name)
        if floats is not None:
            if how:
                warnings.append(f"column {name!r}: {how}")
            continue
        odd = table.not_numbers(name)
        if odd is not None:
            count, total, example, line = odd
            warnings.append(
                f"column {name!r}: {total - count} of {total} values are numbers but {count} are "
                f"not (e.g. {example!r} on line {line}), so it is profiled as categorical: fix "
                f"those cells, or pass --feature-type {name}=numeric to count them as invalid"
            )
            continue
        present = [v for v in table.columns[name] if v is not None]
        spellings = {str(v).strip().lower() for v in present}
        counts = Counter(category_value(v) for v in present)
        if not feature_types.get(name) and spellings <= _BOOLEAN_SPELLINGS and len(counts) > 2:
            shown = ", ".join(sorted({str(v) for v in present}))
            warnings.append(
                f"column {name!r} writes booleans several ways ({shown}): as a categorical each "
                "spelling is its own category and live values spelt differently look like "
                f"drift; pass --feature-type {name}=boolean"
            )
        elif len(counts) > _KEPT_CATEGORIES:
            kept = sum(count for _, count in counts.most_common(_KEPT_CATEGORIES))
            warnings.append(
                f"column {name!r}: {len(counts):,} distinct values; the profile keeps the "
                f"{_KEPT_CATEGORIES} most frequent ({kept / len(present):.0%} of the rows) and "
                "counts the rest as one category"
            )
    return warnings


def _one_class_warning(score: NDArray[np.float64], threshold: float) -> list[str]:
    """A threshold that predicts one class for every row makes precision and recall meaningless."""
    present = score[~np.isnan(score)]
    if present.size == 0:
        return []
    positive = int((present >= threshold).sum())
    if 0 < positive < present.size:
        return []
    side = "no row reaches" if positive == 0 else "every row reaches"
    return [
        f"{side} --threshold {threshold:g} (scores {present.min():.3g} .. {present.max():.3g}): "
        "the baseline predicts one class only; pass the model's real threshold"
    ]


def _attribution(table: Table, column: str) -> NDArray[np.float64]:
    """An attribution column as floats; a cell that is not a number is an error (row named)."""
    return table.floats(column, f"--attribution-prefix: column {column!r}")


def _class_kind(values: Any) -> tuple[set[str], list[str]]:
    """The kinds of class values ("text", "number") and a few examples, for a message."""
    seen = [v for v in values if v is not None]
    kinds = {"text" if isinstance(v, str) else "number" for v in seen}
    examples = sorted({str(v) for v in seen})[:3]
    return kinds, examples


def _same_kind_of_classes(
    labels: Any,
    prediction: Any,
    label_column: str | None,
    prediction_column: str | None,
    score_column: str | None,
) -> None:
    """Labels and predictions are compared class by class: text against numbers is a mistake
    (usually the wrong column), said in one line instead of numpy's TypeError.

    >>> _same_kind_of_classes(["FR", "DE"], [0, 1], "country", "is_fraud", None)
    Traceback (most recent call last):
    ...
    driftline.tabular.TableError: --label-column 'country' holds text classes (DE, FR) but --prediction-column 'is_fraud' holds numbers (0, 1): labels and predictions must be the same classes (is it the right column?)
    """
    label_kinds, label_examples = _class_kind(labels)
    prediction_kinds, prediction_examples = _class_kind(prediction)
    if not label_kinds or not prediction_kinds or label_kinds == prediction_kinds:
        return
    source = (
        f"--prediction-column {prediction_column!r}"
        if prediction_column
        else f"the predictions from --score-column {score_column!r}"
    )

    def show(kinds: set[str], examples: list[str]) -> str:
        kind = (
            "text classes"
            if kinds == {"text"}
            else "numbers"
            if kinds == {"number"}
            else ("a mix of text and numbers")
        )
        return f"{kind} ({', '.join(examples)})"

    raise TableError(
        f"--label-column {label_column!r} holds {show(label_kinds, label_examples)} but {source}"
        f" holds {show(prediction_kinds, prediction_examples)}: labels and predictions must be"
        " the same classes (is it the right column?)"
    )
