"""Read a user's training table (CSV, `.csv.gz`, Parquet) into columns, with errors that say what to do.

What `driftline reference build --csv` needs before it can profile anything:

* the delimiter: given (``--delimiter ';'``) or sniffed from the header line (``,`` ``;`` tab ``|``);
* gzip: a ``.gz`` file (or any file starting with gzip's magic bytes) is decompressed on the fly;
* Parquet (optional extra ``parquet``, needs pyarrow): read column by column;
* the special columns (prediction, score, label) must exist; a misspelled one is named with the
  columns that do exist and the closest match;
* labels and predictions as strings ("0"/"1", "true"/"false") become numbers, so that a baseline
  computed with ``positive_label=1`` counts them (a string "1" is not the label 1);
* an id-like column (every value distinct, or a name like ``txn_id``) is reported: profiling it
  as a categorical feature with 20,000 values only produces noise;
* numbers written with thousands separators (``1,234.5``, or ``1.234,5`` in a ``;`` file) are
  read as numbers, with a warning saying so; a column of numbers with a few cells that are not
  (``N/A``) is named, since it would otherwise become a categorical with thousands of values;
* booleans written several ways (``true``/``True``/``1``/``yes``) and categoricals with more
  values than the profile keeps are reported, with the option to use.

Everything here is pure (a file in, columns out) and raises :class:`TableError` with a one-line
message; the CLI prints it.

>>> import io, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
>>> _ = open(path, "w").write("txn_id;amount;country;label\\n1;10.5;FR;0\\n2;;DE;1\\n")
>>> table = read_table(path)
>>> table.delimiter, table.names, table.n_rows
(';', ['txn_id', 'amount', 'country', 'label'], 2)
>>> table.numeric_or_text("amount").tolist()
[10.5, nan]
>>> table.require("label", "--label-column")
>>> table.require("labels", "--label-column")
Traceback (most recent call last):
...
driftline.tabular.TableError: --label-column 'labels': no such column in ...train.csv (did you mean 'label'?); columns: txn_id, amount, country, label
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Table",
    "TableError",
    "as_labels",
    "id_like_columns",
    "read_table",
    "reference_from_table",
]

_DELIMITERS = ",;\t|"
_KEPT_CATEGORIES = 50  # ReferenceProfile's max_categories default
_ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key)$|^id[_\-]|_id$", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+(,\d+)?\s*$")
_GROUPED_POINT = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$")  # 1,234.5
_GROUPED_COMMA = re.compile(r"^\s*[-+]?\d{1,3}(\.\d{3})+(,\d+)?\s*$")  # 1.234,5
_BOOLEAN_SPELLINGS = frozenset(
    {"true", "false", "1", "0", "1.0", "0.0", "yes", "no", "y", "n", "t", "f"}
)
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


class TableError(ValueError):
    """The training table cannot be used as given; the message says why and what to do."""


@dataclass(frozen=True)
class Table:
    """Columns of a training table, in file order. CSV cells are strings (empty -> None);
    Parquet columns keep their types."""

    path: Path
    columns: dict[str, list[Any]]
    delimiter: str | None = None  # None for Parquet
    _numbers: dict[str, tuple[Any, str | None]] = field(
        default_factory=dict, compare=False, repr=False
    )  # numbers() of each column, computed once

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def require(self, name: str | None, flag: str) -> None:
        """Raise TableError naming ``flag`` if ``name`` is given and is not a column."""
        if name is None or name in self.columns:
            return
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
        lowered = [c for c in self.names if c.lower() == name.lower()]
        suggestions = lowered or close
        hint = f" (did you mean {suggestions[0]!r}?)" if suggestions else ""
        if len(self.names) == 1 and _sniff(self.names[0]) != self.delimiter:
            other = _sniff(self.names[0])
            raise TableError(
                f"{self.path}: the header reads as one column {self.names[0]!r} with delimiter "
                f"{self.delimiter!r}; the file seems to use {other!r}: pass --delimiter {other!r}"
                " (or leave --delimiter out to sniff it)"
            )
        raise TableError(
            f"{flag} {name!r}: no such column in {self.path}{hint}; columns: {', '.join(self.names)}"
        )

    def numeric_or_text(self, name: str) -> NDArray[Any]:
        """A float array if every present value is a number, else an object array of strings
        (None for missing): what the reference profile infers types from."""
        floats, _ = self.numbers(name)
        if floats is not None:
            return floats
        values = self.columns[name]
        out = np.empty(len(values), dtype=object)
        out[:] = [None if v is None else str(v) for v in values]
        return out

    def numbers(self, name: str) -> tuple[NDArray[np.float64] | None, str | None]:
        """The column as floats if every present value reads as a number, and how it was read
        when that needed more than ``float()`` (decimal commas, thousands separators).

        >>> t = Table(Path("t.csv"), {"a": ["13.7", "1,234.5", None], "b": ["1.234,5", "7,25"],
        ...     "c": ["1", "x"]}, ";")
        >>> t.numbers("a")
        (array([  13.7, 1234.5,    nan]), "thousands separators ',' ignored (1,234.5 = 1234.5)")
        >>> t.numbers("b")[0].tolist(), t.numbers("c")
        ([1234.5, 7.25], (None, None))
        """
        if name not in self._numbers:
            self._numbers[name] = self._read_numbers(name)
        return self._numbers[name]

    def _read_numbers(self, name: str) -> tuple[NDArray[np.float64] | None, str | None]:
        values = self.columns[name]
        floats = _floats(values)
        if floats is not None:
            return floats, None
        texts = [None if v is None else str(v) for v in values]
        present = [v for v in texts if v is not None]
        if not present or any(not isinstance(v, str) for v in values if v is not None):
            return None, None
        if self.delimiter not in (None, ",") and _decimal_commas(values):
            floats = _floats([None if v is None else v.replace(",", ".") for v in texts])
            if floats is not None:
                return floats, "read decimal commas as decimal points (12,5 = 12.5)"
        if all(_GROUPED_POINT.match(v) or _float(v) is not None for v in present):
            floats = _floats([None if v is None else v.replace(",", "") for v in texts])
            if floats is not None:
                return floats, "thousands separators ',' ignored (1,234.5 = 1234.5)"
        if self.delimiter not in (None, ",") and all(
            _GROUPED_COMMA.match(v) or _DECIMAL_COMMA.match(v) for v in present
        ):
            floats = _floats(
                [None if v is None else v.replace(".", "").replace(",", ".") for v in texts]
            )
            if floats is not None:
                return (
                    floats,
                    "'.' read as thousands separator and ',' as decimal (1.234,5 = 1234.5)",
                )
        return None, None

    def not_numbers(self, name: str) -> tuple[int, int, str, int] | None:
        """For a text column whose cells are nearly all numbers (at least 90%): how many are
        not, of how many, the first such cell and its line (1 = the header)."""
        values = self.columns[name]
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        if len(present) < 20 or not all(isinstance(v, str) for _, v in present):
            return None

        def is_bad(value: str) -> bool:
            return _float(value) is None and not _GROUPED_POINT.match(value)

        if sum(is_bad(v) for _, v in present[:1000]) > 100:  # a text column: skip the rest
            return None
        bad = [(i, v) for i, v in present if is_bad(v)]
        if not bad or len(bad) > 0.1 * len(present):
            return None
        return len(bad), len(present), str(bad[0][1]), bad[0][0] + 2

    def decimal_comma_columns(self) -> list[str]:
        """Text columns whose every value is a number written with a decimal comma ("12,5"),
        as spreadsheets in many locales save them; only when the delimiter is not a comma."""
        if self.delimiter in (None, ","):
            return []
        return [name for name, values in self.columns.items() if _decimal_commas(values)]

    def scores(self, name: str) -> NDArray[np.float64]:
        """The score column as floats; a cell that is not a number is an error (row named)."""
        values = self.columns[name]
        floats = _floats(values)
        if floats is None:
            row, bad = next(
                (i, v) for i, v in enumerate(values) if v is not None and _float(v) is None
            )
            raise TableError(
                f"--score-column {name!r}: row {row + 2} holds {bad!r}, not a number; "
                "scores must be probabilities between 0 and 1"
            )
        return floats


def read_table(path: str | Path, delimiter: str | None = None) -> Table:
    """Read a CSV (plain or gzip) or Parquet file with a header row."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file (check the path; it is relative to {Path.cwd()})")
    if path.is_dir():
        raise TableError(f"{path}: is a directory, expected a CSV or Parquet file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1" or path.suffix.lower() in {".parquet", ".pq"}:
        return _read_parquet(path)
    compressed = magic[:2] == b"\x1f\x8b"
    if path.suffix.lower() in {".gz", ".gzip"} and not compressed:
        raise TableError(
            f"{path}: named {path.suffix} but not gzip-compressed (it does not start with gzip's"
            " magic bytes): compress it with gzip, or drop the suffix if it is plain CSV"
        )
    opener: Any = gzip.open if compressed else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise TableError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 CSV (or .csv.gz, .parquet)"
        ) from None
    except (OSError, EOFError) as exc:
        raise TableError(f"{path}: cannot read it ({exc})") from None
    if not text.strip():
        raise TableError(f"{path}: the file is empty; expected a header row and data rows")
    header_line = text.split("\n", 1)[0]
    if delimiter is None:
        delimiter = _sniff(header_line)
    else:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise TableError(f"--delimiter {delimiter!r}: expected one character, e.g. ';'")
        sniffed = _sniff(header_line)
        if delimiter not in header_line and sniffed in header_line:
            raise TableError(
                f"{path}: --delimiter {delimiter!r} does not occur in the header line, "
                f"{sniffed!r} does ({header_line.count(sniffed)} times): pass --delimiter "
                f"{sniffed!r}, or leave --delimiter out to sniff it"
            )
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader)
    rows = [row for row in reader if row]
    if not rows:
        raise TableError(f"{path}: only a header row, no data")
    width = len(header)
    for number, row in enumerate(rows, start=2):
        if len(row) != width:
            raise TableError(
                f"{path}, line {number}: {len(row)} fields where the header has {width} "
                f"(delimiter {delimiter!r}; pass --delimiter if it is another one)"
            )
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise TableError(f"{path}: duplicated column name(s) {', '.join(duplicated)}")
    columns = {
        name: [cell if cell != "" else None for cell in cells]
        for name, cells in zip(header, zip(*rows, strict=True), strict=True)
    }
    return Table(path, columns, delimiter)


