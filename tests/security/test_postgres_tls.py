"""PostgreSQL over TLS and a least-privilege role, on the private PostgreSQL of this session
(deploy/local/postgres.sh with ssl=on and a certificate from the test CA)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from driftline.config import load_config
from driftline.sinks.grants import grant_writer
from driftline.sinks.store import PostgresStore
from tests.conftest import TlsFiles

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]


def dsn_of(server: Any, ca: Path, **more: str) -> str:
    env = {"DRIFTLINE_POSTGRES_URL": server.url(), "DRIFTLINE_POSTGRES_SSLROOTCERT": str(ca)}
    env |= {f"DRIFTLINE_POSTGRES_{k.upper()}": v for k, v in more.items()}
    return load_config(ROOT / "config" / "driftline.yaml", environ=env).postgres.dsn()


@pytest.fixture
def schema(private_postgres: Any, tls_files: TlsFiles) -> Iterator[str]:
    name = f"dl_sec_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(dsn_of(private_postgres, tls_files.ca), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_verify_full_by_default_when_a_ca_is_configured(
    private_postgres: Any, tls_files: TlsFiles, schema: str
) -> None:
    dsn = dsn_of(private_postgres, tls_files.ca)
    assert "sslmode=verify-full" in dsn
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None and row[0] is True and row[1].startswith("TLS")
    with PostgresStore(dsn, schema=schema, timeout=10) as store:  # the sink's pool over TLS
        assert store.upgrade()[0] == "0001_initial"


def test_an_untrusted_server_certificate_is_refused(
    private_postgres: Any, tls_files: TlsFiles
) -> None:
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn_of(private_postgres, tls_files.rogue_ca), connect_timeout=10)
    # verify-ca needs a CA; asking for it without one is a configuration error naming the key.
    from driftline.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"postgres\.sslrootcert: required with sslmode verify-ca"
    ):
        load_config(environ={"DRIFTLINE_POSTGRES_SSLMODE": "verify-ca"})


def test_the_writer_role_writes_rows_but_cannot_drop_tables(
    private_postgres: Any, tls_files: TlsFiles, schema: str
) -> None:
    owner = dsn_of(private_postgres, tls_files.ca)
    with PostgresStore(owner, schema=schema, timeout=10) as store:
        store.upgrade()
    role, password = f"dl_writer_{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    assert grant_writer(owner, role, password, schema=schema) == schema
    grant_writer(owner, role, password, schema=schema)  # idempotent
    writer_url = private_postgres.url(user=role, password=password)
    writer = load_config(
        environ={
            "DRIFTLINE_POSTGRES_URL": writer_url,
            "DRIFTLINE_POSTGRES_SSLROOTCERT": str(tls_files.ca),
        }
    ).postgres.dsn()
    row = {
        "alert_id": "a1", "channel": "slack", "action": "firing", "event_id": "e1",
        "status": "sent", "attempts": 1, "last_error": None, "sent_at": None, "model": "fraud",
        "model_version": "1", "type": "data_drift", "subject": "amount", "severity": "warning",
        "title": "t",
    }  # fmt: skip
    with PostgresStore(writer, schema=schema, timeout=10) as store:
        store.record_alert(row)
        store.record_alert(row | {"status": "failed"})  # an upsert: INSERT and UPDATE
    refused = [
        "DROP TABLE alerts",
        "DROP TABLE window_metrics CASCADE",
        "TRUNCATE alerts",
        "DELETE FROM alerts",
        "ALTER TABLE alerts ADD COLUMN x int",
        "CREATE TABLE intruder (x int)",
        "DROP SCHEMA " + schema + " CASCADE",
    ]
    with psycopg.connect(writer, autocommit=True, options=f"-c search_path={schema}") as conn:
        assert conn.execute("SELECT status FROM alerts").fetchall() == [("failed",)]
        for statement in refused:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(owner, autocommit=True, options=f"-c search_path={schema}") as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
