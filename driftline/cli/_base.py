"""What every command shares: the config of the run, the service checks that fail in seconds,
argument types, and the subcommand factory that accepts -v/--config after a command's name."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from driftline.config import DEFAULT_CONFIG_PATH, Config, load_config

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

SCHEMA_HELP = "PostgreSQL schema to use (default: the connection's search_path)"


def config_of(args: argparse.Namespace) -> Config:
    """The config of this run, loaded once (kept on `args` for the error messages)."""
    cached: Config | None = getattr(args, "_loaded_config", None)
    if cached is not None:
        return cached
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    config = load_config(path)
    args._loaded_config = config
    return config


def kafka_checked(args: argparse.Namespace, *topics: str) -> Config:
    """The config, after checking (in seconds) that Kafka answers and `topics` exist."""
    from driftline.diagnose import check_kafka

    config = config_of(args)
    check_kafka(config, topics)
    return config


def postgres_checked(args: argparse.Namespace) -> Config:
    """The config, after checking that PostgreSQL accepts a connection (its own reason if not)."""
    from driftline.diagnose import check_postgres

    config = config_of(args)
    check_postgres(config.postgres.dsn())
    return config


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse `type=`).

    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '0': expected a whole number >= 1
    """
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def since_arg(text: str) -> datetime:
    """`--since 30m|24h|7d` as an aware UTC datetime (argparse `type=`).

    >>> since_arg("soon")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'soon': expected a duration such as 30m, 24h or 7d
    """
    from datetime import UTC, timedelta

    units = {"m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if not text[:-1].isdigit() or text[-1:] not in units:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 30m, 24h or 7d")
    return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])


def subcommand(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help: str,
) -> argparse.ArgumentParser:
    """A subcommand that also accepts -v and --config after its name. Without an action (e.g.
    `driftline topics`), a command group prints its own help."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=help, parents=[COMMON]
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def common_options(parser: argparse.ArgumentParser, default: object) -> argparse.ArgumentParser:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help=f"YAML config file (default: {DEFAULT_CONFIG_PATH} if it exists); "
        "DRIFTLINE_<SECTION>_<KEY> environment variables override it",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="debug logging, and the full traceback of an error",
    )
    return parser


# Options accepted before and after the command name (SUPPRESS: the subcommand's copy does not
# overwrite a value given before the command).
COMMON = common_options(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