def _sniff(header_line: str) -> str:
    """The most frequent of , ; tab | in the header line (a header has no quoted numbers)."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise TableError(
            f"{path}: reading Parquet needs pyarrow: pip install 'driftline[parquet]'"
        ) from None
    try:
        data = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError...
        raise TableError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = {name: data.column(name).to_pylist() for name in data.column_names}
    return Table(path, columns, None)


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _decimal_commas(values: Sequence[Any]) -> bool:
    """Every present value a number with a decimal comma or none ("12,5", "7"), one with."""
    present = [str(v) for v in values if v is not None]
    return (
        bool(present)
        and any("," in v for v in present)
        and all(_DECIMAL_COMMA.match(v) for v in present)
    )


def _floats(values: Sequence[Any]) -> NDArray[np.float64] | None:
    """Floats (missing -> NaN) if every present value is a number or a numeric string, else None.

    >>> _floats(["1.5", None, 2]).tolist(), _floats(["1", "x"]), _floats([True, 1.0])
    ([1.5, nan, 2.0], None, None)
    """
    if not {bool, np.bool_}.isdisjoint(map(type, values)):
        return None  # booleans are categories, not 0/1 numbers
    try:  # numpy parses the strings in C: ~20x faster than float() per cell
        return np.array(["nan" if v is None else v for v in values], dtype=np.float64)
    except (ValueError, TypeError):
        return None


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
    all_floats = _floats(list(values)) if _floats(present) is not None else None
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
        floats = _floats(values)
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
    values = table.columns[column]
    floats = _floats(values)
    if floats is None:
        row, bad = next((i, v) for i, v in enumerate(values) if v is not None and _float(v) is None)
        raise TableError(
            f"--attribution-prefix: column {column!r} row {row + 2} holds {bad!r}, not a number"
        )
    return floats


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
