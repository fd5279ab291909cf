"""The one config loader: `config/driftline.yaml`, overridden by environment variables.

Every setting has a documented default, so an empty file is a valid config for the local stack.
Each key `section.key` can be overridden by the variable `DRIFTLINE_<SECTION>_<KEY>` (upper case),
for example `DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS` or `DRIFTLINE_POSTGRES_URL`.

Validation happens here, once, at start: an unknown key, a wrong type or a missing required value
raises `ConfigError` with a message that names the key. Secrets (passwords, URLs with credentials,
webhook URLs) are wrapped in `Secret`, whose `repr`/`str` never shows the value. Every secret `x`
can instead be read from a file with the key `x_file` (`DRIFTLINE_<SECTION>_<X>_FILE`), the way
Docker and Kubernetes mount secrets; the file's content, without a trailing newline, is the value.

Why one module of ~700 lines: it is the config's schema, one dataclass per section whose fields
are the keys with their defaults and whose ``__post_init__`` checks them (through `_check`), plus
the generic loader. Most lines are declarations; keeping every key, default and bound in one
place is the point (one config loader, one place to add a key).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "FormatsConfig",
    "KafkaConfig",
    "LabelsConfig",
    "NotificationsConfig",
    "PostgresConfig",
    "RetrainingConfig",
    "Secret",
    "TopicsConfig",
    "WindowConfig",
    "WorkerConfig",
    "load_config",
]

ENV_PREFIX = "DRIFTLINE_"
DEFAULT_CONFIG_PATH = Path("config/driftline.yaml")
# DRIFTLINE_* variables that are not config keys (the local stack's scripts and the tests read
# them); any other DRIFTLINE_* variable that names no key is a mistake and fails at start.
NON_CONFIG_VARIABLES = frozenset(
    {
        "DRIFTLINE_CACHE",
        "DRIFTLINE_RUN",
        "DRIFTLINE_LOGS",
        "DRIFTLINE_PROMETHEUS_URL",
        "DRIFTLINE_ALERTMANAGER_URL",
        "DRIFTLINE_DEBUG_LOGS",
        "DRIFTLINE_TEST_CLOCK_SKEW_SECONDS",  # tests only: streams/app.py
    }
)


class ConfigError(ValueError):
    """The configuration is invalid. The message names the offending key."""


class Secret:
    """A string that never shows itself in logs, reprs or `--help` output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it (a client constructor)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PgSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None  # client certificate (mTLS), PEM
    ssl_keyfile: str | None = None  # its private key, PEM
    ssl_key_password: Secret | None = None  # if the key is encrypted

    def __post_init__(self) -> None:
        _files_exist(
            "kafka",
            ssl_cafile=self.ssl_cafile,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError(
                "kafka.ssl_keyfile: set kafka.ssl_certfile too (the client certificate)"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ConfigError(
                f"kafka.sasl_username and kafka.sasl_password: required with security_protocol "
                f"{self.security_protocol}"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for Python clients (aiokafka/Faust), or None without TLS: verifies the
        broker against `ssl_cafile` (else the system's CAs) and its host name, and presents the
        client certificate when one is configured.

        >>> KafkaConfig().ssl_context() is None
        True
        """
        if "SSL" not in self.security_protocol:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            password = self.ssl_key_password.reveal() if self.ssl_key_password else None
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password)
        return context

    def confluent_settings(self) -> dict[str, str | int | float | bool]:
        """Connection settings in librdkafka's vocabulary (for confluent-kafka clients)."""
        settings: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            settings["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            settings["sasl.username"] = self.sasl_username
        if self.sasl_password:
            settings["sasl.password"] = self.sasl_password.reveal()
        if self.ssl_cafile:
            settings["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            settings["ssl.certificate.location"] = self.ssl_certfile
        if self.ssl_keyfile:
            settings["ssl.key.location"] = self.ssl_keyfile
        if self.ssl_key_password:
            settings["ssl.key.password"] = self.ssl_key_password.reveal()
        return settings


@dataclass(frozen=True)
class TopicsConfig:
    predictions: str = "driftline.predictions"
    labels: str = "driftline.labels"
    alerts: str = "driftline.alerts"
    dlq: str = "driftline.dlq"
    metrics: str = "driftline.metrics"
    partitions: int = 4
    replication_factor: int = 1

    def __post_init__(self) -> None:
        _check(
            "topics", "at least 1", partitions=self.partitions,
            replication_factor=self.replication_factor,
        )  # fmt: skip


@dataclass(frozen=True)
class WorkerConfig:
    app_id: str = "driftline"
    batch_size: int = 5000
    batch_timeout_seconds: float = 0.5
    checkpoint_interval_seconds: float = 2.0
    dlq_max_payload_bytes: int = 65536
    metrics_port: int = 9108
    data_dir: str = ".cache/worker"
    reference_dir: str = "config/references"
    reference_rescan_seconds: float = 10.0  # new model versions' profiles picked up; 0: never
    thresholds_file: str = "config/drift_thresholds.yaml"
    session_timeout_seconds: float = 45.0  # librdkafka's default

    def __post_init__(self) -> None:
        _check("worker", "at least 1", batch_size=self.batch_size, metrics_port=self.metrics_port)
        # the broker refuses less than its group.min.session.timeout.ms (6 s by default)
        _check("worker", "at least 6", session_timeout_seconds=self.session_timeout_seconds)
        _check(
            "worker", ">= 0", dlq_max_payload_bytes=self.dlq_max_payload_bytes,
            reference_rescan_seconds=self.reference_rescan_seconds,  # 0: never
        )  # fmt: skip
        _check(
            "worker", "> 0", batch_timeout_seconds=self.batch_timeout_seconds,
            checkpoint_interval_seconds=self.checkpoint_interval_seconds,
        )  # fmt: skip


@dataclass(frozen=True)
class WindowConfig:
    size_seconds: int = 300
    allowed_lateness_seconds: int = 60
    idle_timeout_seconds: float = 30.0
    model_sizes: dict[str, int] = field(default_factory=dict)  # model -> its own size_seconds
    max_future_skew_seconds: float = 300.0
    max_event_age_seconds: float = 0.0  # 0: no lower bound

    def __post_init__(self) -> None:
        _check(
            "windows", "at least 1", size_seconds=self.size_seconds,
            **{f"model_sizes.{model}": size for model, size in self.model_sizes.items()},
        )  # fmt: skip
        _check(
            "windows", ">= 0", max_future_skew_seconds=self.max_future_skew_seconds,
            max_event_age_seconds=self.max_event_age_seconds,
            allowed_lateness_seconds=self.allowed_lateness_seconds,
        )  # fmt: skip
        _check("windows", "> 0", idle_timeout_seconds=self.idle_timeout_seconds)
        # the size of each model's windows is decided in one place: streams.windows.WindowSizes


@dataclass(frozen=True)
class LabelsConfig:
    horizon_seconds: float = 3600.0
    ttl_seconds: float = 86400.0
    max_pending_per_partition: int = 1_000_000
    max_accuracy_drop: float = 0.05
    max_pending_bytes_per_partition: int = 256 * 1024 * 1024
    max_checkpointed_pending: int = 100_000
    provisional_interval_seconds: float = 10.0  # per window: at most one provisional update
    provisional_min_coverage: float = 0.8  # a provisional window raises performance_drop ...
    provisional_min_labelled: int = 200  # ... only with this coverage and this many labels

    def __post_init__(self) -> None:
        _check("labels", "at least 1", max_pending_per_partition=self.max_pending_per_partition)
        _check(
            "labels", "at least 1024",
            max_pending_bytes_per_partition=self.max_pending_bytes_per_partition,
        )  # fmt: skip
        _check(
            "labels", ">= 0", max_checkpointed_pending=self.max_checkpointed_pending,
            horizon_seconds=self.horizon_seconds,
        )  # fmt: skip
        _check("labels", "> 0", ttl_seconds=self.ttl_seconds)
        _check("labels", "in (0, 1)", max_accuracy_drop=self.max_accuracy_drop)
        _check(
            "labels", ">= 0", provisional_interval_seconds=self.provisional_interval_seconds,
            provisional_min_labelled=self.provisional_min_labelled,
        )  # fmt: skip
        _check("labels", "in (0, 1]", provisional_min_coverage=self.provisional_min_coverage)


@dataclass(frozen=True)
class NotificationsConfig:
    """driftline's own alert channels (`driftline notify`); each is off until configured."""

    slack_webhook_url: Secret | None = None
    webhook_url: Secret | None = None
    webhook_secret: Secret | None = None  # HMAC-SHA256 key for X-Driftline-Signature
    pagerduty_routing_key: Secret | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str | None = None
    smtp_port: int = 587  # 465: implicit TLS (SMTPS); otherwise STARTTLS unless smtp_starttls
    smtp_starttls: bool = True  # false only for a relay without login (credentials need TLS)
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    email_from: str | None = None
    email_to: str | None = None  # comma-separated
    escalate_after_windows: int = 3
    max_per_hour_per_model: int = 20
    delivery_attempts: int = 3

    def __post_init__(self) -> None:
        _check(
            "notifications", "at least 1", escalate_after_windows=self.escalate_after_windows,
            max_per_hour_per_model=self.max_per_hour_per_model,
            delivery_attempts=self.delivery_attempts,
        )  # fmt: skip
        if self.smtp_host and not (self.email_from and self.email_to):
            raise ConfigError(
                "notifications.email_from and notifications.email_to: required with smtp_host"
            )
        if self.smtp_password and not self.smtp_starttls and self.smtp_port != 465:
            raise ConfigError(
                "notifications.smtp_starttls: the SMTP password would be sent in clear text; "
                "enable STARTTLS or use implicit TLS (smtp_port 465)"
            )


@dataclass(frozen=True)
class PostgresConfig:
    url: Secret = field(
        default_factory=lambda: Secret("postgresql://driftline:driftline@127.0.0.1:5432/driftline")
    )
    retention_days: int = 90
    # TLS (libpq's names). sslmode defaults to verify-full when a CA (sslrootcert) is configured,
    # else to libpq's own default (prefer: TLS if the server offers it, unverified).
    sslmode: PgSslMode | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None  # client certificate
    sslkey: str | None = None

    def __post_init__(self) -> None:
        _check("postgres", "at least 1", retention_days=self.retention_days)
        _files_exist(
            "postgres", sslrootcert=self.sslrootcert, sslcert=self.sslcert, sslkey=self.sslkey
        )
        if self.sslmode in ("verify-ca", "verify-full") and not self.sslrootcert:
            raise ConfigError(f"postgres.sslrootcert: required with sslmode {self.sslmode}")

    def tls_settings(self) -> dict[str, str]:
        """The libpq TLS parameters this config adds to the URL.

        >>> PostgresConfig(sslrootcert=None).tls_settings()
        {}
        """
        settings = {
            "sslrootcert": self.sslrootcert,
            "sslcert": self.sslcert,
            "sslkey": self.sslkey,
            "sslmode": self.sslmode or ("verify-full" if self.sslrootcert else None),
        }
        return {key: value for key, value in settings.items() if value}

    def dsn(self) -> str:
        """The connection string for psycopg: the URL with the TLS settings (parameters already
        in the URL win). Contains the password: pass it to the driver, never log it."""
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            given = conninfo_to_dict(self.url.reveal())
        except ProgrammingError:  # the message would quote the URL, password included
            raise ConfigError("postgres.url: not a PostgreSQL URL or connection string") from None
        extra = {k: v for k, v in self.tls_settings().items() if k not in given}
        return make_conninfo(self.url.reveal(), **extra) if extra else self.url.reveal()


@dataclass(frozen=True)
class RetrainingConfig:
    """Retraining, registry and A/B tests (`driftline retrain ...`, docs/RETRAINING.md)."""

    policies_file: str = "config/retraining_policies.yaml"
    pipeline: str = "driftline.retrain.sklearn_pipeline:train"  # package.module:function
    artifact_dir: str = ".cache/artifacts"
    registry: Literal["postgres", "mlflow"] = "postgres"
    mlflow_tracking_uri: str | None = None  # with registry: mlflow, e.g. http://mlflow:5000
    control_topic: str = "driftline.model-control"
    sample_rate: float = 0.1  # share of predictions kept in training_samples
    sample_rates: dict[str, float] = field(default_factory=dict)  # per model
    sample_max_rows_per_version: int = 200_000
    sample_retention_days: int = 30
    holdout_fraction: float = 0.2  # newest share of the labelled sample held out
    min_offline_improvement: float = 0.0  # accuracy points a candidate must gain offline
    challenger_traffic_share: float = 0.2
    ab_alpha: float = 0.05
    ab_min_detectable_effect: float = 0.03
    ab_min_samples_per_arm: int = 200
    ab_max_duration_seconds: float = 86_400.0
    ab_max_error_rate_increase: float = 0.02
    ab_max_latency_p99_ratio: float = 1.5
    ab_min_guardrail_samples: int = 100
    evaluate_interval_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check(
            "retraining",
            "at least 1",
            sample_max_rows_per_version=self.sample_max_rows_per_version,
            sample_retention_days=self.sample_retention_days,
            ab_min_samples_per_arm=self.ab_min_samples_per_arm,
            ab_min_guardrail_samples=self.ab_min_guardrail_samples,
        )
        _check(
            "retraining",
            "in (0, 1]",
            sample_rate=self.sample_rate,
            **{f"sample_rates.{m}": r for m, r in self.sample_rates.items()},
            challenger_traffic_share=self.challenger_traffic_share,
        )
        _check(
            "retraining",
            "in (0, 1)",
            holdout_fraction=self.holdout_fraction,
            ab_alpha=self.ab_alpha,
            ab_min_detectable_effect=self.ab_min_detectable_effect,
        )
        _check(
            "retraining",
            "> 0",
            ab_max_duration_seconds=self.ab_max_duration_seconds,
            ab_max_latency_p99_ratio=self.ab_max_latency_p99_ratio,
            evaluate_interval_seconds=self.evaluate_interval_seconds,
        )
        _check(
            "retraining",
            ">= 0",
            ab_max_error_rate_increase=self.ab_max_error_rate_increase,
            min_offline_improvement=self.min_offline_improvement,
        )
        if self.registry == "mlflow" and not self.mlflow_tracking_uri:
            raise ConfigError("retraining.mlflow_tracking_uri: required with registry: mlflow")
        module, sep, function = self.pipeline.partition(":")
        if not sep or not module or not function.isidentifier():
            raise ConfigError(
                f"retraining.pipeline: expected package.module:function, got {self.pipeline!r}"
            )

    def sample_rate_for(self, model: str) -> float:
        """The sample rate of `model`: its own if configured, else `sample_rate`."""
        return self.sample_rates.get(model, self.sample_rate)


@dataclass(frozen=True)
class FormatsConfig:
    """Wire formats of the input topics (`driftline.streams.formats`, docs/FORMATS.md)."""

    predictions: str = "driftline"  # driftline | cloudevents | oip
    labels: str = "driftline"  # driftline | cloudevents
    oip_model: str | None = None  # model name for oip records (default: response model_name)
    oip_columns: dict[str, str] = field(default_factory=dict)  # tensor -> "col1 col2 ..."
    oip_prediction_output: str | None = None  # output tensor holding the prediction
    oip_require_response: bool = True  # false: requests alone become records (no join)
    oip_max_pending: int = 10_000  # request/response halves waiting for their other half
    oip_max_pending_bytes: int = 64 * 1024 * 1024
    oip_max_wait_seconds: float = 300.0

    def __post_init__(self) -> None:
        from driftline.streams.formats import LABEL_FORMATS, PREDICTION_FORMATS

        for key, value, known in (
            ("predictions", self.predictions, PREDICTION_FORMATS),
            ("labels", self.labels, LABEL_FORMATS),
        ):
            if value not in known:
                raise ConfigError(
                    f"formats.{key}: expected one of {', '.join(known)}, got {value!r}"
                )
        _check(
            "formats", "at least 1", oip_max_pending=self.oip_max_pending,
            oip_max_pending_bytes=self.oip_max_pending_bytes,
        )  # fmt: skip
        _check("formats", "> 0", oip_max_wait_seconds=self.oip_max_wait_seconds)
        for tensor, names in self.oip_columns.items():
            if not names.split():
                raise ConfigError(f"formats.oip_columns.{tensor}: expected column names")


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    retraining: RetrainingConfig = field(default_factory=RetrainingConfig)
    formats: FormatsConfig = field(default_factory=FormatsConfig)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply `DRIFTLINE_*` overrides, validate, return a `Config`.

    >>> load_config(environ={"DRIFTLINE_TOPICS_PARTITIONS": "8"}).topics.partitions
    8
    >>> load_config(environ={"DRIFTLINE_TOPICS_PARTITIONS": "many"})
    Traceback (most recent call last):
    ...
    driftline.config.ConfigError: topics.partitions (from DRIFTLINE_TOPICS_PARTITIONS): expected an integer, got 'many'
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        raw = loaded
    _check_environment(environ)
    return _build(Config, raw, prefix="", environ=environ)


def environment_variables(cls: type[Any] = Config, prefix: str = "") -> dict[str, str]:
    """Every `DRIFTLINE_*` variable the config reads, mapped to its key.

    >>> environment_variables()["DRIFTLINE_TOPICS_PREDICTIONS"]
    'topics.predictions'
    """
    names: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            names.update(environment_variables(hints[f.name], f"{key}."))
        else:
            names[ENV_PREFIX + key.replace(".", "_").upper()] = key
            if _is_secret(hints[f.name]):  # the secret read from a file instead
                names[ENV_PREFIX + f"{key}_file".replace(".", "_").upper()] = f"{key}_file"
    return names


def _check_environment(environ: Mapping[str, str]) -> None:
    """A misspelled `DRIFTLINE_*` variable fails like an unknown key instead of being ignored.

    >>> load_config(environ={"DRIFTLINE_TOPIC_PREDICTIONS": "mine"})
    Traceback (most recent call last):
    ...
    driftline.config.ConfigError: unknown environment variable DRIFTLINE_TOPIC_PREDICTIONS (did you mean DRIFTLINE_TOPICS_PREDICTIONS?)
    """
    known = environment_variables()
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in NON_CONFIG_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown environment variable {name}{hint}")


_T = TypeVar("_T")


# The bounds `_check` knows; "at least N" (any whole N) besides.
_BOUNDS: dict[str, Callable[[float], bool]] = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in (0, 1)": lambda v: 0 < v < 1,
}


def _check(section: str, bound: str, **values: float) -> None:
    """The one bounds check of the config: ConfigError naming ``section.key`` and the value for
    the first of ``values`` outside ``bound`` (a key of `_BOUNDS`, or ``"at least N"``).

    >>> _check("worker", "> 0", batch_timeout_seconds=0.5, checkpoint_interval_seconds=0)
    Traceback (most recent call last):
    ...
    driftline.config.ConfigError: worker.checkpoint_interval_seconds: must be > 0, got 0
    >>> _check("topics", "at least 1", partitions=0)
    Traceback (most recent call last):
    ...
    driftline.config.ConfigError: topics.partitions: must be at least 1, got 0
    """
    if bound.startswith("at least "):
        minimum = int(bound.removeprefix("at least "))
        within: Callable[[float], bool] = lambda v: v >= minimum  # noqa: E731
    else:
        within = _BOUNDS[bound]
    for key, value in values.items():
        if not within(value):
            raise ConfigError(f"{section}.{key}: must be {bound}, got {value}")


def _build(cls: type[_T], raw: Any, prefix: str, environ: Mapping[str, str]) -> _T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    secret_files = {f"{name}_file": name for name in fields if _is_secret(hints[name])}
    for key in raw:
        if key not in fields and key not in secret_files:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
    values: dict[str, Any] = {}
    for name in fields:
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw.get(name, {}), f"{key}.", environ)  # type: ignore[arg-type]
            continue
        env_name = ENV_PREFIX + key.replace(".", "_").upper()
        secret_file = _secret_file(name, key, raw, environ) if _is_secret(hint) else None
        if secret_file is not None:
            values[name] = secret_file
        elif env_name in environ:
            values[name] = _coerce(
                environ[env_name], hint, f"{key} (from {env_name})", from_env=True
            )
        elif name in raw:
            values[name] = _coerce(raw[name], hint, key, from_env=False)
    return cls(**values)


def _is_secret(hint: Any) -> bool:
    return hint is Secret or Secret in get_args(hint)


def _secret_file(name: str, key: str, raw: dict[str, Any], environ: Mapping[str, str]) -> Any:
    """The secret `key` read from the file named by `key_file` (environment first), or None."""
    env_name = ENV_PREFIX + f"{key}_file".replace(".", "_").upper()
    if env_name in environ:
        path, source = environ[env_name], f"{key}_file (from {env_name})"
    elif raw.get(f"{name}_file") is not None:
        path, source = raw[f"{name}_file"], f"{key}_file"
    else:
        return None
    try:
        value = Path(str(path)).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{source}: {path} is empty")
    return Secret(value)


def _files_exist(section: str, **paths: str | None) -> None:
    for key, path in paths.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"{section}.{key}: file {path} does not exist")


def _coerce(value: Any, hint: Any, key: str, *, from_env: bool) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None or (from_env and value == ""):
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: a value is required")
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, from_env=from_env)
    if value is None:
        raise ConfigError(f"{key}: a value is required")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if hint is Secret:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string")
        return Secret(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    if origin is dict:
        key_type, value_type = args
        if from_env:  # "fraud=60,credit=3600"
            pairs = [item.partition("=") for item in value.split(",") if item.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ConfigError(f"{key}: expected NAME=VALUE[,NAME=VALUE...], got {value!r}")
            value = {name.strip(): item.strip() for name, _, item in pairs}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        base, _, source = key.partition(" (from ")

        def inner(name: Any) -> str:
            return f"{base}.{name}" + (f" (from {source}" if source else "")

        return {
            _coerce(k, key_type, inner(k), from_env=False): _coerce(
                v, value_type, inner(k), from_env=from_env
            )
            for k, v in value.items()
        }
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover - schema bug
