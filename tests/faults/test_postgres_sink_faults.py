"""Faults of the PostgreSQL sink (issue 14): kill -9 in the middle of a large write, and the
sink as the least-privilege writer role (the migration is a separate step, run by the owner).

The kill test runs `driftline sink postgres` as a process on the shared PostgreSQL (a schema
of its own) and the shared Kafka (topics of its own); the role test uses the private TLS
PostgreSQL of the session (roles are cluster-wide: never created on the shared server)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import errors, sql

from driftline.config import Config, load_config
from driftline.local import free_port
from driftline.sinks.postgres import PostgresSink, SinkSettings
from driftline.sinks.schema import load_migrations, partition_name, upgrade
from driftline.sinks.store import PostgresStore
from driftline.streams.topics import ensure_topics
from tests.conftest import TlsFiles
from tests.faults.test_broker_restart import wait_until
from tests.unit.test_postgres_rows import drift_event, window_message

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0  # 2026-01-01: days whose partitions the migration did not create ahead


def sink_messages(config: Config, windows: int, events: int) -> list[tuple[str, bytes]]:
    """Window summaries with distinct contents (n_records = index) and drift events with
    distinct ids and statistics."""
    messages = []
    for i in range(windows):
        message = window_message(start=T0 + 60 * i)
        message["evaluation"]["summary"]["n_records"] = i
        message["event_ids"] = [f"{i:032x}"]
        messages.append((config.topics.metrics, orjson.dumps(message)))
    for i in range(events):
        event = drift_event(event_id=f"e{i:031x}", statistic=i / 1000, window_start=T0 + 60 * i,
                            window_end=T0 + 60 * (i + 1))  # fmt: skip
        messages.append((config.topics.alerts, orjson.dumps(event)))
    return messages


def publish(config: Config, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer(config.kafka.confluent_settings())
    for n, (topic, value) in enumerate(messages):
        producer.produce(topic, key=str(n % 7).encode(), value=value)
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def stored(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any], int]:
    """(window key + content, event id + content, feature rows) as PostgreSQL holds them."""
    windows = conn.execute(
        "SELECT extract(epoch FROM window_start)::float8, n_records, event_ids::text"
        " FROM window_metrics ORDER BY 1"
    ).fetchall()
    events = conn.execute(
        "SELECT event_id, statistic, extract(epoch FROM window_start)::float8 FROM drift_events"
        " ORDER BY 1"
    ).fetchall()
    features = conn.execute("SELECT count(*) FROM feature_drift").fetchone()
    assert features is not None
    return windows, events, int(features[0])


def expected(windows: int, events: int) -> tuple[list[Any], list[Any], int]:
    return (
        [(T0 + 60 * i, i, "{" + f"{i:032x}" + "}") for i in range(windows)],
        sorted((f"e{i:031x}", i / 1000, T0 + 60 * i) for i in range(events)),
        2 * windows,
    )


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"dl_fault_{uuid.uuid4().hex[:10]}"
    with PostgresStore(postgres_url, schema=name, timeout=10) as store:
        store.upgrade()  # `driftline db migrate --schema name`
        yield name
        store.drop_schema()


def start_sink(env: dict[str, str], schema: str, log: Path, batch: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "driftline", "--config", str(ROOT / "config" / "driftline.yaml"),
        "sink", "postgres", "--schema", schema, "--metrics-port", str(free_port()),
        "--batch-messages", str(batch), "--max-buffer", str(2 * batch), "--flush-interval", "1",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_sink_killed_mid_write_stores_every_row_exactly_once(
    isolated_config: tuple[Config, dict[str, str]],
    postgres_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    """kill -9 of `driftline sink postgres` while a 4,000-message transaction is in flight
    (seen in pg_stat_activity); after a restart every window and drift event is in PostgreSQL
    exactly once with its content, and nothing is missing."""
    config, env = isolated_config
    ensure_topics(config)
    n_windows, n_events = 12_000, 4_000
    publish(config, sink_messages(config, n_windows, n_events))
    app = f"dl-kill-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **env, "DRIFTLINE_POSTGRES_URL": postgres_url, "PGAPPNAME": app}
    log = tmp_path / "sink.log"
    in_flight = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND state IN ('active', 'idle in transaction')"
        " AND (query ILIKE 'COPY%%' OR query ILIKE 'INSERT INTO%%' OR query ILIKE 'CREATE TEMP%%')"
    )
    with psycopg.connect(postgres_url, autocommit=True) as watch:
        sink = start_sink(env, schema, log, batch=4_000)
        killed_in_flight = False
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and sink.poll() is None:
                row = watch.execute(in_flight, [app]).fetchone()
                if row is not None and row[0] > 0:
                    sink.send_signal(signal.SIGKILL)
                    killed_in_flight = True
                    break
                time.sleep(0.01)
        finally:
            if sink.poll() is None and not killed_in_flight:
                sink.kill()
            sink.wait(30)
        assert killed_in_flight, log.read_text()[-3000:]
        assert sink.returncode == -signal.SIGKILL
        opts = f"-c search_path={schema}"
        with psycopg.connect(postgres_url, autocommit=True, options=opts) as conn:
            windows_at_kill = len(stored(conn)[0])
        assert windows_at_kill < n_windows  # the kill came before the end
        restarted = time.monotonic()
        sink = start_sink(env, schema, log, batch=4_000)
        try:
            with psycopg.connect(postgres_url, autocommit=True, options=opts) as conn:

                def complete() -> bool:
                    windows, events, _ = stored(conn)
                    return len(windows) >= n_windows and len(events) >= n_events

                recovery = wait_until(complete, 120, "every row after the restart")
                time.sleep(2)  # a duplicate would show now
                windows, events, features = stored(conn)
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(30)
    want_windows, want_events, want_features = expected(n_windows, n_events)
    assert windows == want_windows  # every window once, same content
    assert events == want_events
    assert features == want_features
    assert "Traceback" not in log.read_text()
    print(
        f"sink killed with a write in flight ({windows_at_kill:,} of {n_windows:,} windows "
        f"stored); restarted, all {n_windows + n_events:,} messages stored once in "
        f"{recovery:.1f} s (time - restarted = {time.monotonic() - restarted:.1f} s)"
    )


# -- the least-privilege writer role --------------------------------------------------------------


def tls_config(server: Any, ca: Path, env: dict[str, str], **url: str) -> Config:
    values = {**env, "DRIFTLINE_POSTGRES_URL": server.url(**url),
              "DRIFTLINE_POSTGRES_SSLROOTCERT": str(ca)}  # fmt: skip
    return load_config(ROOT / "config" / "driftline.yaml", environ=values)


def test_sink_runs_as_the_writer_role_which_cannot_change_the_schema(
    private_postgres: Any,
    tls_files: TlsFiles,
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
) -> None:
    """`driftline db migrate --grant-writer ROLE` as the owner; the sink as ROLE writes windows
    and events of a day without a partition (made by the owner's function), and ROLE can
    neither DROP, TRUNCATE nor ALTER anything, nor misuse the function."""
    kafka_config, kafka_env = isolated_config
    ensure_topics(kafka_config)
    schema = f"dl_role_{uuid.uuid4().hex[:8]}"
    role, password = f"dl_writer_{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    owner = tls_config(private_postgres, tls_files.ca, kafka_env)
    cli_env = {**os.environ, **kafka_env, "DRIFTLINE_POSTGRES_URL": private_postgres.url(),
               "DRIFTLINE_POSTGRES_SSLROOTCERT": str(tls_files.ca)}  # fmt: skip
    with psycopg.connect(owner.postgres.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    migrate = subprocess.run(
        [sys.executable, "-m", "driftline", "db", "migrate", "--schema", schema,
         "--grant-writer", role],
        env=cli_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    assert "0006_writer_partitions" in migrate.stdout and role in migrate.stdout
    with psycopg.connect(owner.postgres.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role),
                                                                 sql.Literal(password)))  # fmt: skip
    writer = tls_config(private_postgres, tls_files.ca, kafka_env, user=role, password=password)
    day = datetime.fromtimestamp(T0, UTC).date()
    store = PostgresStore(writer.postgres.dsn(), schema=schema, timeout=10)
    sink = PostgresSink(writer, store, SinkSettings(batch_messages=50, flush_interval=0.3))
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    publish(kafka_config, sink_messages(kafka_config, 120, 30))
    opts = f"-c search_path={schema}"
    try:
        thread.start()
        with psycopg.connect(writer.postgres.dsn(), autocommit=True, options=opts) as conn:
            wait_until(
                lambda: len(stored(conn)[0]) == 120 and len(stored(conn)[1]) == 30,
                60,
                "the writer-role sink's rows",
            )
            assert stored(conn) == expected(120, 30)
            partition = partition_name("window_metrics", day)
            owner_of = conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)",
                [partition],
            ).fetchone()
            assert owner_of == ("driftline",)  # made by the owner's function, for the writer
            refused = [
                "DROP TABLE window_metrics CASCADE",
                f"DROP TABLE {partition}",
                "TRUNCATE drift_events",
                "DELETE FROM window_metrics",
                "ALTER TABLE window_metrics ADD COLUMN x int",
                f"ALTER TABLE window_metrics DETACH PARTITION {partition}",
                "CREATE TABLE intruder (x int)",
                "DROP FUNCTION driftline_create_day_partition(text, date)",
                "DROP TABLE schema_migrations",
                f"DROP SCHEMA {schema} CASCADE",
            ]
            for statement in refused:
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
            with pytest.raises(errors.InvalidParameterValue, match="not a partitioned table"):
                conn.execute("SELECT driftline_create_day_partition('alerts', '2026-02-01')")
    finally:
        stop.set()
        thread.join(30)
        store.close()
        with psycopg.connect(owner.postgres.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("GRANT {} TO current_user").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert not thread.is_alive() and sink.stats["rejected"] == 0


def test_the_sink_refuses_to_start_on_a_schema_behind_with_one_line(
    postgres_url: str, isolated_config: tuple[Config, dict[str, str]]
) -> None:
    """The sink does not migrate: on a schema one migration behind it stops at once, with one
    line naming the missing migration and the command to run."""
    _, env = isolated_config
    schema = f"dl_behind_{uuid.uuid4().hex[:8]}"
    with PostgresStore(postgres_url, schema=schema, timeout=10) as store:
        store.create_schema()
        try:
            with store.pool.connection() as conn:
                upgrade(conn, load_migrations()[:-1])
            result = subprocess.run(
                [sys.executable, "-m", "driftline", "sink", "postgres", "--schema", schema,
                 "--metrics-port", "0"],
                env={**os.environ, **env, "DRIFTLINE_POSTGRES_URL": postgres_url},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        finally:
            store.drop_schema()
    last = load_migrations()[-1]
    errors_ = [line for line in result.stderr.splitlines() if "driftline sink postgres:" in line]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(errors_) == 1, result.stderr
    assert f"{last.version:04d}_{last.name}" in errors_[0]
    assert f"run `driftline db migrate --schema {schema}`" in errors_[0]
