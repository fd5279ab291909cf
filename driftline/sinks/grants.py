"""Least privilege in PostgreSQL: the role driftline's long-running processes log in with.

The migrations and the retention job (`driftline db migrate`, `driftline db retention`) run as
the owner of the schema: they create, alter and drop tables and partitions. The sink and the
notifier only read and write rows, so they can log in as a role made by `grant_writer`: SELECT,
INSERT and UPDATE on driftline's tables (present and future ones, partitions included), and
EXECUTE on the owner's ``driftline_create_day_partition`` (migration 0006: a new UTC day gets its
partition without the writer owning anything), nothing else: it cannot drop, truncate, alter or
create a table, nor delete rows.

    driftline db migrate --grant-writer driftline_writer     # as the schema's owner
    # or: grant_writer(owner_dsn, "driftline_writer", password="...")

Run it after the migrations (the function must exist); again after an upgrade is harmless.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["WRITER_PRIVILEGES", "grant_writer"]

WRITER_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")


def grant_writer(
    owner_dsn: str, role: str, password: str | None = None, schema: str | None = None
) -> str:
    """Create `role` (LOGIN) if needed, set its password if given, and grant it row access to
    the tables of `schema` (default: the owner's current schema) and to those created there
    later by the owner. Idempotent. Returns the schema."""
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_database(), current_schema()").fetchone()
        assert row is not None
        database, current = row
        schema = schema or current
        name, target = sql.Identifier(role), sql.Identifier(schema)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
        if password:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(name, sql.Literal(password))
            )
        rights = sql.SQL(", ").join(sql.SQL(p) for p in WRITER_PRIVILEGES)
        statements = [
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(target, name),
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(target, name),
            sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(rights, target, name),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(target, name),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
                target, rights, name
            ),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(target, name),
        ]
        function = conn.execute(
            "SELECT to_regprocedure(%s)",
            [f"{schema}.driftline_create_day_partition(text, date)"],
        ).fetchone()
        if function is not None and function[0] is not None:
            statements.append(
                sql.SQL(
                    "GRANT EXECUTE ON FUNCTION {}.driftline_create_day_partition(text, date) TO {}"
                ).format(target, name)
            )
        for statement in statements:
            conn.execute(statement)
    return schema
