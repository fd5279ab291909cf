"""The one config loader: `config/driftline.yaml`, overridden by environment variables.

Every setting has a documented default, so an empty file is a valid config for the local stack.
Each key `section.key` can be overridden by the variable `DRIFTLINE_<SECTION>_<KEY>` (upper case),
for example `DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS` or `DRIFTLINE_POSTGRES_URL`.

Validation happens here, once, at start: an unknown key, a wrong type or a missing required value
raises `ConfigError` with a message that names the key. Secrets (passwords, URLs with credentials,
webhook URLs) are wrapped in `Secret`, whose `repr`/`str` never shows the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "KafkaConfig",
    "LabelsConfig",
    "NotificationsConfig",
    "PostgresConfig",
    "Secret",
    "TopicsConfig",
    "WindowConfig",
    "WorkerConfig",
    "load_config",
]

ENV_PREFIX = "DRIFTLINE_"
DEFAULT_CONFIG_PATH = Path("config/driftline.yaml")


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


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None

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
        _at_least(
            1, topics_partitions=self.partitions, topics_replication_factor=self.replication_factor
        )


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
    thresholds_file: str = "config/drift_thresholds.yaml"

    def __post_init__(self) -> None:
        _at_least(1, worker_batch_size=self.batch_size, worker_metrics_port=self.metrics_port)
        _at_least(0, worker_dlq_max_payload_bytes=self.dlq_max_payload_bytes)
        if self.batch_timeout_seconds <= 0:
            raise ConfigError("worker.batch_timeout_seconds: must be > 0")
        if self.checkpoint_interval_seconds <= 0:
            raise ConfigError("worker.checkpoint_interval_seconds: must be > 0")


@dataclass(frozen=True)
class WindowConfig:
    size_seconds: int = 300
    allowed_lateness_seconds: int = 60
    idle_timeout_seconds: float = 30.0
    model_sizes: dict[str, int] = field(default_factory=dict)  # model -> its own size_seconds
    max_future_skew_seconds: float = 300.0
    max_event_age_seconds: float = 0.0  # 0: no lower bound

    def __post_init__(self) -> None:
        _at_least(1, windows_size_seconds=self.size_seconds)
        for name in ("max_future_skew_seconds", "max_event_age_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"windows.{name}: must be >= 0")
        _at_least(0, windows_allowed_lateness_seconds=self.allowed_lateness_seconds)
        if self.idle_timeout_seconds <= 0:
            raise ConfigError("windows.idle_timeout_seconds: must be > 0")
        for model, size in self.model_sizes.items():
            _at_least(1, **{f"windows_model_sizes.{model}": size})

    def size_for(self, model: str) -> int:
        """The window size of `model`: its own if configured, else `size_seconds`."""
        return self.model_sizes.get(model, self.size_seconds)


@dataclass(frozen=True)
class LabelsConfig:
    horizon_seconds: float = 3600.0
    ttl_seconds: float = 86400.0
    max_pending_per_partition: int = 1_000_000
    max_accuracy_drop: float = 0.05

    def __post_init__(self) -> None:
        _at_least(1, labels_max_pending_per_partition=self.max_pending_per_partition)
        if self.horizon_seconds < 0 or self.ttl_seconds <= 0:
            raise ConfigError("labels.horizon_seconds must be >= 0 and labels.ttl_seconds > 0")
        if not 0 < self.max_accuracy_drop < 1:
            raise ConfigError("labels.max_accuracy_drop: must be between 0 and 1")


@dataclass(frozen=True)
class NotificationsConfig:
    """driftline's own alert channels (`driftline notify`); each is off until configured."""

    slack_webhook_url: Secret | None = None
    webhook_url: Secret | None = None
    webhook_secret: Secret | None = None  # HMAC-SHA256 key for X-Driftline-Signature
    pagerduty_routing_key: Secret | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    email_from: str | None = None
    email_to: str | None = None  # comma-separated
    escalate_after_windows: int = 3
    max_per_hour_per_model: int = 20
    delivery_attempts: int = 3

    def __post_init__(self) -> None:
        _at_least(1, notifications_escalate_after_windows=self.escalate_after_windows)
        _at_least(1, notifications_max_per_hour_per_model=self.max_per_hour_per_model)
        _at_least(1, notifications_delivery_attempts=self.delivery_attempts)
        if self.smtp_host and not (self.email_from and self.email_to):
            raise ConfigError(
                "notifications.email_from and notifications.email_to: required with smtp_host"
            )


@dataclass(frozen=True)
class PostgresConfig:
    url: Secret = field(
        default_factory=lambda: Secret("postgresql://driftline:driftline@127.0.0.1:5432/driftline")
    )
    retention_days: int = 90

    def __post_init__(self) -> None:
        _at_least(1, postgres_retention_days=self.retention_days)


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)


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
    return _build(Config, raw, prefix="", environ=environ)


_T = TypeVar("_T")


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if value < minimum:
            key = name.replace("_", ".", 1)
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")


def _build(cls: type[_T], raw: Any, prefix: str, environ: Mapping[str, str]) -> _T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
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
        if env_name in environ:
            values[name] = _coerce(
                environ[env_name], hint, f"{key} (from {env_name})", from_env=True
            )
        elif name in raw:
            values[name] = _coerce(raw[name], hint, key, from_env=False)
    return cls(**values)


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
