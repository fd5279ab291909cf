"""What an operator sees at 3 a.m. from `driftline doctor`, the sink and the client, against the
real services (issue 15): one line per problem, saying what to do."""

from __future__ import annotations

import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.cli import main
from driftline.client import DeliveryError, PredictionLogger
from driftline.detectors.profile import ReferenceProfile
from driftline.local import free_port

pytestmark = pytest.mark.service


def _wrong_password(url: str) -> str:
    head, _, tail = url.partition("@")
    return head.rsplit(":", 1)[0] + ":not-the-password@" + tail


def test_doctor_names_what_is_missing_then_passes(
    isolated_config: Any,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, env = isolated_config
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", postgres_url)
    monkeypatch.setenv("DRIFTLINE_WORKER_REFERENCE_DIR", str(tmp_path / "profiles"))
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # config/drift_thresholds.yaml

    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    Kafka ")
    assert lines[1].startswith(f"FAIL  topics              missing: {config.topics.predictions}")
    assert "`driftline topics create`" in lines[1]
    assert lines[2].startswith("ok    PostgreSQL ") and "***" in lines[2]
    assert lines[3].startswith("FAIL  reference profiles") and "does not exist" in lines[3]
    assert lines[4].startswith("ok    drift thresholds")
    assert lines[5] == "2 check(s) failed"

    assert main(["topics", "create"]) == 0
    (tmp_path / "profiles").mkdir()
    ReferenceProfile.from_columns(
        {"amount": np.arange(100.0)}, model="fraud", model_version="3"
    ).save(tmp_path / "profiles" / "fraud@3.json")
    capsys.readouterr()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"ok    reference profiles  {tmp_path / 'profiles'}: fraud@3" in out
    assert out.endswith("all checks passed\n")


def test_doctor_reports_a_wrong_password_and_a_down_broker_together(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", _wrong_password(postgres_url))
    assert main(["doctor", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  Kafka               cannot reach Kafka at 127.0.0.1:" in out
    assert "password authentication failed" in out and "not-the-password" not in out
    assert "topics" not in out  # not checked without a broker


def test_sink_postgres_with_a_wrong_password_stops_at_once(
    isolated_config: Any,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to retry forever, logging psycopg_pool warnings every second."""
    _, env = isolated_config
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", _wrong_password(postgres_url))
    started = time.monotonic()
    assert main(["sink", "postgres", "--metrics-port", str(free_port())]) == 1
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("driftline sink postgres: cannot connect")
    assert "check the user and password in postgres.url (DRIFTLINE_POSTGRES_URL)" in err


def test_client_errors_name_the_topic_and_the_broker(kafka: Any) -> None:
    topic = f"missing-{uuid.uuid4().hex[:8]}.predictions"
    logger = PredictionLogger(kafka.bootstrap_servers, topic, settings={"message.timeout.ms": 2000})
    logger.log(prediction_id="p-1", model="fraud", model_version="1", features={}, prediction=1)
    with pytest.raises(DeliveryError, match=f"p-1: topic {topic} does not exist: create it"):
        logger.flush(15)
    logger.close(timeout=0)

    down = f"127.0.0.1:{free_port()}"
    logger = PredictionLogger(down, "any", settings={"message.timeout.ms": 60_000})
    try:
        logger.log(prediction_id="p-2", model="fraud", model_version="1", features={}, prediction=1)
        with pytest.raises(DeliveryError) as failure:
            logger.flush(2)
        message = str(failure.value)
        del failure  # its traceback holds the logger
    finally:
        # The record is still queued: close drops it. Without, the producer kept reconnecting
        # to the closed port for the rest of the session ("Connect to ... failed" on stderr).
        with suppress(DeliveryError):
            logger.close(timeout=0)
        del logger  # and its producer with it, now (not when the collector runs)
    assert f"still queued after 2 s: Kafka at {down} did not acknowledge them" in message
    assert "Connection refused" in message and "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS" in message


def test_alerts_list_in_a_schema_without_tables_says_what_to_run(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", postgres_url)
    schema = f"empty_{uuid.uuid4().hex[:8]}"
    assert main(["alerts", "list", "--schema", schema]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("run `driftline db upgrade`\n")


def test_report_out_may_be_a_directory(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`-o reports/` used to end in `[Errno 21] Is a directory (IsADirectoryError)`."""
    from driftline.sinks.store import PostgresStore
    from tests.service.report_data import populate

    schema = f"test_newuser_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", postgres_url)
    with PostgresStore(postgres_url, schema=schema) as store:
        store.upgrade()
        populate(store, "fraud")
        try:
            code = main(["report", "--model", "fraud", "--schema", schema, "-o", str(tmp_path)])
        finally:
            store.drop_schema()
    assert code == 0
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'report.html'} (")
