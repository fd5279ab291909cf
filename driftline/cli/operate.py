"""Running and checking driftline: worker, doctor, topics, config, dashboards, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from driftline.cli._base import (
    Subparsers,
    config_of,
    kafka_checked,
    subcommand,
)
from driftline.config import DEFAULT_CONFIG_PATH, Config


def cmd_worker(args: argparse.Namespace) -> int:
    settings_files(config_of(args))  # a wrong key fails before anything connects
    config = kafka_checked(
        args
    )  # before the worker's imports: an unreachable broker fails in seconds
    from driftline.streams.worker import run_worker

    return run_worker(config)


def cmd_topics_create(args: argparse.Namespace) -> int:
    from driftline.streams.topics import check_copartitioned, ensure_topics

    config = kafka_checked(args)
    created = ensure_topics(config)
    print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")
    print(f"predictions/labels co-partitioned over {check_copartitioned(config)} partitions")
    return 0


def settings_files(config: Config) -> list[str]:
    """Read and validate every settings file the config names (the thresholds file with its
    ``concept_drift`` section, the retraining policies): what was checked, one line each."""
    from driftline.detectors.thresholds import load_thresholds
    from driftline.retrain.policy import load_policies
    from driftline.streams.outcomes import load_concept_config

    checked = []
    thresholds = Path(config.worker.thresholds_file)
    if thresholds.exists():
        load_thresholds(thresholds)
        load_concept_config(thresholds)
        checked.append(f"{thresholds}: drift_thresholds and concept_drift ok")
    else:
        checked.append(f"{thresholds}: absent, the built-in thresholds apply")
    policies = Path(config.retraining.policies_file)
    load_policies(policies)
    checked.append(f"{policies}: {'ok' if policies.exists() else 'absent, default policies'}")
    return checked


def cmd_config_check(args: argparse.Namespace) -> int:
    config = config_of(args)
    checked = settings_files(config)
    used = args.config or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    print(f"{used or 'no config file, built-in defaults'}: ok, with the DRIFTLINE_* variables")
    print("\n".join(checked))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from driftline.diagnose import config_as_dict

    print(yaml.safe_dump(config_as_dict(config_of(args)), sort_keys=False), end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from driftline.diagnose import doctor, format_doctor

    results = doctor(config_of(args), timeout=args.timeout)
    print(format_doctor(results))
    failed = sum(1 for status, _, _ in results if status == "FAIL")
    warned = sum(1 for status, _, _ in results if status == "warn")
    print(
        (f"{failed} check(s) failed" if failed else "all checks passed")
        + (f", {warned} warning(s)" if warned else "")
    )
    return 1 if failed else 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from driftline.configdoc import render_reference

    print(render_reference(), end="")
    return 0


def cmd_config_tests(args: argparse.Namespace) -> int:
    from driftline.detectors.stats.registry import render_table, replace_table

    if args.write is None:
        print(render_table())
        return 0
    path = Path(args.write)
    path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from driftline.demo import Plan, run_demo

    plan = Plan(speedup=args.speedup, window_seconds=args.window_seconds)
    return run_demo(config_of(args), config_path=args.config, plan=plan, report_path=args.out)


def cmd_dashboards_write(args: argparse.Namespace) -> int:
    from driftline.dashboards import write_dashboards

    for path in write_dashboards():
        print(f"wrote {path}")
    return 0


def add_service_commands(commands: Subparsers) -> None:
    """`worker`, `doctor`, `topics create`, `config show|reference|tests`."""
    worker = subcommand(
        commands,
        "worker",
        "consume the predictions and labels topics: windows, drift tests, events, metrics",
    )
    worker.set_defaults(func=cmd_worker)

    doctor = subcommand(
        commands, "doctor", "check Kafka, topics, PostgreSQL and profiles: what to fix first"
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each service (default 5)"
    )
    doctor.set_defaults(func=cmd_doctor)

    topics = subcommand(commands, "topics", "manage driftline's Kafka topics")
    topics_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    create = subcommand(
        topics_commands, "create", "create missing topics and check co-partitioning"
    )
    create.set_defaults(func=cmd_topics_create)

    config = subcommand(commands, "config", "inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = subcommand(
        config_commands, "show", "print the validated config as YAML (secrets masked)"
    )
    show.set_defaults(func=cmd_config_show)
    check = subcommand(
        config_commands, "check", "validate the config, the thresholds and the policies files"
    )
    check.set_defaults(func=cmd_config_check)
    reference_doc = subcommand(
        config_commands, "reference", "print the configuration reference (docs/CONFIGURATION.md)"
    )
    reference_doc.set_defaults(func=cmd_config_reference)
    tests_doc = subcommand(
        config_commands, "tests", "print the table of statistical tests (registry)"
    )
    tests_doc.add_argument("--write", metavar="FILE", help="rewrite the table between its markers")
    tests_doc.set_defaults(func=cmd_config_tests)


def add_tool_commands(commands: Subparsers) -> None:
    """`dashboards write`, `demo`."""
    dashboards = subcommand(commands, "dashboards", "generate the Grafana dashboards")
    dashboards_commands = dashboards.add_subparsers(dest="dashboards_command", metavar="ACTION")
    write = subcommand(dashboards_commands, "write", "regenerate deploy/grafana/dashboards/*.json")
    write.set_defaults(func=cmd_dashboards_write)

    demo = subcommand(
        commands,
        "demo",
        "the whole story on the running local stack: drift, alerts, retraining, A/B, report",
    )
    demo.add_argument(
        "--speedup",
        type=float,
        default=12.0,
        help="event-time seconds per wall-clock second (default 12: a window closes every 5 s)",
    )
    demo.add_argument(
        "--window-seconds",
        type=int,
        default=60,
        help="event-time window size of the demo's worker (default 60)",
    )
    demo.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="where to write the HTML report (default .cache/demo/<run>/report.html)",
    )
    demo.set_defaults(func=cmd_demo)
