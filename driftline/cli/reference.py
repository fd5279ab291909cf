"""Data in: `driftline simulate` (traffic) and `driftline reference build` (a profile from a
training table or simulated records)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from driftline.cli._base import (
    Subparsers,
    config_of,
    kafka_checked,
    positive_int,
    subcommand,
)


def cmd_simulate(args: argparse.Namespace) -> int:
    from driftline.simulate import parse_drift, publish

    try:
        schedule = [parse_drift(text) for text in args.drift]
    except ValueError as exc:
        print(f"driftline simulate: {exc}", file=sys.stderr)
        return 2
    config = kafka_checked(args)
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
    out = args.out or Path(config_of(args).worker.reference_dir) / name
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


def add_data_commands(commands: Subparsers) -> None:
    """`simulate`, `reference build`."""
    simulate = subcommand(commands, "simulate", "publish realistic fraud-model traffic, with drift")
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

    reference = subcommand(commands, "reference", "reference profiles")
    reference_commands = reference.add_subparsers(dest="reference_command", metavar="ACTION")
    build = subcommand(reference_commands, "build", "build a reference profile from a training set")
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
