"""The one config loader: `config/driftline.yaml`, overridden by environment variables.

Every setting has a documented default, so an empty file is a valid config for the local stack.
Each key `section.key` can be overridden by the variable `DRIFTLINE_<SECTION>_<KEY>` (upper case),
for example `DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS` or `DRIFTLINE_POSTGRES_URL`.

Validation happens here, once, at start: an unknown key, a wrong type, an out-of-range value or a
missing required value raises `ConfigError` with a message that names the file and the key (or the
variable). The keys are read by the one key reader, `driftline.keys.read`, from the dataclasses
below: a field is a key, its type hint the expected type, its default the default, and a bound or
choice list is declared once on the field with `key(...)`. Secrets (passwords, URLs with credentials,
webhook URLs) are wrapped in `Secret`, whose `repr`/`str` never shows the value. Every secret `x`
can instead be read from a file with the key `x_file` (`DRIFTLINE_<SECTION>_<X>_FILE`), the way
Docker and Kubernetes mount secrets; the file's content, without a trailing newline, is the value.

Why one module of ~600 lines: it is the config's schema, one dataclass per section whose fields
are the keys with their defaults and bounds (``__post_init__`` keeps the rules across keys), plus
the environment and secret-file overlay. Most lines are declarations; keeping every key, default and bound in one
place is the point (one config loader, one place to add a key).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import ssl
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

import yaml

from driftline.detectors.abtest import ABSettings
from driftline.keys import EnvText, SettingsError, key, read, yaml_problem

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


class ConfigError(SettingsError):
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
    partitions: int = key(4, ge=1)
    replication_factor: int = key(1, ge=1)


@dataclass(frozen=True)
class WorkerConfig:
    app_id: str = "driftline"
    batch_size: int = key(5000, ge=1)
    # ... and fewer when messages are big, so that one batch's values stay near this many
    # bytes: 5,000 messages of 100 records would be 500,000 decoded records at once
    batch_max_bytes: int = key(8 * 1024 * 1024, ge=1024)
    batch_timeout_seconds: float = key(0.5, gt=0)
    checkpoint_interval_seconds: float = key(2.0, gt=0)
    # a checkpoint value above this is written in chunks of this size (streams/checkpoint.py);
    # at most the checkpoint topic's max.message.bytes (64 MiB) less room for key and headers
    checkpoint_message_bytes: int = key(8 * 1024 * 1024, ge=1024, le=63 * 1024 * 1024)
    dlq_max_payload_bytes: int = key(65536, ge=0)
    metrics_port: int = key(9108, ge=1)
    data_dir: str = ".cache/worker"
    reference_dir: str = "config/references"
    # new model versions' profiles picked up; 0: never
    reference_rescan_seconds: float = key(10.0, ge=0)
    thresholds_file: str = "config/drift_thresholds.yaml"
    # librdkafka's default; the broker refuses less than group.min.session.timeout.ms (6 s)
    session_timeout_seconds: float = key(45.0, ge=6)


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
    horizon_seconds: float = key(3600.0, ge=0)
    ttl_seconds: float = key(86400.0, gt=0)
    max_pending_per_partition: int = key(1_000_000, ge=1)
    max_accuracy_drop: float = key(0.05, gt=0, lt=1)
    max_pending_bytes_per_partition: int = key(256 * 1024 * 1024, ge=1024)
    max_checkpointed_pending: int = key(100_000, ge=0)
    # per window: at most one provisional update
    provisional_interval_seconds: float = key(10.0, ge=0)
    # a provisional window raises performance_drop only with this coverage and this many labels
    provisional_min_coverage: float = key(0.8, gt=0, le=1)
    provisional_min_labelled: int = key(200, ge=0)


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
    escalate_after_windows: int = key(3, ge=1)
    max_per_hour_per_model: int = key(20, ge=1)
    delivery_attempts: int = key(3, ge=1)

    def __post_init__(self) -> None:
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
    retention_days: int = key(90, ge=1)
    # TLS (libpq's names). sslmode defaults to verify-full when a CA (sslrootcert) is configured,
    # else to libpq's own default (prefer: TLS if the server offers it, unverified).
    sslmode: PgSslMode | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None  # client certificate
    sslkey: str | None = None

    def __post_init__(self) -> None:
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
    sample_rate: float = key(0.1, gt=0, le=1)  # share of predictions kept in training_samples
    sample_rates: dict[str, float] = key(factory=dict, gt=0, le=1)  # per model
    sample_max_rows_per_version: int = key(200_000, ge=1)
    sample_retention_days: int = key(30, ge=1)
    holdout_fraction: float = key(0.2, gt=0, lt=1)  # newest share of the labelled sample held out
    min_offline_improvement: float = key(0.0, ge=0)  # accuracy points a candidate must gain offline
    challenger_traffic_share: float = key(0.2, gt=0, le=1)
    # the A/B test's settings (detectors/abtest.py's ABSettings, whose defaults these are)
    ab_alpha: float = key(ABSettings.alpha, gt=0, lt=1)
    ab_min_detectable_effect: float = key(ABSettings.mde, gt=0, lt=1)
    ab_min_samples_per_arm: int = key(ABSettings.min_samples_per_arm, ge=1)
    ab_max_duration_seconds: float = key(ABSettings.max_duration_seconds, gt=0)
    ab_max_error_rate_increase: float = key(ABSettings.max_error_rate_increase, ge=0)
    ab_max_latency_p99_ratio: float = key(ABSettings.max_latency_p99_ratio, gt=0)
    ab_min_guardrail_samples: int = key(ABSettings.min_guardrail_samples, ge=1)
    evaluate_interval_seconds: float = key(30.0, gt=0)

    def ab_settings(self) -> ABSettings:
        """The ``ab_*`` keys as the A/B test's settings."""
        return ABSettings(
            alpha=self.ab_alpha,
            mde=self.ab_min_detectable_effect,
            min_samples_per_arm=self.ab_min_samples_per_arm,
            max_duration_seconds=self.ab_max_duration_seconds,
            max_error_rate_increase=self.ab_max_error_rate_increase,
            max_latency_p99_ratio=self.ab_max_latency_p99_ratio,
            min_guardrail_samples=self.ab_min_guardrail_samples,
        )

    def __post_init__(self) -> None:
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

    predictions: str = key("driftline", choices=lambda: _formats().PREDICTION_FORMATS)
    labels: str = key("driftline", choices=lambda: _formats().LABEL_FORMATS)
    oip_model: str | None = None  # model name for oip records (default: response model_name)
    oip_columns: dict[str, str] = field(default_factory=dict)  # tensor -> "col1 col2 ..."
    oip_prediction_output: str | None = None  # output tensor holding the prediction
    oip_require_response: bool = True  # false: requests alone become records (no join)
    # request/response halves waiting for their other half
    oip_max_pending: int = key(10_000, ge=1)
    oip_max_pending_bytes: int = key(64 * 1024 * 1024, ge=1)
    oip_max_wait_seconds: float = key(300.0, gt=0)

    def __post_init__(self) -> None:
        for tensor, names in self.oip_columns.items():
            if not names.split():
                raise ConfigError(f"formats.oip_columns.{tensor}: expected column names")


