"""The logic of `driftline retrain ...`, `driftline ab ...` and `driftline sink training-sample`
(driftline/cli/ only wires the arguments). A user's mistake prints one line and returns 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from driftline.config import Config, ConfigError
from driftline.retrain.pipeline import ArtifactError, PipelineError
from driftline.retrain.registry import Registry, RegistryError
from driftline.sinks.store import PostgresStore

__all__ = [
    "ab_status",
    "ab_stop",
    "retrain",
    "retrain_history",
    "retrain_serve",
    "training_sample",
]

_USER_ERRORS = (RegistryError, PipelineError, ArtifactError, ConfigError)


# The tables of migration 0003 the commands read; a store without them has not been upgraded.
_RETRAIN_TABLES = ("model_versions", "model_version_history", "retraining_evaluations", "ab_tests")


@contextmanager
def _store(config: Config, schema: str | None, *, migrate: bool = True) -> Iterator[PostgresStore]:
    """The store; ``migrate=False`` (the commands that only read, and `ab stop`) runs no DDL:
    a store without the retraining tables is one line that says to run `driftline db
    upgrade`."""
    with PostgresStore(config.postgres.dsn(), schema=schema) as store:
        if migrate:
            store.upgrade()
        else:
            _require_tables(store)
        yield store


def _require_tables(store: PostgresStore) -> None:
    with store.pool.connection() as conn:
        missing = [
            table
            for table in _RETRAIN_TABLES
            if conn.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone() != (False,)
        ]
        if not missing and "status" not in {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('model_versions')"
                " AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        }:
            missing = ["model_versions.status"]
    if missing:
        where = f" in schema {store.schema}" if store.schema else ""
        raise RegistryError(
            f"the store has no retraining tables{where} ({', '.join(missing)} missing):"
            " run `driftline db upgrade` first"
        )


def _guard(name: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except _USER_ERRORS as exc:
        print(f"driftline {name}: {exc}", file=sys.stderr)
        return 2


def _known(registry: Registry, model: str) -> None:
    if not (registry.versions(model) or registry.runs(model, 1) or registry.evaluations(model, 1)):
        raise RegistryError(f"model {model!r} is not in the registry (no versions, no runs)")


def retrain(config: Config, model: str | None, reason: str | None, schema: str | None) -> int:
    """`driftline retrain --model M --reason ...`: a manual trigger, run in this process."""
    if not model or not reason:
        print("driftline retrain: --model and --reason are required", file=sys.stderr)
        return 2

    def body() -> int:
        from driftline.retrain.service import RetrainService, ensure_control_topic

        ensure_control_topic(config)
        with _store(config, schema) as store:
            service = RetrainService(config, store)
            try:
                outcome = service.manual(model, reason)
            finally:
                service.close()
        if not outcome.fired:
            print(f"suppressed: {outcome.reason}")
            return 1
        if outcome.status == "failed":
            print(f"retraining failed (run {outcome.run_id}): {outcome.error}")
            return 1
        print(f"trained {model}@{outcome.version} (run {outcome.run_id}): {outcome.next_step}")
        return 0

    return _guard("retrain", body)


def retrain_history(config: Config, model: str, as_json: bool, schema: str | None) -> int:
    """`driftline retrain history --model M`: versions, runs, policy evaluations."""

    def body() -> int:
        with _store(config, schema, migrate=False) as store:
            registry = Registry(store)
            _known(registry, model)
            versions = registry.versions(model)
            history = registry.status_history(model)
            runs = registry.runs(model)
            evaluations = registry.evaluations(model)
            tests = registry.tests(model)
        if as_json:
            for kind, rows in (
                ("version", versions),
                ("status_change", history),
                ("run", runs),
                ("evaluation", evaluations),
                ("ab_test", tests),
            ):
                for row in rows:
                    print(orjson.dumps({"kind": kind, **row}, default=str).decode())
            return 0
        print(f"versions of {model}:")
        for v in versions:
            accuracy = (v["metrics"] or {}).get("accuracy")
            print(
                f"  {v['model_version']:>8}  {v['status']:11}  parent {v['parent_version'] or '-':>6}"
                f"  offline accuracy {_fmt(accuracy)}  since {v['status_changed_at']:%Y-%m-%d %H:%M:%S}"
            )
        print("status changes:")
        for h in history:
            print(
                f"  {h['changed_at']:%Y-%m-%d %H:%M:%S}  {h['model_version']:>8}"
                f"  {h['from_status'] or '-'} -> {h['to_status']}: {h['reason']}"
            )
        print("retraining runs:")
        for r in runs:
            print(
                f"  {r['requested_at']:%Y-%m-%d %H:%M:%S}  {r['status']:9}  {r['policy']}/"
                f"{r['trigger_kind']}  {r['from_version'] or '-'} -> {r['to_version'] or '-'}"
                + (f"  error: {r['error']}" if r["error"] else f"  ({r['reason']})")
            )
        print("policy evaluations:")
        for e in evaluations:
            print(
                f"  {e['evaluated_at']:%Y-%m-%d %H:%M:%S}  {'FIRED' if e['fired'] else 'suppressed':10}"
                f"  {e['policy']}/{e['trigger_kind']}: {e['reason']}"
            )
        return 0

    return _guard("retrain history", body)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def ab_status(config: Config, model: str, as_json: bool, schema: str | None) -> int:
    """`driftline ab status --model M`: the running (or last) test, its arms and p-value."""

    def body() -> int:
        with _store(config, schema, migrate=False) as store:
            registry = Registry(store)
            tests = registry.tests(model, 1)
            champion = registry.with_status(model, "champion")
        if not tests:
            if champion is None:
                raise RegistryError(f"model {model!r} is not in the registry")
            print(f"{model}: no A/B test; champion {champion['model_version']} serves all traffic")
            return 0
        test = tests[0]
        if as_json:
            print(orjson.dumps(test, default=str).decode())
            return 0
        evidence = test["evidence"] or {}
        print(
            f"{model}: A/B test {test['test_id']} {test['status']}: champion"
            f" {test['champion_version']} vs challenger {test['challenger_version']}"
            f" ({test['traffic_share']:.0%} of traffic), {float(test['elapsed_seconds']):.0f} s,"
            f" {test['looks']} looks"
        )
        for arm in ("champion", "challenger"):
            stats = evidence.get(arm) or {}
            print(
                f"  {arm:10} served {stats.get('n', 0)}, errors {stats.get('errors', 0)},"
                f" labelled {stats.get('labelled', 0)}, accuracy {_fmt(stats.get('accuracy'))},"
                f" latency p99 {_fmt(stats.get('latency_p99'))} s"
            )
        print(
            f"  difference {_fmt(evidence.get('difference'))} (always-valid CI"
            f" [{_fmt(evidence.get('ci_low'))}, {_fmt(evidence.get('ci_high'))}]),"
            f" p={float(test['p_value']):.3g}, alpha {evidence.get('alpha', '-')},"
            f" MDE {evidence.get('mde', '-')}"
        )
        print(f"  {test['reason'] or 'no look yet'}")
        return 0

    return _guard("ab status", body)


def ab_stop(config: Config, model: str, schema: str | None) -> int:
    """`driftline ab stop --model M`: end the running test; the champion takes all traffic."""

    def body() -> int:
        from driftline.retrain.service import (
            RetrainService,
            RoutingNotConfirmedError,
            ensure_control_topic,
        )

        ensure_control_topic(config)
        with _store(config, schema, migrate=False) as store:
            service = RetrainService(config, store)
            try:
                stopped = service.stop(model)
            except RoutingNotConfirmedError as exc:
                print(
                    f"driftline ab stop: the test is stopped in the registry, but {exc}; the"
                    " routers keep the old split until `driftline retrain serve` republishes"
                    " it at its next tick",
                    file=sys.stderr,
                )
                return 1
            finally:
                service.close()
        if not stopped:
            raise RegistryError(f"model {model!r} has no running A/B test")
        print(f"{model}: A/B test stopped; the champion serves all traffic")
        return 0

    return _guard("ab stop", body)


def retrain_serve(config: Config, metrics_port: int | None, schema: str | None) -> int:
    from driftline.retrain.service import serve

    return _guard("retrain serve", lambda: serve(config, schema=schema, metrics_port=metrics_port))


def training_sample(config: Config, schema: str | None) -> int:
    from driftline.retrain.sample import run_training_sample_sink

    return _guard("sink training-sample", lambda: run_training_sample_sink(config, schema=schema))
