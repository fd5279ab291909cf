"""The `driftline` command line. Each command is a thin shell over a function elsewhere.

One module per command group, each with its `cmd_*` functions and the function that declares its
subcommands: `operate` (worker, doctor, topics, config, dashboards, demo), `reference` (simulate,
reference build), `results` (alerts, notify, features history, report), `store` (db, sink
postgres), `retrain` (retrain, ab, sink training-sample); `_base` holds what they share."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# One worker process per core is how driftline scales; a multi-threaded BLAS inside each process
# only oversubscribes the cores (MMD went from 13 ms to 71 ms on 2 busy cores). Set before numpy
# is imported, so before the subcommands' modules (they import it); an explicit setting in the
# environment wins. (Set after them, it came too late: OpenBLAS ran 2 threads, and a sketch's
# `d @ d` over more than 10,000 rows woke them, 7 % of a worker's time with batch messages.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from driftline.cli._base import common_options, positive_int, since_arg
from driftline.cli.operate import add_service_commands, add_tool_commands
from driftline.cli.reference import add_data_commands
from driftline.cli.results import add_result_commands, format_event
from driftline.cli.retrain import add_retrain_commands
from driftline.cli.store import add_store_commands

# `format_event`, `positive_int`, `since_arg`: importable from here, as before the split.
__all__ = ["build_parser", "format_event", "main", "positive_int", "since_arg"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Kafka-native monitoring of ML models in production.",
        epilog="Run `driftline COMMAND --help` for a command's options.",
    )
    common_options(parser, None)
    parser.set_defaults(verbose=False)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    add_service_commands(commands)
    add_data_commands(commands)
    add_result_commands(commands)
    add_tool_commands(commands)
    sink_commands = add_store_commands(commands)
    add_retrain_commands(commands, sink_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:  # `driftline` alone
        parser.print_help()
        return 0 if not (argv if argv is not None else sys.argv[1:]) else 2
    from driftline.logs import ResilientStreamHandler  # a full disk never stops a process

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[ResilientStreamHandler()],
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from driftline.diagnose import expected, explain

        if args.verbose:
            import traceback

            traceback.print_exc()
        config = getattr(args, "_loaded_config", None)
        hint = "" if args.verbose or expected(exc) else " (run with -v for the traceback)"
        print(f"driftline {_command_path(args)}: {explain(exc, config)}{hint}", file=sys.stderr)
        return 2 if _is_usage_error(exc) else 1


def _command_path(args: argparse.Namespace) -> str:
    words = [args.command]
    words += [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
    return " ".join(w for w in words if w)


def _is_usage_error(exc: BaseException) -> bool:
    from driftline.keys import SettingsError
    from driftline.security import KafkaConnectionError
    from driftline.tabular import TableError

    if isinstance(exc, KafkaConnectionError):  # the settings may be right, the broker down
        return False
    return isinstance(exc, SettingsError | TableError | FileNotFoundError)
