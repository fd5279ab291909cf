"""Retraining and A/B tests: thin shells over driftline/retrain/commands.py (docs/RETRAINING.md)."""

from __future__ import annotations

import argparse

from driftline.cli._base import (
    SCHEMA_HELP,
    Subparsers,
    config_of,
    subcommand,
)


def cmd_retrain(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain(config_of(args), args.retrain_model, args.reason, args.schema)


def cmd_retrain_history(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain_history(config_of(args), args.model, args.json, args.schema)


def cmd_retrain_serve(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.retrain_serve(config_of(args), args.metrics_port, args.schema)


def cmd_ab_status(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.ab_status(config_of(args), args.model, args.json, args.schema)


def cmd_ab_stop(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.ab_stop(config_of(args), args.model, args.schema)


def cmd_sink_training_sample(args: argparse.Namespace) -> int:
    from driftline.retrain import commands

    return commands.training_sample(config_of(args), args.schema)


def add_retrain_commands(commands: Subparsers, sink_commands: Subparsers) -> None:
    """`sink training-sample`, `retrain [history|serve]`, `ab status|stop`."""
    sink_sample = subcommand(
        sink_commands, "training-sample", "keep a sample of labelled predictions for retraining"
    )
    sink_sample.add_argument("--schema", default=None, help=SCHEMA_HELP)
    sink_sample.set_defaults(func=cmd_sink_training_sample)
    retrain = subcommand(
        commands, "retrain", "retrain a model now (--model M --reason ...), history, serve"
    )
    retrain.add_argument("--model", dest="retrain_model", help="the model to retrain now")
    retrain.add_argument("--reason", help="why (recorded with the run)")
    retrain.add_argument("--schema", default=None, help=SCHEMA_HELP)
    retrain.set_defaults(func=cmd_retrain)
    retrain_commands = retrain.add_subparsers(dest="retrain_command", metavar="ACTION")
    retrain_history = subcommand(
        retrain_commands, "history", "versions, runs and every policy evaluation of a model"
    )
    retrain_history.add_argument("--model", required=True, help="the model to show")
    retrain_history.add_argument("--json", action="store_true", help="one JSON object per line")
    retrain_history.add_argument("--schema", default=None, help=SCHEMA_HELP)
    retrain_history.set_defaults(func=cmd_retrain_history)
    retrain_serve = subcommand(
        retrain_commands, "serve", "follow the alerts topic: triggers, retraining, A/B tests"
    )
    retrain_serve.add_argument("--metrics-port", type=int, default=9110, help="/metrics port")
    retrain_serve.add_argument("--schema", default=None, help=SCHEMA_HELP)
    retrain_serve.set_defaults(func=cmd_retrain_serve)
    ab = subcommand(commands, "ab", "champion/challenger A/B tests")
    ab_commands = ab.add_subparsers(dest="ab_command", metavar="ACTION")
    ab_status = subcommand(ab_commands, "status", "the running (or last) A/B test of a model")
    ab_status.add_argument("--model", required=True, help="the model to show")
    ab_status.add_argument("--json", action="store_true", help="print one JSON object")
    ab_status.add_argument("--schema", default=None, help=SCHEMA_HELP)
    ab_status.set_defaults(func=cmd_ab_status)
    ab_stop = subcommand(ab_commands, "stop", "end a model's A/B test (champion keeps all)")
    ab_stop.add_argument("--model", required=True, help="the model whose test to end")
    ab_stop.add_argument("--schema", default=None, help=SCHEMA_HELP)
    ab_stop.set_defaults(func=cmd_ab_stop)
