"""The `driftline` command line. Each command is a thin shell over a function elsewhere."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from driftline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config

__all__ = ["main"]

# One worker process per core is how driftline scales; a multi-threaded BLAS inside each process
# only oversubscribes the cores (MMD went from 13 ms to 71 ms on 2 busy cores). Set before numpy
# is imported; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _config(args: argparse.Namespace) -> Config:
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return load_config(path)


def cmd_worker(args: argparse.Namespace) -> int:
    from driftline.streams.worker import run_worker

    return run_worker(_config(args))


def cmd_topics_create(args: argparse.Namespace) -> int:
    from driftline.streams.topics import check_copartitioned, ensure_topics

    config = _config(args)
    created = ensure_topics(config)
    print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")
    print(f"predictions/labels co-partitioned over {check_copartitioned(config)} partitions")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    print(_config(args))  # secrets print as Secret('***')
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from driftline.demo import run_demo

    return run_demo(_config(args), n_records=args.records, config_path=args.config)


def cmd_dashboards_write(args: argparse.Namespace) -> int:
    from driftline.dashboards import write_dashboards

    for path in write_dashboards():
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Kafka-native monitoring of ML models in production.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config file (default: {DEFAULT_CONFIG_PATH} if it exists); "
        "DRIFTLINE_<SECTION>_<KEY> environment variables override it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )

    worker = commands.add_parser(
        "worker", help="run a stream worker (Faust) on the predictions topic"
    )
    worker.set_defaults(func=cmd_worker)

    topics = commands.add_parser("topics", help="manage driftline's Kafka topics")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_commands.add_parser(
        "create", help="create missing topics and check co-partitioning"
    )
    create.set_defaults(func=cmd_topics_create)

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print the validated config (secrets masked)")
    show.set_defaults(func=cmd_config_show)

    dashboards = commands.add_parser("dashboards", help="generate the Grafana dashboards")
    dashboards_commands = dashboards.add_subparsers(
        dest="dashboards_command", required=True, metavar="ACTION"
    )
    write = dashboards_commands.add_parser(
        "write", help="regenerate deploy/grafana/dashboards/*.json"
    )
    write.set_defaults(func=cmd_dashboards_write)

    demo = commands.add_parser(
        "demo", help="end-to-end run on the local stack: produce, consume, report"
    )
    demo.add_argument(
        "--records", type=int, default=20_000, help="predictions to produce (default 20000)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"driftline: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
