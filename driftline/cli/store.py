"""The PostgreSQL store and sink: `driftline db upgrade|retention`, `driftline sink postgres`."""

from __future__ import annotations

import argparse

from driftline.cli._base import (
    SCHEMA_HELP,
    Subparsers,
    config_of,
    postgres_checked,
    subcommand,
)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    config = postgres_checked(args)
    with PostgresStore(config.postgres.dsn(), schema=args.schema) as store:
        applied = store.upgrade()
    print(f"applied: {', '.join(applied) if applied else 'nothing (schema is up to date)'}")
    if args.grant_writer:
        from driftline.sinks.grants import grant_writer

        schema = grant_writer(config.postgres.dsn(), args.grant_writer, schema=args.schema)
        print(f"role {args.grant_writer}: rows of schema {schema} only (no DDL, no DELETE)")
    return 0


def cmd_db_retention(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    config = postgres_checked(args)
    days = args.days or config.postgres.retention_days
    with PostgresStore(config.postgres.dsn(), schema=args.schema) as store:
        dropped = store.retention(days)
        created = store.ensure_ahead()
    print(f"retention {days} days: dropped {len(dropped)} partitions {', '.join(dropped)}".rstrip())
    print(f"created {len(created)} partitions ahead")
    return 0


def cmd_sink_postgres(args: argparse.Namespace) -> int:
    from driftline.sinks.postgres import SinkSettings, run_postgres_sink

    settings = SinkSettings(
        batch_messages=args.batch_messages,
        flush_interval=args.flush_interval,
        max_buffer=args.max_buffer,
    )
    # The sink is a service that waits for PostgreSQL at start (migrations retried while the
    # database is unreachable) and rides out outages; a refused login or a missing database
    # will not fix itself, so those fail now, in one line.
    from driftline.diagnose import check_postgres_credentials

    check_postgres_credentials(config_of(args).postgres.dsn())
    return run_postgres_sink(
        config_of(args), metrics_port=args.metrics_port, settings=settings, schema=args.schema
    )


def add_store_commands(commands: Subparsers) -> Subparsers:
    """`db migrate|upgrade|retention`, `sink postgres`; returns the `sink` group (other sinks join it)."""
    db = subcommand(commands, "db", "driftline's PostgreSQL store")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    for action, text in (
        ("migrate", "apply pending schema migrations, as the schema's owner (before the sink)"),
        ("upgrade", "the same as `db migrate`"),
    ):
        db_upgrade = subcommand(db_commands, action, text)
        db_upgrade.add_argument("--schema", default=None, help=SCHEMA_HELP)
        db_upgrade.add_argument(
            "--grant-writer", metavar="ROLE", default=None,
            help="then let ROLE (created if missing; LOGIN, no password: set one yourself) read"
            " and write rows, nothing more: the role for the sink and the notifier",
        )  # fmt: skip
        db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_retention = subcommand(
        db_commands, "retention", "drop day partitions older than postgres.retention_days"
    )
    db_retention.add_argument(
        "--days", type=int, default=None, help="override postgres.retention_days"
    )
    db_retention.add_argument("--schema", default=None, help=SCHEMA_HELP)
    db_retention.set_defaults(func=cmd_db_retention)
    sink = subcommand(commands, "sink", "write driftline's output to external stores")
    sink_commands = sink.add_subparsers(dest="sink_command", metavar="STORE")
    sink_postgres = subcommand(
        sink_commands, "postgres", "consume the metrics and alerts topics into PostgreSQL"
    )
    sink_postgres.add_argument("--metrics-port", type=int, default=9109, help="/metrics port")
    sink_postgres.add_argument(
        "--batch-messages", type=int, default=1000, help="messages written per transaction"
    )
    sink_postgres.add_argument(
        "--flush-interval", type=float, default=1.0, help="seconds between writes at most"
    )
    sink_postgres.add_argument(
        "--max-buffer", type=int, default=20_000, help="messages buffered before pausing"
    )
    sink_postgres.add_argument("--schema", default=None, help=SCHEMA_HELP)
    sink_postgres.set_defaults(func=cmd_sink_postgres)
    return sink_commands
