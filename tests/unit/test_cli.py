"""The command line as a new user meets it: their own CSV, their own mistakes.

Each test is one friction point of issue 15: what the user typed, and the one line they see.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import socket
import time
from pathlib import Path

import pytest
import yaml

from driftline.cli import build_parser, format_event, main
from driftline.config import Config, ConfigError, load_config
from driftline.diagnose import check_kafka, explain, mask_url

HEADER = ["txn_id", "amount", "country", "is_online", "fraud_score", "is_fraud"]


def _rows(n: int = 2_000, seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        fraud = int(rng.random() < 0.05)
        score = rng.betavariate(5, 2) if fraud else rng.betavariate(1, 20)
        amount = "" if rng.random() < 0.2 else f"{rng.lognormvariate(3, 1):.2f}"  # 20% missing
        rows.append(
            [
                f"t{i:06d}",
                amount,
                rng.choice(["FR", "DE", "US"]),
                rng.choice(["true", "True", "1", "false"]),
                f"{score:.4f}",
                str(fraud),  # labels as the strings "0" / "1"
            ]
        )
    return rows


def _csv(path: Path, delimiter: str = ",", rows: list[list[str]] | None = None) -> Path:
    lines = [delimiter.join(HEADER)] + [delimiter.join(r) for r in rows or _rows()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _build(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "reference", "build", "--model", "fraud", "--model-version", "1",
        "--out", str(tmp_path / "profile.json"), *extra,
    ]  # fmt: skip


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- the parser ---------------------------------------------------------------------------------


def test_driftline_alone_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run([], capsys)
    assert code == 0 and "usage: driftline" in out and "reference" in out and not err


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_flag_has_help_text() -> None:
    missing = [
        f"{p.prog} {'/'.join(a.option_strings)}"
        for p in _parsers(build_parser())
        for a in p._actions
        if a.option_strings and not a.help
    ]
    assert missing == []


def test_verbose_is_accepted_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run([*_build(tmp_path, "--csv", str(tmp_path / "no.csv")), "-v"], capsys)
    assert code == 2 and "no such file" in err and "unrecognized arguments" not in err


# -- reference build -------------------------------------------------------------------------------


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(_build(tmp_path, "--csv", str(tmp_path / "train.csv")), capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "train.csv: no such file" in err


def test_misspelled_column_lists_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _csv(tmp_path / "train.csv")
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), "--score-column", "fraud_scor"), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--score-column 'fraud_scor': no such column" in err
    assert "did you mean 'fraud_score'?" in err
    assert "columns: txn_id, amount, country, is_online, fraud_score, is_fraud" in err


def test_label_column_alone_asks_for_predictions_or_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _csv(tmp_path / "train.csv")
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), "--label-column", "is_fraud"), capsys)
    assert code == 2 and "--prediction-column, or --score-column" in err
    assert "y_pred" not in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "delimiter"), [("semi.csv", ";"), ("tab.tsv", "\t")])
def test_delimiter_is_sniffed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, delimiter: str
) -> None:
    csv = _csv(tmp_path / name, delimiter)
    code, _out, _ = _run(_build(tmp_path, "--csv", str(csv), "--exclude", "txn_id"), capsys)
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert code == 0
    assert set(profile["feature_types"]) == {
        "amount",
        "country",
        "is_online",
        "fraud_score",
        "is_fraud",
    }
    assert profile["feature_types"]["amount"] == "numeric"


def test_wrong_delimiter_says_which_one_the_file_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _csv(tmp_path / "train.csv", ",")
    code, _, err = _run(
        _build(tmp_path, "--csv", str(csv), "--delimiter", ";", "--label-column", "is_fraud"),
        capsys,
    )
    assert code == 2 and "pass --delimiter ','" in err


def test_gzip_csv_and_string_labels_give_the_right_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Label-only mode (scores, no prediction column) on a .csv.gz whose labels are "0"/"1"."""
    rows = _rows()
    csv = _csv(tmp_path / "train.csv.gz", rows=rows)
    code, out, err = _run(
        _build(
            tmp_path, "--csv", str(csv), "--label-column", "is_fraud",
            "--score-column", "fraud_score", "--exclude", "txn_id",
        ),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    profile = json.loads((tmp_path / "profile.json").read_text())
    positives = sum(r[5] == "1" for r in rows)
    predicted = sum(float(r[4]) >= 0.5 for r in rows)
    assert profile["class_counts"] == {"0": len(rows) - predicted, "1": predicted}
    performance = profile["performance"]
    assert performance["prevalence"] == pytest.approx(positives / len(rows))
    assert performance["precision"] is not None and performance["recall"] is not None
    assert "predictions are score >= 0.5" in err
    assert f"baseline on {len(rows)} labels" in out


def test_id_like_column_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[f"c{i}", *r[1:]] for i, r in enumerate(_rows())]
    rows_header = ["customer", *HEADER[1:]]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(",".join(r) for r in [rows_header, *rows]) + "\n")
    code, _, err = _run(_build(tmp_path, "--csv", str(path)), capsys)
    assert code == 0
    assert "column 'customer' looks like an identifier (2000 distinct values in 2000 rows)" in err
    assert "--exclude customer" in err


