"""A new user's own training table and own mistakes, second round (issue 15): what they typed
and the line they saw. Helpers (a fraud-like CSV, running the CLI) come from test_cli.py."""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.cli import build_parser
from driftline.config import ConfigError
from driftline.diagnose import explain
from driftline.security import KafkaConnectionError
from tests.unit.test_cli import HEADER, _build, _closed_port, _csv, _rows, _run

ROOT = Path(__file__).resolve().parents[2]


def _table(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ";") -> Path:
    path.write_text("\n".join(delimiter.join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def _fraud_rows(n: int = 1_000, seed: int = 3) -> list[list[str]]:
    """Amounts as a spreadsheet writes them ("1,234.5"), booleans spelt every way, 20% empty."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        amount = rng.lognormvariate(4, 2)  # heavy tail: many values above 1,000
        rows.append(
            [
                f"t{i}",
                f"{amount:,.1f}",
                "" if rng.random() < 0.2 else rng.choice(["true", "True", "1", "yes", "no", "0"]),
                f"m{rng.randrange(300)}",
                f"{rng.betavariate(1, 12):.4f}",
                rng.choice(["0", "1"]),
            ]
        )
    return rows


FRAUD_HEADER = ["txn_id", "amount", "is_online", "merchant", "fraud_score", "is_fraud"]


def test_thousands_separators_are_numbers_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _fraud_rows()
    assert any("," in r[1] for r in rows)  # the data really has "1,234.5"
    csv = _table(tmp_path / "fraud.csv", FRAUD_HEADER, rows)
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), "--id-column", "txn_id"), capsys)
    assert code == 0, err
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["feature_types"]["amount"] == "numeric"
    expected = max(float(r[1].replace(",", "")) for r in rows)
    assert profile["numeric"]["amount"]["high"] == pytest.approx(expected)
    assert "column 'amount': thousands separators ',' ignored (1,234.5 = 1234.5)" in err


def test_european_grouping_in_a_semicolon_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["FR", f"{1 + i % 9}.{i:03d},5" if i % 2 else f"{i},25"] for i in range(200)]
    csv = _table(tmp_path / "eu.csv", ["country", "amount"], rows)
    code, _, err = _run(_build(tmp_path, "--csv", str(csv)), capsys)
    assert code == 0, err
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["feature_types"]["amount"] == "numeric"
    assert profile["numeric"]["amount"]["high"] == pytest.approx(9197.5)  # "9.197,5"
    assert "'.' read as thousands separator and ',' as decimal" in err


def test_a_few_text_cells_in_a_numeric_column_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[str(i * 1.5)] for i in range(300)]
    rows[41] = ["N/A"]
    csv = _table(tmp_path / "na.csv", ["amount"], rows, ",")
    code, _, err = _run(_build(tmp_path, "--csv", str(csv)), capsys)
    assert code == 0, err
    assert (
        "column 'amount': 299 of 300 values are numbers but 1 are not (e.g. 'N/A' on line 43)"
        in err
    )
    assert "--feature-type amount=numeric" in err


def test_booleans_spelt_several_ways_and_many_categories_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _table(tmp_path / "fraud.csv", FRAUD_HEADER, _fraud_rows())
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), "--exclude", "txn_id"), capsys)
    assert code == 0, err
    assert "column 'is_online' writes booleans several ways (0, 1, True, no, true, yes)" in err
    assert "--feature-type is_online=boolean" in err
    assert re.search(
        r"column 'merchant': \d{3} distinct values; the profile keeps the 50 most", err
    )
    code, _, err = _run(
        _build(tmp_path, "--csv", str(csv), "--exclude", "txn_id", "--feature-type",
               "is_online=boolean"),
        capsys,
    )  # fmt: skip
    assert code == 0 and "writes booleans" not in err
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["feature_types"]["is_online"] == "boolean"


@pytest.mark.parametrize("given", [",", "tab", "|"])
def test_an_explicit_delimiter_the_header_does_not_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    csv = _csv(tmp_path / "train.csv", ";")
    code, out, err = _run(_build(tmp_path, "--csv", str(csv), "--delimiter", given), capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "does not occur in the header line, ';' does (5 times): pass --delimiter ';'" in err
    assert not (tmp_path / "profile.json").exists()  # no one-column profile written


def test_labelled_rows_without_a_prediction_leave_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's `ValueError: y_pred contains missing values`, with a prediction column."""
    rows = [[*r[:5], r[5]] for r in _rows(500)]
    header = [*HEADER[:3], "predicted", *HEADER[4:]]
    for i, row in enumerate(rows):
        row[3] = "" if i % 10 == 0 else str(int(float(row[4]) >= 0.5))
    csv = _table(tmp_path / "train.csv", header, rows, ",")
    code, out, err = _run(
        _build(tmp_path, "--csv", str(csv), "--prediction-column", "predicted",
               "--label-column", "is_fraud", "--exclude", "txn_id"),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "y_pred" not in err and "Traceback" not in err
    assert (
        "50 labelled rows have no value in --prediction-column 'predicted' (first on line 2): "
        "left out of the baseline performance" in err
    )
    assert "baseline on 450 labels" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "5", "--score-column", "fraud_score", "--label-column", "is_fraud"],
         "--threshold 5: scores are probabilities, the threshold must be between 0 and 1"),
        (["--feature-type", "amount=number"],
         "--feature-type amount=number: expected NAME=TYPE with TYPE numeric, categorical or"),
        (["--feature-type", "amout=numeric"],
         "--feature-type 'amout': no such column in"),
        (["--label-column", "is_fraud", "--score-column", "fraud_score", "--feature-type",
          "is_fraud=numeric"],
         "--feature-type is_fraud: 'is_fraud' is not a feature (it is given as --label-column)"),
    ],
)  # fmt: skip
def test_option_mistakes_are_one_line_without_a_python_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    csv = _csv(tmp_path / "train.csv")
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), *extra), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and "Error)" not in err and "-v for the traceback" not in err


