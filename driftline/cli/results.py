"""Results out: `alerts tail|list`, `notify`, `features history`, `report`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from driftline.cli._base import (
    SCHEMA_HELP,
    Subparsers,
    config_of,
    kafka_checked,
    postgres_checked,
    since_arg,
    subcommand,
)
from driftline.diagnose import CommandError


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
    if event.get("type") == "operational":
        return _operational_line(event)
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


def _operational_line(event: dict[str, object]) -> str:
    """An `operational` event: a finding about driftline itself (no model version, no window).

    >>> print(_operational_line({"type": "operational", "severity": "warning", "model": "",
    ...     "test": "checkpoint_dropped", "detected_at": 70, "event_id": "op1",
    ...     "evidence": {"stage": "stage1", "checkpoint_key": "stage1/3", "error": "bad json"}}))
    1970-01-01T00:01:10Z WARNING  operational checkpoint_dropped: stage1 checkpoint stage1/3 could not be restored (bad json); dropped, its state refills from new records [op1]
    """
    head = (
        f"{_iso(event.get('detected_at'))} {str(event.get('severity', '?')).upper():8} "
        f"operational {event.get('test') or '?'}"
    )
    if event.get("model"):
        head += f" model {event['model']}"
    evidence = event.get("evidence")
    detail = evidence if isinstance(evidence, dict) else {}
    tail = f" [{event.get('event_id')}]"
    if event.get("test") == "checkpoint_dropped":
        error = f" ({detail['error']})" if detail.get("error") else ""
        return (
            f"{head}: {detail.get('stage') or '?'} checkpoint {detail.get('checkpoint_key') or '?'}"
            f" could not be restored{error}; dropped, its state refills from new records{tail}"
        )
    said = " ".join(f"{name}={value}" for name, value in detail.items() if value is not None)
    return f"{head}: {said or 'no detail'}{tail}"


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    import orjson

    from driftline.streams.reader import TopicReader, decode_object, describe_skip

    config = config_of(args)
    kafka_checked(args, config.topics.alerts)
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


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from driftline.sinks.store import PostgresStore

    since = args.since
    config = postgres_checked(args)
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

    config = config_of(args)
    kafka_checked(args, config.topics.alerts, config.topics.metrics)
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

    config = postgres_checked(args)
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

    config = postgres_checked(args)
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


def add_result_commands(commands: Subparsers) -> None:
    """`features history`, `report`, `alerts tail|list`, `notify`."""
    features = subcommand(commands, "features", "per-feature drift history (from PostgreSQL)")
    features_commands = features.add_subparsers(dest="features_command", metavar="ACTION")
    feature_history = subcommand(
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
    feature_history.add_argument("--schema", default=None, help=SCHEMA_HELP)
    feature_history.set_defaults(func=cmd_features_history)

    report = subcommand(commands, "report", "write a self-contained HTML report (from PostgreSQL)")
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
    report.add_argument("--schema", default=None, help=SCHEMA_HELP)
    report.set_defaults(func=cmd_report)

    alerts = subcommand(commands, "alerts", "drift events and the alert history")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    tail = subcommand(alerts_commands, "tail", "follow the alerts topic and print events")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--from-beginning", action="store_true", help="print the topic's past events first"
    )
    tail.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    tail.set_defaults(func=cmd_alerts_tail)
    history = subcommand(alerts_commands, "list", "alert history: what driftline notify sent")
    history.add_argument(
        "--since", type=since_arg, default="24h", help="how far back: 30m, 24h, 7d (default 24h)"
    )
    history.add_argument(
        "--severity", choices=["warning", "critical"], help="only alerts of this severity"
    )
    history.add_argument("--model", help="only alerts of this model")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.add_argument("--schema", default=None, help=SCHEMA_HELP)
    history.set_defaults(func=cmd_alerts_list)

    notify = subcommand(
        commands,
        "notify",
        "turn drift events into alerts and send them (Slack, e-mail, PagerDuty, webhook)",
    )
    notify.add_argument(
        "--timeout", type=float, default=float("inf"), help="stop after this many seconds"
    )
    notify.set_defaults(func=cmd_notify)
