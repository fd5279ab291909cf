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

Two modules: :mod:`~driftline.tabular.read` (the file -> :class:`Table`) and
:mod:`~driftline.tabular.reference` (columns -> profile and warnings).
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

from driftline.tabular.read import Table, TableError, read_table
from driftline.tabular.reference import as_labels, id_like_columns, reference_from_table

__all__ = [
    "Table",
    "TableError",
    "as_labels",
    "id_like_columns",
    "read_table",
    "reference_from_table",
]