@pytest.mark.parametrize("option", ["--bins", "--simulated"])
def test_bins_and_simulated_records_must_be_positive(
    capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """`--simulated 0` wrote an empty profile ("0 rows") and said nothing."""
    argv = ["reference", "build", "--simulated", "10", "--model", "m", "--model-version", "1"]
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, option, "0"])
    assert exit_.value.code == 2
    assert f"argument {option}: '0': expected a whole number >= 1" in capsys.readouterr().err


def test_a_threshold_that_predicts_one_class_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _csv(tmp_path / "train.csv")
    code, _, err = _run(
        _build(tmp_path, "--csv", str(csv), "--score-column", "fraud_score", "--label-column",
               "is_fraud", "--threshold", "1"),
        capsys,
    )  # fmt: skip
    assert code == 0
    assert re.search(r"no row reaches --threshold 1 \(scores [0-9.e-]+ \.\. 0\.\d+\)", err), err


def test_out_may_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(tmp_path / "train.csv")
    argv = _build(tmp_path, "--csv", str(csv), "--exclude", "txn_id")
    argv[argv.index("--out") + 1] = str(tmp_path)
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert (tmp_path / "fraud@1.json").exists() and f"wrote {tmp_path / 'fraud@1.json'}" in out


def test_explanations_of_a_down_broker_and_a_directory() -> None:
    down = KafkaConnectionError("cannot reach Kafka at 127.0.0.1:1 (PLAINTEXT) within 5 s")
    assert explain(down) == "cannot reach Kafka at 127.0.0.1:1 (PLAINTEXT) within 5 s"
    assert explain(ConfigError("x: bad")) == "configuration error: x: bad"
    refused = KafkaConnectionError("Kafka at b:9094 refused the login of 'app' (SCRAM-SHA-512)")
    assert explain(refused).startswith("configuration error: Kafka at b:9094 refused")
    assert explain(IsADirectoryError(21, "Is a directory", "/tmp")) == (
        "/tmp: is a directory, expected a file name"
    )


def test_worker_help_is_true_and_an_unreachable_broker_stops_it_before_its_imports() -> None:
    """No "(Faust)" any more; the Kafka check runs before the worker's heavy imports."""
    assert "Faust" not in build_parser().format_help()
    script = (
        "import sys; from driftline.cli import main; code = main(['worker']); "
        "print(code, 'driftline.streams.worker' in sys.modules)"
    )
    env = {"DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.split() == ["1", "False"], done.stderr
    assert done.stderr.startswith("driftline worker: cannot reach Kafka at 127.0.0.1:")
    assert "configuration error" not in done.stderr and done.stderr.count("\n") == 1


# -- the docs are true ----------------------------------------------------------------------------


def test_readme_misspelled_column_example_is_what_the_cli_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command, printed = re.search(
        r"^\$ (driftline reference build --csv train\.csv [^\n]+)\n([^\n]+)", readme, re.M
    ).groups()  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path / "train.csv")
    code, _, err = _run(shlex.split(command)[1:], capsys)
    assert code == 2 and err == printed + "\n"


def _documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        lines = []
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            lines += block.replace("\\\n", " ").splitlines()
        lines += re.findall(r"`(driftline [^`]*)`", text)
        for line in lines:
            match = re.search(r"(?:^|&& |; |\$ )(?:[A-Z_]+=\S+ )*(driftline [^&|;#>]*)", line)
            command = match.group(1).strip() if match else ""
            printed = re.match(r"driftline [\w ]+:", command)  # output, not a command line
            placeholder = re.search(r"<|\.\.\.|\[|\b[A-Z]{3,}\b", command)
            if " -" in command and not printed and not placeholder:
                found.append((path.name, command))
    return found


def test_every_documented_command_line_parses() -> None:
    """Each `driftline ...` with options in README.md and docs/*.md names options that exist."""
    commands = _documented_commands()
    assert len(commands) >= 12  # the extraction found the docs' commands
    wrong = []
    for where, command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            if exc.code:
                wrong.append(f"{where}: {command}")
    assert wrong == []
