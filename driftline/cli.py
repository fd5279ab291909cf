"""The `driftline` command line. Each command is a thin shell over a function elsewhere."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from driftline.config import DEFAULT_CONFIG_PATH, Config, load_config
from driftline.diagnose import CommandError

__all__ = ["build_parser", "main"]

# One worker process per core is how driftline scales; a multi-threaded BLAS inside each process
# only oversubscribes the cores (MMD went from 13 ms to 71 ms on 2 busy cores). Set before numpy
# is imported; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _config(args: argparse.Namespace) -> Config:
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


def _kafka(args: argparse.Namespace, *topics: str) -> Config:
    """The config, after checking (in seconds) that Kafka answers and `topics` exist."""
    from driftline.diagnose import check_kafka

    config = _config(args)
    check_kafka(config, topics)
    return config


def _postgres(args: argparse.Namespace) -> Config:
    """The config, after checking that PostgreSQL accepts a connection (its own reason if not)."""
    from driftline.diagnose import check_postgres

    config = _config(args)
    check_postgres(config.postgres.dsn())
    return config


def cmd_worker(args: argparse.Namespace) -> int:
    config = _kafka(args)  # before the worker's imports: an unreachable broker fails in seconds
    from driftline.streams.worker import run_worker

    return run_worker(config)


def cmd_topics_create(args: argparse.Namespace) -> int:
    from driftline.streams.topics import check_copartitioned, ensure_topics

    config = _kafka(args)
    created = ensure_topics(config)
    print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")
    print(f"predictions/labels co-partitioned over {check_copartitioned(config)} partitions")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from driftline.diagnose import config_as_dict

    print(yaml.safe_dump(config_as_dict(_config(args)), sort_keys=False), end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from driftline.diagnose import doctor, format_doctor

    results = doctor(_config(args), timeout=args.timeout)
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
    return run_demo(_config(args), config_path=args.config, plan=plan, report_path=args.out)


def cmd_dashboards_write(args: argparse.Namespace) -> int:
    from driftline.dashboards import write_dashboards

    for path in write_dashboards():
        print(f"wrote {path}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from driftline.simulate import parse_drift, publish

    try:
        schedule = [parse_drift(text) for text in args.drift]
    except ValueError as exc:
        print(f"driftline simulate: {exc}", file=sys.stderr)
        return 2
    config = _kafka(args)
    from driftline.simulate import ab_routing

    with ab_routing(
        config.kafka.bootstrap_servers,
        config.retraining.control_topic,
        args.model,
        settings=config.kafka.confluent_settings(),
    ) as (route, routing):
        if not args.quiet:
            print(routing, file=sys.stderr)
        sent = publish(
            config.kafka.bootstrap_servers,
            config.topics.predictions,
            config.topics.labels,
            n=args.records,
            seed=args.seed,
            rate_per_second=args.rate,
            start_time=args.start_time,
            schedule=schedule,
            label_delay=args.label_delay,
            realtime=args.realtime,
            model=args.model,
            model_version=args.model_version,
            settings=config.kafka.confluent_settings(),
            progress=not args.quiet,
            route=route,
        )
    print(f"published {sent} predictions and their labels to {config.topics.predictions}")
    return 0


def cmd_reference_build(args: argparse.Namespace) -> int:
    from driftline.detectors.profile import describe_types, parse_feature_types
    from driftline.tabular import TableError, read_table, reference_from_table

    try:
        feature_types = parse_feature_types(args.feature_type)
    except ValueError as exc:
        raise TableError(str(exc)) from None
    if args.csv is not None:
        profile, warnings = reference_from_table(
            read_table(args.csv, delimiter=args.delimiter),
            model=args.model,
            model_version=args.model_version,
            prediction_column=args.prediction_column,
            score_column=args.score_column,
            label_column=args.label_column,
            threshold=args.threshold,
            exclude=[*args.exclude, *([args.id_column] if args.id_column else [])],
            bins=args.bins,
            feature_types=feature_types,
            attribution_prefix=args.attribution_prefix,
        )
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    else:
        from driftline.detectors.profile import ReferenceProfile
        from driftline.simulate import simulate

        records, labels = simulate(
            args.simulated, seed=args.seed, model=args.model, model_version=args.model_version
        )
        profile = ReferenceProfile.from_records(
            records,
            model=args.model,
            model_version=args.model_version,
            labels=[label["label"] for label in labels],
            bins=args.bins,
        )
    name = f"{args.model}@{args.model_version}.json"  # the name the worker looks for
    out = args.out or Path(_config(args).worker.reference_dir) / name
    if out.is_dir():
        out = out / name
    out.parent.mkdir(parents=True, exist_ok=True)
    profile.save(out)
    print(
        f"wrote {out}: {profile.n_records} rows, {len(profile.numeric)} numeric, "
        f"{len(profile.categorical)} categorical features"
    )
    print(describe_types(profile))
    if profile.performance:
        perf = profile.performance
        shown = ", ".join(
            f"{k} {perf[k]:.4g}"
            for k in ("accuracy", "precision", "recall", "f1", "prevalence")
            if perf.get(k) is not None
        )
        print(f"baseline on {int(perf.get('n') or 0)} labels: {shown}")
    return 0


def _iso(epoch: object) -> str:
    """Epoch seconds as ISO 8601 UTC (second precision), '?' when absent."""
    from datetime import UTC, datetime

    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_event(event: dict[str, object]) -> str:
    """One readable line per drift event (`driftline alerts tail`).

    >>> print(format_event({"type": "data_drift", "severity": "warning", "model": "fraud",
    ...     "model_version": "1", "feature": "amount", "test": "ks", "statistic": 0.21,
    ...     "p_value": 1.2e-5, "window_start": 0, "window_end": 300, "detected_at": 310,
    ...     "event_id": "ab12"}))
    1970-01-01T00:05:10Z WARNING  data_drift fraud/1 amount: ks=0.21 p=1.2e-05, window 1970-01-01T00:00:00Z..1970-01-01T00:05:00Z [ab12]
    >>> print(format_event({"type": "concept_drift", "severity": "warning", "model": "fraud",
    ...     "model_version": "1", "window_start": None, "window_end": None, "detected_at": 310,
    ...     "test": "adwin", "event_id": "cd34", "evidence": {"detector": "adwin",
    ...     "stream": "error", "sample": 4120, "prediction_id": "p-9", "event_time": 305}}))
    1970-01-01T00:05:10Z WARNING  concept_drift fraud/1: adwin saw the error rate change at labelled prediction 4120 (p-9, event time 1970-01-01T00:05:05Z) [cd34]
    >>> print(format_event({"type": "data_quality", "severity": "warning", "model": "fraud",
    ...     "model_version": "1", "feature": "age", "test": "missing_rate", "statistic": 0.0,
    ...     "p_value": 1e-70, "threshold": 0.1, "window_start": 0, "window_end": 60,
    ...     "detected_at": 70, "event_id": "ef56", "evidence": {"reference": 0.1987}}))
    1970-01-01T00:01:10Z WARNING  data_quality fraud/1 age: missing_rate=0 (reference 0.199) p=1e-70 threshold 0.1, window 1970-01-01T00:00:00Z..1970-01-01T00:01:00Z [ef56]
    >>> print(format_event({"type": "importance_drift", "severity": "critical", "model": "fraud",
    ...     "model_version": "1", "window_start": 0, "window_end": 60, "detected_at": 70,
    ...     "event_id": "ef56", "evidence": {"summary": "b share 0.300 -> 0.450 (rank 2 -> 1)"}}))
    1970-01-01T00:01:10Z CRITICAL importance_drift fraud/1: b share 0.300 -> 0.450 (rank 2 -> 1), window 1970-01-01T00:00:00Z..1970-01-01T00:01:00Z [ef56]
    """
    head = (
        f"{_iso(event.get('detected_at'))} {str(event.get('severity', '?')).upper():8} "
        f"{event.get('type')} {event.get('model')}/{event.get('model_version')}"
    )
    tail = f" [{event.get('event_id')}]"
    evidence = event.get("evidence")
    if event.get("type") == "concept_drift" and isinstance(evidence, dict):
        stream = evidence.get("stream")
        what = "the error rate" if stream == "error" else f"the {stream or 'monitored'} stream"
        return (
            f"{head}: {evidence.get('detector') or event.get('test')} saw {what} change at "
            f"labelled prediction {evidence.get('sample')} ({evidence.get('prediction_id')}, "
            f"event time {_iso(evidence.get('event_time'))}){tail}"
        )
    window = f"window {_iso(event.get('window_start'))}..{_iso(event.get('window_end'))}"
    if event.get("type") == "importance_drift" and isinstance(evidence, dict):
        return f"{head}: {evidence.get('summary')}, {window}{tail}"
    parts = []
    statistic, p_value = event.get("statistic"), event.get("p_value")
    if isinstance(statistic, int | float):
        parts.append(f"{event.get('test') or 'statistic'}={statistic:.3g}")
        reference = evidence.get("reference") if isinstance(evidence, dict) else None
        if isinstance(reference, int | float) and not isinstance(reference, bool):
            parts[-1] += f" (reference {reference:.3g})"  # a quality check: what it was
    if isinstance(p_value, int | float):
        parts.append(f"p={p_value:.3g}")
    threshold = event.get("threshold")
    if isinstance(threshold, int | float):
        parts.append(f"threshold {threshold:.3g}")
    where = f" {event['feature']}" if event.get("feature") else ""
    return f"{head}{where}: {' '.join(parts) + ', ' if parts else ''}{window}{tail}"


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    import orjson

    from driftline.streams.reader import TopicReader, decode_object, describe_skip

    config = _config(args)
    _kafka(args, config.topics.alerts)
    reader = TopicReader(
        config, config.topics.alerts, start="beginning" if args.from_beginning else "end"
    )
    print(
        f"following {config.topics.alerts} on {config.kafka.bootstrap_servers}"
        f"{' from the beginning' if args.from_beginning else ''} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        for message in reader.messages(timeout=args.timeout):
            try:  # a malformed message is skipped with one line, never a traceback
                event = decode_object(message.value())
                line = orjson.dumps(event).decode() if args.json else format_event(event)
            except Exception as exc:
                print(describe_skip(message, exc), file=sys.stderr, flush=True)
                continue
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return 0


# -- PostgreSQL store and sink (driftline db ..., driftline sink postgres) ---------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    config = _postgres(args)
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

    config = _postgres(args)
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

    check_postgres_credentials(_config(args).postgres.dsn())
    return run_postgres_sink(
        _config(args), metrics_port=args.metrics_port, settings=settings, schema=args.schema
    )


# -- end of the PostgreSQL block ---------------------------------------------------------------


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


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    since = args.since
    config = _postgres(args)
    with PostgresStore(config.postgres.dsn(), schema=args.schema) as store:
        rows = store.list_alerts(since, args.severity, args.model)
    if args.json:
        import orjson

        for row in rows:
            print(orjson.dumps(row, default=str).decode())
        return 0
    print(f"{'time (UTC)':19}  {'severity':8}  {'action':9}  {'channel':9}  {'status':6}  alert")
    for row in rows:
        print(
            f"{row['created_at']:%Y-%m-%d %H:%M:%S}  {row['severity'] or '-':8}  {row['action']:9}  "
            f"{row['channel']:9}  {row['status']:6}  {row['title'] or row['alert_id']}"
            + (f"  ({row['last_error']})" if row["last_error"] else "")
        )
    print(f"{len(rows)} notification(s) since {since:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from driftline.sinks.notify import channels_from_config, run_notifier

    config = _config(args)
    _kafka(args, config.topics.alerts, config.topics.metrics)
    names = [channel.name for channel in channels_from_config(config.notifications)]
    logging.getLogger("driftline.notify").info(
        "notify: following %s and %s on %s; channels: %s",
        config.topics.alerts,
        config.topics.metrics,
        config.kafka.bootstrap_servers,
        ", ".join(names) or "none (configure notifications.*)",
    )
    return run_notifier(config, timeout=args.timeout)


def cmd_features_history(args: argparse.Namespace) -> int:
    from driftline.report.history import format_history
    from driftline.report.queries import connect, feature_history, feature_names

    config = _postgres(args)
    with connect(config.postgres.dsn(), args.schema) as conn:
        rows = feature_history(conn, args.model, args.feature, args.since, args.model_version)
        known = [] if rows else feature_names(conn, args.model)
    if not rows:
        import difflib

        close = difflib.get_close_matches(args.feature, known, n=1)
        raise CommandError(
            f"no drift scores for feature {args.feature!r} of model {args.model!r} since "
            f"{args.since:%Y-%m-%d %H:%M} UTC"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + (
                f"; features of {args.model!r}: {', '.join(known)}"
                if known
                else f"; no feature of model {args.model!r} has drift scores: check the model name"
            )
        )
    print(format_history(rows, table=not args.sparkline))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from driftline.report import write_report

    config = _postgres(args)
    path = write_report(
        config.postgres.dsn(),
        args.out / "report.html" if args.out.is_dir() else args.out,
        model=args.model,
        model_version=args.model_version,
        since=args.since,
        schema=args.schema,
    )
    print(
        f"wrote {path} ({path.stat().st_size // 1024} KiB): open it in a browser, no network needed"
    )
    return 0


def _command(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help: str,
) -> argparse.ArgumentParser:
    """A subcommand that also accepts -v and --config after its name. Without an action (e.g.
    `driftline topics`), a command group prints its own help."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=help, parents=[_COMMON]
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _common_options(parser: argparse.ArgumentParser, default: object) -> argparse.ArgumentParser:
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
_COMMON = _common_options(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)


