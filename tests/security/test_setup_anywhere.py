"""Setup from anywhere (issue 15, item 1): the local stack's PostgreSQL starts from a clone under
a 0700 directory. The `private_postgres` fixture runs deploy/local/postgres.sh with its cache in
pytest's temporary directory (/tmp/pytest-of-<user>, mode 0700): exactly what failed before
("could not change directory ... Permission denied")."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.service
AS_ROOT = os.geteuid() == 0


def _postgres_can(test: str, path: Path) -> bool:
    command = ["runuser", "-u", "postgres", "--", "test", test, str(path)]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def test_postgres_starts_from_a_clone_under_a_0700_directory(private_postgres: Any) -> None:
    cache: Path = private_postgres.cache
    private = [p for p in cache.parents if p.exists() and stat.S_IMODE(p.stat().st_mode) == 0o700]
    assert private, f"no 0700 directory above {cache}: the test would prove nothing"
    with psycopg.connect(private_postgres.url(), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # The service log is still found where the other logs are.
    assert (cache / "logs" / "postgres.log").resolve().is_file()


@pytest.mark.skipif(not AS_ROOT, reason="as a plain user the server runs as that user")
def test_every_path_postgres_touches_is_reachable_by_it(private_postgres: Any) -> None:
    assert not _postgres_can("-x", private_postgres.cache), "the clone should be out of reach"
    paths = private_postgres.paths()
    for name in ("home", "data"):
        assert _postgres_can("-w", paths[name]), f"{name} {paths[name]} not writable by postgres"
        for parent in paths[name].parents:
            assert _postgres_can("-x", parent), f"postgres cannot traverse {parent}"
    assert _postgres_can("-w", paths["log"])
    # Keyed by the clone: another clone gets another home.
    assert paths["home"].name.startswith("driftline-postgres-")
    assert str(private_postgres.cache) not in str(paths["home"])