def test_parquet_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa  # the `parquet` extra; `.[test]` installs it
    import pyarrow.parquet as pq

    rows = _rows(500)
    table = pa.table(
        {
            "amount": [float(r[1]) if r[1] else None for r in rows],
            "country": [r[2] for r in rows],
            "score": [float(r[4]) for r in rows],
            "label": [int(r[5]) for r in rows],
            "prediction": [int(float(r[4]) >= 0.5) for r in rows],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    code, _out, err = _run(
        _build(
            tmp_path, "--csv", str(tmp_path / "train.parquet"), "--label-column", "label",
            "--prediction-column", "prediction", "--score-column", "score",
        ),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["feature_types"] == {"amount": "numeric", "country": "categorical"}
    assert profile["numeric"]["amount"]["missing"] == sum(1 for r in rows if not r[1])


def test_not_utf8_says_how_to_save_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("city,amount\nZürich,1.0\n".encode("latin-1"))
    code, _, err = _run(_build(tmp_path, "--csv", str(path)), capsys)
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err


# -- configuration ---------------------------------------------------------------------------------


def test_misspelled_environment_variable_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_TOPIC_PREDICTIONS", "mine")
    code, _, err = _run(["config", "show"], capsys)
    assert code == 2
    assert "unknown environment variable DRIFTLINE_TOPIC_PREDICTIONS" in err
    assert "did you mean DRIFTLINE_TOPICS_PREDICTIONS?" in err


def test_stack_variables_are_not_config_mistakes() -> None:
    env = {"DRIFTLINE_PROMETHEUS_URL": "http://x", "DRIFTLINE_CACHE": "/tmp"}
    assert isinstance(load_config(environ=env), Config)


def test_config_show_is_yaml_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", "postgresql://app:s3cret@db:5432/driftline")
    monkeypatch.setenv("DRIFTLINE_NOTIFICATIONS_SLACK_WEBHOOK_URL", "https://hooks.example/T/B/x")
    code, out, _ = _run(["config", "show"], capsys)
    shown = yaml.safe_load(out)
    assert code == 0 and "hunter2" not in out and "s3cret" not in out and "/T/B/x" not in out
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["postgres"]["url"] == "postgresql://app:***@db:5432/driftline"
    assert shown["notifications"]["slack_webhook_url"] == "***"
    assert shown["topics"]["partitions"] == 4


# -- Kafka without a broker ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_broker_fails_in_seconds_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    started = time.monotonic()
    code, _, err = _run(["alerts", "tail", "--timeout", "1"], capsys)
    elapsed = time.monotonic() - started
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in err and "Connection refused" in err
    assert elapsed < 20  # librdkafka's default would be 30 s and a traceback


def test_check_kafka_names_the_config_key() -> None:
    config = load_config(
        environ={"DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}"}
    )
    with pytest.raises(ConfigError, match="DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS"):
        check_kafka(config, timeout=2)


def test_unexpected_errors_are_one_line_too() -> None:
    assert explain(ZeroDivisionError("division by zero")) == "division by zero (ZeroDivisionError)"
    assert explain(FileNotFoundError(2, "x", "/no/where")) == "/no/where: no such file or directory"


# -- alerts tail --------------------------------------------------------------------------------


def test_concept_drift_lines_have_no_none() -> None:
    line = format_event(
        {
            "type": "concept_drift", "severity": "warning", "model": "fraud",
            "model_version": "1", "window_start": None, "window_end": None,
            "detected_at": 1_764_633_600.5, "test": "adwin", "statistic": None,
            "p_value": None, "event_id": "e1",
            "evidence": {"detector": "adwin", "stream": "error", "sample": 4120,
                         "prediction_id": "p-9", "event_time": 1_764_633_590.0},
        }
    )  # fmt: skip
    assert "None" not in line and "2025-12-02T00:00:00Z" in line
    assert "adwin saw the error rate change at labelled prediction 4120" in line


def test_window_event_lines_show_iso_times() -> None:
    line = format_event(
        {
            "type": "data_drift", "severity": "critical", "model": "fraud", "model_version": "1",
            "feature": "amount", "test": "psi", "statistic": 0.31, "p_value": None,
            "window_start": 1_764_633_300, "window_end": 1_764_633_600,
            "detected_at": 1_764_633_605, "event_id": "e2",
        }
    )  # fmt: skip
    assert line.startswith("2025-12-02T00:00:05Z CRITICAL data_drift fraud/1 amount: psi=0.31")
    assert "window 2025-12-01T23:55:00Z..2025-12-02T00:00:00Z" in line and "None" not in line


def test_a_command_group_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["reference"], capsys)
    assert code == 2 and "usage: driftline reference" in out and "build" in out and not err


def test_semicolon_csv_with_decimal_commas_is_numeric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spreadsheet export in many locales: `;` between fields, `,` in numbers."""
    rows = [[r[0], r[1].replace(".", ","), *r[2:]] for r in _rows()]
    csv = _csv(tmp_path / "excel.csv", ";", rows)
    code, _, err = _run(_build(tmp_path, "--csv", str(csv), "--exclude", "txn_id"), capsys)
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert code == 0 and profile["feature_types"]["amount"] == "numeric"
    assert "column 'amount': read decimal commas" in err
    expected = sum(float(r[1]) for r in _rows() if r[1]) / sum(1 for r in _rows() if r[1])
    assert profile["numeric"]["amount"]["mean"] == pytest.approx(expected)


def test_traceback_only_with_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("bins, max_categories and sample_size must be >= 1")  # a bug's error

    monkeypatch.setattr("driftline.tabular.reference_from_table", broken)
    csv = _csv(tmp_path / "train.csv")
    argv = _build(tmp_path, "--csv", str(csv), "--exclude", "txn_id")
    code, _, err = _run(argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.endswith("must be >= 1 (ValueError) (run with -v for the traceback)\n")
    code, _, err = _run([*argv, "-v"], capsys)
    assert code == 1 and "Traceback (most recent call last)" in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db:5432/driftline?password=s3cret",
        "postgresql://app:s3cret@db:5432/driftline?password=s3cret",
        "postgresql://app:x@db/driftline?sslmode=require&sslpassword=s3cret&password=s3cret",
        "postgresql://app@db/driftline?PASSWORD=s3cret&application_name=x",
        "host=db user=app password=s3cret dbname=driftline sslpassword='s3cret s3cret'",
    ],
)
def test_config_show_masks_a_password_given_as_a_parameter(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    code, out, _ = _run(["config", "show"], capsys)
    assert code == 0 and "s3cret" not in out
    assert "***" in yaml.safe_load(out)["postgres"]["url"]
    assert "s3cret" not in mask_url(f"cannot connect to PostgreSQL at {url}: refused")


def test_label_and_prediction_columns_of_different_kinds_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's `--label-column country --prediction-column is_fraud`: numpy's
    "'<' not supported between instances of 'int' and 'str'" before."""
    csv = tmp_path / "train.csv"
    csv.write_text("amount,country,is_fraud\n1.5,FR,1\n2.5,DE,0\n3.5,US,1\n", encoding="utf-8")
    argv = _build(tmp_path, "--csv", str(csv), "--label-column", "country")
    code, _, err = _run([*argv, "--prediction-column", "is_fraud"], capsys)
    assert code != 0 and err.count("\n") == 1 and "not supported" not in err
    assert "--label-column 'country' holds text classes (DE, FR, US)" in err
    assert "--prediction-column 'is_fraud' holds numbers (0, 1)" in err


def test_a_gz_file_that_is_not_gzip_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "train.csv.gz"
    fake.write_bytes(b"amount,country\n1,FR\n2,DE\n")
    code, _, err = _run(_build(tmp_path, "--csv", str(fake)), capsys)
    assert code != 0 and err.count("\n") == 1
    assert "named .gz but not gzip-compressed" in err


def test_operational_events_have_a_readable_line() -> None:
    from driftline.streams.events import operational_event

    detail = {"stage": "stage2", "checkpoint_key": "stage2/fraud/1", "error": "not JSON",
              "checkpoint": {"junk": [1, 2]}}  # fmt: skip
    event = operational_event(
        "checkpoint_dropped", "stage2/fraud/1", detail, 1_764_633_605.0, "fraud"
    )
    line = format_event(event)
    assert line.startswith(
        "2025-12-02T00:00:05Z WARNING  operational checkpoint_dropped model fraud:"
    )
    assert "stage2 checkpoint stage2/fraud/1 could not be restored (not JSON)" in line
    assert line.endswith(f"[{event['event_id']}]") and "?" not in line and "None" not in line
    nameless = format_event(operational_event("checkpoint_dropped", "k", {"stage": "stage1",
        "checkpoint_key": "k", "error": None}, 10.0))  # fmt: skip
    assert " model" not in nameless and "(None)" not in nameless and "window" not in nameless
