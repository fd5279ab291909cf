"""Read-only retrain commands do not migrate; routing changes are confirmed by the broker or
republished; `retrain serve` does not commit past an alert it could not handle. On the real
Kafka and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from driftline.cli import main
from driftline.sinks.store import PostgresStore

pytestmark = pytest.mark.service


@pytest.fixture
def empty_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A schema with no driftline tables (as before `driftline db upgrade`)."""
    store = PostgresStore(postgres_url, schema=f"rt_empty_{uuid.uuid4().hex[:8]}")
    try:
        store.create_schema()
        yield postgres_url, str(store.schema)
    finally:
        store.drop_schema()
        store.close()


def _tables(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "argv",
    [
        ["retrain", "history", "--model", "fraud"],
        ["ab", "status", "--model", "fraud"],
        ["ab", "stop", "--model", "fraud"],
    ],
    ids=["retrain-history", "ab-status", "ab-stop"],
)
def test_read_only_commands_never_migrate_and_say_how_to_create_the_tables(
    argv: list[str],
    empty_schema: tuple[str, str],
    isolated_config: tuple[Any, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, schema = empty_schema
    _, env = isolated_config
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    code = main([*argv, "--schema", schema])
    err = capsys.readouterr().err
    assert code != 0
    assert "run `driftline db upgrade` first" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _tables(url, schema) == []  # no DDL ran: not even schema_migrations
