"""Reading a training table: CSV (delimiter given or sniffed), gzip, Parquet -> :class:`Table`,
and reading its cells as numbers (decimal commas, thousands separators, booleans kept apart).
What the columns mean for a profile is in :mod:`driftline.tabular.reference`."""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

_DELIMITERS = ",;\t|"
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+(,\d+)?\s*$")
_GROUPED_POINT = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$")  # 1,234.5
_GROUPED_COMMA = re.compile(r"^\s*[-+]?\d{1,3}(\.\d{3})+(,\d+)?\s*$")  # 1.234,5


class TableError(ValueError):
    """The training table cannot be used as given; the message says why and what to do."""


# Its public home is the package (as in messages and tracebacks before the split).
TableError.__module__ = "driftline.tabular"


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
        floats = parse_floats(values)
        if floats is not None:
            return floats, None
        texts = [None if v is None else str(v) for v in values]
        present = [v for v in texts if v is not None]
        if not present or any(not isinstance(v, str) for v in values if v is not None):
            return None, None
        if self.delimiter not in (None, ",") and _decimal_commas(values):
            floats = parse_floats([None if v is None else v.replace(",", ".") for v in texts])
            if floats is not None:
                return floats, "read decimal commas as decimal points (12,5 = 12.5)"
        if all(_GROUPED_POINT.match(v) or parse_float(v) is not None for v in present):
            floats = parse_floats([None if v is None else v.replace(",", "") for v in texts])
            if floats is not None:
                return floats, "thousands separators ',' ignored (1,234.5 = 1234.5)"
        if self.delimiter not in (None, ",") and all(
            _GROUPED_COMMA.match(v) or _DECIMAL_COMMA.match(v) for v in present
        ):
            floats = parse_floats(
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
            return parse_float(value) is None and not _GROUPED_POINT.match(value)

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
        return self.floats(
            name,
            f"--score-column {name!r}:",
            "; scores must be probabilities between 0 and 1",
        )

    def floats(self, name: str, where: str, hint: str = "") -> NDArray[np.float64]:
        """The column as floats; a cell that is not a number raises TableError naming ``where``,
        the row (counting the header as row 1) and the cell, then ``hint``.

        >>> Table(Path("t.csv"), {"s": ["0.5", "x"]}).floats("s", "--score-column 's':")
        Traceback (most recent call last):
        ...
        driftline.tabular.TableError: --score-column 's': row 3 holds 'x', not a number
        """
        values = self.columns[name]
        floats = parse_floats(values)
        if floats is None:
            row, bad = next(
                (i, v) for i, v in enumerate(values) if v is not None and parse_float(v) is None
            )
            raise TableError(f"{where} row {row + 2} holds {bad!r}, not a number{hint}")
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


def parse_float(value: Any) -> float | None:
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


def parse_floats(values: Sequence[Any]) -> NDArray[np.float64] | None:
    """Floats (missing -> NaN) if every present value is a number or a numeric string, else None.

    >>> parse_floats(["1.5", None, 2]).tolist(), parse_floats(["1", "x"]), parse_floats([True, 1.0])
    ([1.5, nan, 2.0], None, None)
    """
    if not {bool, np.bool_}.isdisjoint(map(type, values)):
        return None  # booleans are categories, not 0/1 numbers
    try:  # numpy parses the strings in C: ~20x faster than float() per cell
        return np.array(["nan" if v is None else v for v in values], dtype=np.float64)
    except (ValueError, TypeError):
        return None