def _formats() -> ModuleType:
    """The input formats' registry (imported late: it imports this module)."""
    from driftline.streams import formats

    return formats


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
    driftline.config.ConfigError: topics.partitions (from DRIFTLINE_TOPICS_PARTITIONS): expected an integer >= 1, got 'many'
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
            raise ConfigError(
                f"config file {path} is not valid YAML: {yaml_problem(exc)}"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        raw = loaded
    _check_environment(environ)
    try:
        return read(Config, _with_environment(Config, raw, "", environ), error=ConfigError)
    except ConfigError as exc:  # name the file, unless the value came from a variable
        if path is None or "(from DRIFTLINE_" in str(exc):
            raise
        raise ConfigError(f"{path}: {exc}") from None


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


# The bounds `_check` knows (WindowConfig's; the other sections declare theirs with `key`).
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
    for name, value in values.items():
        if not within(value):
            raise ConfigError(f"{section}.{name}: must be {bound}, got {value}")


def _with_environment(cls: type[Any], raw: Any, prefix: str, environ: Mapping[str, str]) -> Any:
    """``raw`` with the ``DRIFTLINE_*`` variables and the secret files applied: a secret read
    from ``x_file`` (variable first) wins over a variable, which wins over the file's value."""
    if not isinstance(raw, dict):
        return raw  # the reader names the key and what it expected
    raw = dict(raw)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, hint, key_path = f.name, hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            given = raw.get(name)
            raw[name] = _with_environment(
                typing.cast(type, hint), {} if given is None else given, f"{key_path}.", environ
            )
            continue
        variable = ENV_PREFIX + key_path.replace(".", "_").upper()
        secret = None
        if _is_secret(hint):
            secret = _secret_file(name, key_path, raw, environ)
            raw.pop(f"{name}_file", None)
        if secret is not None:
            raw[name] = secret
        elif variable in environ:
            raw[name] = EnvText(environ[variable], variable)
    return raw


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
    for name, path in paths.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"{section}.{name}: file {path} does not exist")
