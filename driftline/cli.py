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

    return run_demo(_config(args), config_path=args.config)


def cmd_dashboards_write(args: argparse.Namespace) -> int:
    from driftline.dashboards import write_dashboards

    for path in write_dashboards():
        print(f"wrote {path}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from driftline.simulate import parse_drift, publish

    config = _config(args)
    try:
        schedule = [parse_drift(text) for text in args.drift]
    except ValueError as exc:
        print(f"driftline simulate: {exc}", file=sys.stderr)
        return 2
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
    )
    print(f"published {sent} predictions and their labels to {config.topics.predictions}")
    return 0


def cmd_reference_build(args: argparse.Namespace) -> int:
    from driftline.detectors.profile import ReferenceProfile, describe_types, parse_feature_types

    if args.csv is not None:
        try:
            profile = ReferenceProfile.from_csv(
                args.csv,
                model=args.model,
                model_version=args.model_version,
                prediction_column=args.prediction_column,
                score_column=args.score_column,
                label_column=args.label_column,
                bins=args.bins,
                exclude=[*(args.exclude or []), *([args.id_column] if args.id_column else [])],
                feature_types=parse_feature_types(args.feature_type or []),
            )
        except ValueError as exc:
            raise SystemExit(f"driftline reference build: {exc}") from None
    else:
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
    out = (
        args.out
        or Path(_config(args).worker.reference_dir) / f"{args.model}@{args.model_version}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    profile.save(out)
    print(
        f"wrote {out}: {len(profile.numeric)} numeric, {len(profile.categorical)} categorical features"
    )
    print(describe_types(profile))
    return 0


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    import orjson

    from driftline.streams.reader import TopicReader

    config = _config(args)
    reader = TopicReader(
        config, config.topics.alerts, start="beginning" if args.from_beginning else "end"
    )
    try:
        for message in reader.messages(timeout=args.timeout):
            event = orjson.loads(message.value() or b"{}")
            if args.json:
                print(orjson.dumps(event).decode(), flush=True)
                continue
            where = event.get("feature") or event.get("test") or ""
            p_value = event.get("p_value")
            print(
                f"{event.get('severity', '?').upper():8} {event.get('type')} {event.get('model')}/"
                f"{event.get('model_version')} {where} window [{event.get('window_start')}, "
                f"{event.get('window_end')}) stat={event.get('statistic')} "
                f"p={p_value if p_value is None else f'{p_value:.3g}'} id={event.get('event_id')}",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return 0


# -- PostgreSQL store and sink (driftline db ..., driftline sink postgres) ---------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    config = _config(args)
    with PostgresStore(config.postgres.url.reveal(), schema=args.schema) as store:
        applied = store.upgrade()
    print(f"applied: {', '.join(applied) if applied else 'nothing (schema is up to date)'}")
    return 0


def cmd_db_retention(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    config = _config(args)
    days = args.days or config.postgres.retention_days
    with PostgresStore(config.postgres.url.reveal(), schema=args.schema) as store:
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
    return run_postgres_sink(
        _config(args), metrics_port=args.metrics_port, settings=settings, schema=args.schema
    )


# -- end of the PostgreSQL block ---------------------------------------------------------------


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from driftline.sinks.store import PostgresStore

    units = {"m": 60, "h": 3600, "d": 86400}
    text = args.since.strip()
    if not text[:-1].isdigit() or text[-1] not in units:
        print(
            f"driftline alerts list: --since {text!r}: expected e.g. 30m, 24h or 7d",
            file=sys.stderr,
        )
        return 2
    since = datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    config = _config(args)
    with PostgresStore(config.postgres.url.reveal()) as store:
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
    from driftline.sinks.notify import run_notifier

    return run_notifier(_config(args), timeout=args.timeout)


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

    simulate = commands.add_parser(
        "simulate", help="publish realistic fraud-model traffic, with drift"
    )
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
        help="event time of the first record (default: now)",
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
    simulate.add_argument("--model", default="fraud")
    simulate.add_argument("--model-version", default="1")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    reference = commands.add_parser("reference", help="reference profiles")
    reference_commands = reference.add_subparsers(
        dest="reference_command", required=True, metavar="ACTION"
    )
    build = reference_commands.add_parser(
        "build", help="build a reference profile from a training set"
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="training data, one row per example, header row")
    source.add_argument(
        "--simulated", type=int, metavar="N", help="N records of `driftline simulate` traffic"
    )
    build.add_argument("--model", required=True)
    build.add_argument("--model-version", required=True)
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: <worker.reference_dir>/<model>@<version>.json",
    )
    build.add_argument("--bins", type=int, default=20, help="quantile bins per numeric feature")
    build.add_argument("--prediction-column")
    build.add_argument("--score-column")
    build.add_argument("--label-column")
    build.add_argument(
        "--feature-type",
        action="append",
        metavar="NAME=TYPE",
        help="fix a feature's type: numeric, categorical or boolean (repeatable; CSV only)",
    )
    build.add_argument(
        "--exclude", action="append", metavar="NAME", help="not a feature (repeatable; CSV only)"
    )
    build.add_argument("--id-column", help="the record id column: never a feature (CSV only)")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=cmd_reference_build)

    alerts = commands.add_parser("alerts", help="drift events on the alerts topic")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    tail = alerts_commands.add_parser("tail", help="follow the alerts topic and print events")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    tail.set_defaults(func=cmd_alerts_tail)
    history = alerts_commands.add_parser("list", help="alert history: what driftline notify sent")
    history.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)")
    history.add_argument("--severity", choices=["warning", "critical"])
    history.add_argument("--model")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.set_defaults(func=cmd_alerts_list)

    notify = commands.add_parser(
        "notify",
        help="turn drift events into alerts and send them (Slack, e-mail, PagerDuty, webhook)",
    )
    notify.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    notify.set_defaults(func=cmd_notify)

    dashboards = commands.add_parser("dashboards", help="generate the Grafana dashboards")
    dashboards_commands = dashboards.add_subparsers(
        dest="dashboards_command", required=True, metavar="ACTION"
    )
    write = dashboards_commands.add_parser(
        "write", help="regenerate deploy/grafana/dashboards/*.json"
    )
    write.set_defaults(func=cmd_dashboards_write)

    demo = commands.add_parser(
        "demo", help="end-to-end run on the local stack: simulate drift, run a worker, report"
    )
    demo.add_argument(
        "--records", type=int, default=20_000, help="predictions to produce (default 20000)"
    )
    demo.set_defaults(func=cmd_demo)

    # -- PostgreSQL store and sink ----------------------------------------------------------
    schema_help = "PostgreSQL schema to use (default: the connection's search_path)"
    db = commands.add_parser("db", help="driftline's PostgreSQL store")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_upgrade = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    db_upgrade.add_argument("--schema", default=None, help=schema_help)
    db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_retention = db_commands.add_parser(
        "retention", help="drop day partitions older than postgres.retention_days"
    )
    db_retention.add_argument(
        "--days", type=int, default=None, help="override postgres.retention_days"
    )
    db_retention.add_argument("--schema", default=None, help=schema_help)
    db_retention.set_defaults(func=cmd_db_retention)
    sink = commands.add_parser("sink", help="write driftline's output to external stores")
    sink_commands = sink.add_subparsers(dest="sink_command", required=True, metavar="STORE")
    sink_postgres = sink_commands.add_parser(
        "postgres", help="consume the metrics and alerts topics into PostgreSQL"
    )
    sink_postgres.add_argument("--metrics-port", type=int, default=9109, help="/metrics port")
    sink_postgres.add_argument("--batch-messages", type=int, default=1000)
    sink_postgres.add_argument("--flush-interval", type=float, default=1.0, help="seconds")
    sink_postgres.add_argument(
        "--max-buffer", type=int, default=20_000, help="messages buffered before pausing"
    )
    sink_postgres.add_argument("--schema", default=None, help=schema_help)
    sink_postgres.set_defaults(func=cmd_sink_postgres)
    # -- end of the PostgreSQL block --------------------------------------------------------
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