# -- retraining and A/B tests (logic in driftline/retrain/commands.py) -------------------------


def cmd_retrain(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain(_config(args), args.retrain_model, args.reason, args.schema)


def cmd_retrain_history(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain_history(_config(args), args.model, args.json, args.schema)


def cmd_retrain_serve(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain_serve(_config(args), args.metrics_port, args.schema)


def cmd_ab_status(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.ab_status(_config(args), args.model, args.json, args.schema)


def cmd_ab_stop(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.ab_stop(_config(args), args.model, args.schema)


def cmd_sink_training_sample(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.training_sample(_config(args), args.schema)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Kafka-native monitoring of ML models in production.",
        epilog="Run `driftline COMMAND --help` for a command's options.",
    )
    _common_options(parser, None)
    parser.set_defaults(verbose=False)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    worker = _command(
        commands,
        "worker",
        "consume the predictions and labels topics: windows, drift tests, events, metrics",
    )
    worker.set_defaults(func=cmd_worker)

    doctor = _command(
        commands, "doctor", "check Kafka, topics, PostgreSQL and profiles: what to fix first"
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each service (default 5)"
    )
    doctor.set_defaults(func=cmd_doctor)

    topics = _command(commands, "topics", "manage driftline's Kafka topics")
    topics_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    create = _command(topics_commands, "create", "create missing topics and check co-partitioning")
    create.set_defaults(func=cmd_topics_create)

    config = _command(commands, "config", "inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = _command(config_commands, "show", "print the validated config as YAML (secrets masked)")
    show.set_defaults(func=cmd_config_show)
    reference_doc = _command(
        config_commands, "reference", "print the configuration reference (docs/CONFIGURATION.md)"
    )
    reference_doc.set_defaults(func=cmd_config_reference)
    tests_doc = _command(
        config_commands, "tests", "print the table of statistical tests (registry)"
    )
    tests_doc.add_argument("--write", metavar="FILE", help="rewrite the table between its markers")
    tests_doc.set_defaults(func=cmd_config_tests)

    simulate = _command(commands, "simulate", "publish realistic fraud-model traffic, with drift")
    simulate.add_argument("--records", type=int, default=100_000, help="predictions to publish")
    simulate.add_argument(
        "--rate", type=float, default=1_000.0, help="predictions per second of event time"
    )
    simulate.add_argument(
        "--seed", type=int, default=0, help="random seed (same seed, same stream)"
    )
    simulate.add_argument(
        "--start-time",
        type=float,
        default=None,
        help="event time of the first record, epoch seconds (default: now)",
    )
    simulate.add_argument(
        "--label-delay", type=float, default=60.0, help="seconds between a prediction and its label"
    )
    simulate.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="KIND:START[-END][:MAGNITUDE]",
        help="a drift, seconds after the start: abrupt, gradual, recurring, concept, latency, errors (repeatable)",
    )
    simulate.add_argument(
        "--realtime", action="store_true", help="pace publishing to the event-time rate"
    )
    simulate.add_argument("--model", default="fraud", help="model name in the records")
    simulate.add_argument("--model-version", default="1", help="model version in the records")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    reference = _command(commands, "reference", "reference profiles")
    reference_commands = reference.add_subparsers(dest="reference_command", metavar="ACTION")
    build = _command(reference_commands, "build", "build a reference profile from a training set")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="training data with a header row: CSV, .csv.gz, or Parquet (extra `parquet`)",
    )
    source.add_argument(
        "--simulated",
        type=positive_int,
        metavar="N",
        help="N records of `driftline simulate` traffic",
    )
    build.add_argument("--model", required=True, help="model name, as in the prediction records")
    build.add_argument(
        "--model-version", required=True, help="model version, as in the prediction records"
    )
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the profile (default: <worker.reference_dir>/<model>@<version>.json)",
    )
    build.add_argument(
        "--bins", type=positive_int, default=20, help="quantile bins per numeric feature"
    )
    build.add_argument(
        "--delimiter",
        default=None,
        help="CSV field separator, e.g. ';' or tab (default: sniffed from the header line)",
    )
    build.add_argument(
        "--prediction-column", metavar="COLUMN", help="the model's predicted class (not a feature)"
    )
    build.add_argument(
        "--score-column", metavar="COLUMN", help="the model's score, P(positive) (not a feature)"
    )
    build.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="ground truth, for the baseline performance (needs --prediction-column or --score-column)",
    )
    build.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="without --prediction-column: predicted positive when score >= this (default 0.5)",
    )
    build.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column that is not a feature, e.g. an id (repeatable)",
    )
    build.add_argument(
        "--feature-type",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="fix a feature's type: numeric, categorical or boolean (repeatable)",
    )
    build.add_argument("--id-column", help="the record id column: never a feature")
    build.add_argument(
        "--attribution-prefix",
        metavar="PREFIX",
        help="columns PREFIX<feature> hold the feature's attributions, e.g. SHAP values "
        "(reference importances for importance drift); e.g. shap_",
    )
    build.add_argument("--seed", type=int, default=0, help="random seed of --simulated")
    build.set_defaults(func=cmd_reference_build)

    features = _command(commands, "features", "per-feature drift history (from PostgreSQL)")
    features_commands = features.add_subparsers(dest="features_command", metavar="ACTION")
    feature_history = _command(
        features_commands, "history", "drift scores of one feature over time"
    )
    feature_history.add_argument("--model", required=True, help="model name")
    feature_history.add_argument("--feature", required=True, help="feature name")
    feature_history.add_argument(
        "--model-version", default=None, help="only this version (default: all)"
    )
    feature_history.add_argument(
        "--since", type=since_arg, default="24h", help="how far back: 30m, 24h, 7d (default 24h)"
    )
    feature_history.add_argument(
        "--sparkline", action="store_true", help="one line per version instead of a table"
    )
    feature_history.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    feature_history.set_defaults(func=cmd_features_history)

    report = _command(commands, "report", "write a self-contained HTML report (from PostgreSQL)")
    report.add_argument("--model", required=True, help="model name")
    report.add_argument(
        "--model-version", "--version", default=None, help="only this version (default: all)"
    )
    report.add_argument(
        "--since", type=since_arg, default="24h", help="how far back: 30m, 24h, 7d (default 24h)"
    )
    report.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("report.html"),
        help="output file (default report.html)",
    )
    report.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    report.set_defaults(func=cmd_report)

    alerts = _command(commands, "alerts", "drift events and the alert history")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    tail = _command(alerts_commands, "tail", "follow the alerts topic and print events")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--from-beginning", action="store_true", help="print the topic's past events first"
    )
    tail.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    tail.set_defaults(func=cmd_alerts_tail)
    history = _command(alerts_commands, "list", "alert history: what driftline notify sent")
    history.add_argument(
        "--since", type=since_arg, default="24h", help="how far back: 30m, 24h, 7d (default 24h)"
    )
    history.add_argument(
        "--severity", choices=["warning", "critical"], help="only alerts of this severity"
    )
    history.add_argument("--model", help="only alerts of this model")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    history.set_defaults(func=cmd_alerts_list)

    notify = _command(
        commands,
        "notify",
        "turn drift events into alerts and send them (Slack, e-mail, PagerDuty, webhook)",
    )
    notify.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    notify.set_defaults(func=cmd_notify)

    dashboards = _command(commands, "dashboards", "generate the Grafana dashboards")
    dashboards_commands = dashboards.add_subparsers(dest="dashboards_command", metavar="ACTION")
    write = _command(dashboards_commands, "write", "regenerate deploy/grafana/dashboards/*.json")
    write.set_defaults(func=cmd_dashboards_write)

    demo = _command(
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

    # -- PostgreSQL store and sink ----------------------------------------------------------
    db = _command(commands, "db", "driftline's PostgreSQL store")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    for action, text in (
        ("migrate", "apply pending schema migrations, as the schema's owner (before the sink)"),
        ("upgrade", "the same as `db migrate`"),
    ):
        db_upgrade = _command(db_commands, action, text)
        db_upgrade.add_argument("--schema", default=None, help=_SCHEMA_HELP)
        db_upgrade.add_argument(
            "--grant-writer", metavar="ROLE", default=None,
            help="then let ROLE (created if missing; LOGIN, no password: set one yourself) read"
            " and write rows, nothing more: the role for the sink and the notifier",
        )  # fmt: skip
        db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_retention = _command(
        db_commands, "retention", "drop day partitions older than postgres.retention_days"
    )
    db_retention.add_argument(
        "--days", type=int, default=None, help="override postgres.retention_days"
    )
    db_retention.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    db_retention.set_defaults(func=cmd_db_retention)
    sink = _command(commands, "sink", "write driftline's output to external stores")
    sink_commands = sink.add_subparsers(dest="sink_command", metavar="STORE")
    sink_postgres = _command(
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
    sink_postgres.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    sink_postgres.set_defaults(func=cmd_sink_postgres)
    # -- end of the PostgreSQL block --------------------------------------------------------

    # -- retraining and A/B tests (docs/RETRAINING.md) --------------------------------------
    sink_sample = _command(
        sink_commands, "training-sample", "keep a sample of labelled predictions for retraining"
    )
    sink_sample.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    sink_sample.set_defaults(func=cmd_sink_training_sample)
    retrain = _command(
        commands, "retrain", "retrain a model now (--model M --reason ...), history, serve"
    )
    retrain.add_argument("--model", dest="retrain_model", help="the model to retrain now")
    retrain.add_argument("--reason", help="why (recorded with the run)")
    retrain.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    retrain.set_defaults(func=cmd_retrain)
    retrain_commands = retrain.add_subparsers(dest="retrain_command", metavar="ACTION")
    retrain_history = _command(
        retrain_commands, "history", "versions, runs and every policy evaluation of a model"
    )
    retrain_history.add_argument("--model", required=True, help="the model to show")
    retrain_history.add_argument("--json", action="store_true", help="one JSON object per line")
    retrain_history.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    retrain_history.set_defaults(func=cmd_retrain_history)
    retrain_serve = _command(
        retrain_commands, "serve", "follow the alerts topic: triggers, retraining, A/B tests"
    )
    retrain_serve.add_argument("--metrics-port", type=int, default=9110, help="/metrics port")
    retrain_serve.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    retrain_serve.set_defaults(func=cmd_retrain_serve)
    ab = _command(commands, "ab", "champion/challenger A/B tests")
    ab_commands = ab.add_subparsers(dest="ab_command", metavar="ACTION")
    ab_status = _command(ab_commands, "status", "the running (or last) A/B test of a model")
    ab_status.add_argument("--model", required=True, help="the model to show")
    ab_status.add_argument("--json", action="store_true", help="print one JSON object")
    ab_status.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    ab_status.set_defaults(func=cmd_ab_status)
    ab_stop = _command(ab_commands, "stop", "end a model's A/B test (champion keeps all)")
    ab_stop.add_argument("--model", required=True, help="the model whose test to end")
    ab_stop.add_argument("--schema", default=None, help=_SCHEMA_HELP)
    ab_stop.set_defaults(func=cmd_ab_stop)
    # -- end of the retraining block ----------------------------------------------------------
    return parser


_SCHEMA_HELP = "PostgreSQL schema to use (default: the connection's search_path)"


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
    from driftline.config import ConfigError
    from driftline.security import KafkaConnectionError
    from driftline.tabular import TableError

    if isinstance(exc, KafkaConnectionError):  # the settings may be right, the broker down
        return False
    return isinstance(exc, ConfigError | TableError | FileNotFoundError)


if __name__ == "__main__":
    sys.exit(main())
