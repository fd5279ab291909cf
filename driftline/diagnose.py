"""One-line explanations of what went wrong, for the command line.

A user's mistake (a wrong password, a broker that is not running, a topic nobody created) must
end in one line that says what failed and what to do, not in a traceback. Two tools here:

* checks run before a command does real work, so that it fails in seconds with the real reason:
  :func:`check_kafka` (broker reachable, authentication, topics present) and
  :func:`check_postgres` (the server's own message, not the pool's ``PoolTimeout``);
* :func:`explain`, which turns an exception that escaped a command into that line.

Credentials never appear in a message: URLs are shown with the password masked.

>>> mask_url("postgresql://driftline:s3cret@db:5432/driftline")
'postgresql://driftline:***@db:5432/driftline'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from driftline.config import Config, Secret
from driftline.keys import SettingsError

__all__ = [
    "CommandError",
    "check_kafka",
    "check_postgres",
    "check_postgres_credentials",
    "config_as_dict",
    "doctor",
    "expected",
    "explain",
    "format_doctor",
    "mask_url",
]

_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]*)(?P<at>@)")


class CommandError(RuntimeError):
    """A failure the user can fix; the message is the one line to print."""


# libpq also takes the password (and the client key's passphrase) as a URL query parameter or
# a key=value conninfo word: `?password=...`, `&sslpassword=...`, `password='a b'`.
_PASSWORD_PARAMETER = re.compile(
    r"(?P<head>(?<![a-z0-9_])(?:ssl)?password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^&\s]*)",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """Replace the password of every URL or conninfo in ``text`` by ``***``: the one in the
    user info and any `password` / `sslpassword` parameter.

    >>> mask_url("postgresql://app:pw@db/x?sslmode=require&password=pw2 and password='a b'")
    'postgresql://app:***@db/x?sslmode=require&password=*** and password=***'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}***{m['at']}", text)
    return _PASSWORD_PARAMETER.sub(lambda m: f"{m['head']}***", text)


# -- Kafka ------------------------------------------------------------------------------------


def check_kafka(config: Config, topics: Iterable[str] = (), timeout: float = 5.0) -> None:
    """Raise unless the brokers answer within ``timeout`` seconds with the configured security
    settings (`driftline.security.check_kafka` explains refused logins and certificates) and
    every topic in ``topics`` exists."""
    from confluent_kafka.admin import AdminClient

    from driftline.security import check_kafka as check_connection

    check_connection(config.kafka, timeout=timeout)
    wanted = list(topics)
    if not wanted:
        return
    settings: dict[str, Any] = {**config.kafka.confluent_settings(), "log_level": 0}
    metadata = AdminClient(settings).list_topics(timeout=timeout)
    missing = [t for t in wanted if t not in metadata.topics]
    if missing:
        raise CommandError(
            f"topic {', '.join(missing)} does not exist on {config.kafka.bootstrap_servers}: "
            "create it with `driftline topics create`, or point topics.* (DRIFTLINE_TOPICS_*) "
            "at your topics"
        )


# -- PostgreSQL -------------------------------------------------------------------------------


def check_postgres(url: Secret | str, timeout: float = 5.0) -> None:
    """Raise CommandError with the server's reason unless a connection to ``url`` opens."""
    import psycopg

    raw = url.reveal() if isinstance(url, Secret) else url
    try:
        psycopg.connect(raw, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as exc:
        raise CommandError(postgres_message(raw, exc)) from None


def check_postgres_credentials(url: Secret | str, timeout: float = 5.0) -> None:
    """Raise CommandError when PostgreSQL refuses the login or the database does not exist
    (mistakes that waiting will not fix); an unreachable server is left to the caller's retries."""
    try:
        check_postgres(url, timeout)
    except CommandError as exc:
        if any(reason in str(exc) for reason in _PERMANENT_POSTGRES_FAILURES):
            raise


_PERMANENT_POSTGRES_FAILURES = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
)


def postgres_message(url: str, exc: BaseException) -> str:
    """The one line for a failed PostgreSQL connection: where, the server's reason, what to do."""
    text = " ".join(str(exc).split())
    fatal = re.findall(r"FATAL:\s*(.+?)(?=\s*(?:connection to server|$))", text)
    reason = fatal[-1] if fatal else re.sub(r"^connection failed:\s*", "", text)
    reason = re.sub(r'^connection to server at "[^"]*", port \d+ failed:\s*', "", reason)
    hint = "check postgres.url (DRIFTLINE_POSTGRES_URL)"
    if "password authentication failed" in reason or "no password supplied" in reason:
        hint = "check the user and password in postgres.url (DRIFTLINE_POSTGRES_URL)"
    elif "Connection refused" in reason or "timeout" in reason.lower():
        hint = "is PostgreSQL running? check the host and port in postgres.url (DRIFTLINE_POSTGRES_URL)"
    elif "does not exist" in reason:
        hint = "create it, or fix the name in postgres.url (DRIFTLINE_POSTGRES_URL)"
    return f"cannot connect to PostgreSQL at {mask_url(url)}: {mask_url(reason)}; {hint}"


# -- the catch-all ------------------------------------------------------------------------------


def expected(exc: BaseException) -> bool:
    """A failure with a known cause, fully explained by :func:`explain` (no traceback hint)."""
    from confluent_kafka import KafkaException
    from psycopg import OperationalError
    from psycopg.errors import UndefinedTable
    from psycopg_pool import PoolTimeout

    from driftline.tabular import TableError

    known = (
        CommandError,
        SettingsError,  # ConfigError, ThresholdsError, ConceptConfigError
        TableError,
        OSError,
        KafkaException,
        OperationalError,
        PoolTimeout,
        UndefinedTable,  # explained: run `driftline db upgrade`
    )
    # TopicError (driftline.streams.topics): a topic is missing or not co-partitioned
    return isinstance(exc, known) or type(exc).__name__ == "TopicError"


def explain(exc: BaseException, config: Config | None = None) -> str:
    """The one line for an exception that escaped a command."""
    if isinstance(exc, CommandError) or type(exc).__name__ == "TopicError":
        return str(exc)
    from driftline.security import KafkaConnectionError

    if isinstance(exc, KafkaConnectionError) and str(exc).startswith("cannot reach"):
        return str(exc)  # the settings may be right and the broker down: no "configuration"
    if isinstance(exc, SettingsError):
        return f"configuration error: {exc}"
    from driftline.tabular import TableError

    if isinstance(exc, TableError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file or directory"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a directory, expected a file name"
    if isinstance(exc, NotADirectoryError):
        return f"{exc.filename}: a part of this path is a file, not a directory"
    try:
        import psycopg
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    else:
        url = config.postgres.url.reveal() if config is not None else ""
        if isinstance(exc, PoolTimeout) and url:
            try:  # the pool hides the reason: ask the server directly
                check_postgres(url)
            except CommandError as real:
                return str(real)
        if isinstance(exc, psycopg.OperationalError):
            return postgres_message(url, exc)
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return (
                f"PostgreSQL: {str(exc).splitlines()[0]}: the schema is not there yet; "
                "run `driftline db upgrade`"
            )
    from confluent_kafka import KafkaException

    if isinstance(exc, KafkaException):
        error: Any = exc.args[0] if exc.args else exc
        text = error.str() if hasattr(error, "str") else str(error)
        return f"Kafka: {text}"
    message = mask_url(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
    return f"{message} ({type(exc).__name__})"


def config_as_dict(config: Any) -> Any:
    """The config as plain data for `config show`: secrets masked (a URL keeps all but its
    password), everything else as it is.

    >>> from driftline.config import load_config
    >>> shown = config_as_dict(load_config(environ={}))
    >>> shown["postgres"]["url"], shown["notifications"]["slack_webhook_url"]
    ('postgresql://driftline:***@127.0.0.1:5432/driftline', None)
    >>> config_as_dict(Secret("hunter2"))
    '***'
    """
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_as_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Secret):
        value = config.reveal()
        masked = mask_url(value)
        return masked if masked != value else "***"
    if isinstance(config, dict):
        return {str(k): config_as_dict(v) for k, v in config.items()}
    return config


# -- driftline doctor ---------------------------------------------------------------------------


class _AdviceError(CommandError):
    """Not a failure: driftline runs, maybe not as the user meant (`warn` in `doctor`)."""


def doctor(config: Config, timeout: float = 5.0) -> list[tuple[str, str, str]]:
    """Check what a worker needs, in the order it needs it: (``ok``/``warn``/``FAIL``, what,
    the detail or what to do).

    Every check runs even when one fails (a broker down does not hide a wrong password), and
    each says the config key to look at. `driftline doctor` prints them and exits 1 on a failure.
    """
    results: list[tuple[str, str, str]] = []

    def check(what: str, run: Any) -> Any:
        try:
            detail = run()
        except _AdviceError as advice:
            results.append(("warn", what, str(advice)))
            return None
        except Exception as exc:  # every failure becomes a line; that is the point
            results.append(("FAIL", what, explain(exc, config)))
            return None
        results.append(("ok", what, detail))
        return detail

    reached = check("Kafka", lambda: _kafka_reached(config, timeout))
    if reached is not None:
        check("topics", lambda: _topics_present(config, timeout))
    check("PostgreSQL", lambda: _postgres_reached(config, timeout))
    check("reference profiles", lambda: _profiles_present(config))
    check("drift thresholds", lambda: _thresholds_present(config))
    return results


def _kafka_reached(config: Config, timeout: float) -> str:
    from driftline.security import check_kafka as check_connection

    check_connection(config.kafka, timeout=timeout)
    return f"{config.kafka.bootstrap_servers} ({config.kafka.security_protocol})"


def _topics_present(config: Config, timeout: float) -> str:
    from confluent_kafka.admin import AdminClient

    settings: dict[str, Any] = {**config.kafka.confluent_settings(), "log_level": 0}
    metadata = AdminClient(settings).list_topics(timeout=timeout).topics
    topics = config.topics
    wanted = [topics.predictions, topics.labels, topics.alerts, topics.dlq, topics.metrics]
    missing = [name for name in wanted if name not in metadata]
    if missing:
        raise CommandError(
            f"missing: {', '.join(missing)}: create them with `driftline topics create`, or "
            "point topics.* (DRIFTLINE_TOPICS_*) at your topics"
        )
    counts = {name: len(metadata[name].partitions) for name in (topics.predictions, topics.labels)}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{name} has {n} partitions" for name, n in counts.items())
        raise CommandError(f"predictions and labels are not co-partitioned ({detail})")
    return f"{', '.join(wanted)}; {counts[topics.predictions]} partitions"


def _postgres_reached(config: Config, timeout: float) -> str:
    check_postgres(config.postgres.dsn(), timeout)
    return mask_url(config.postgres.url.reveal())


def _profiles_present(config: Config) -> str:
    from pathlib import Path

    from driftline.detectors.profile import ReferenceProfile

    directory = Path(config.worker.reference_dir)
    if not directory.is_dir():
        raise CommandError(
            f"{directory} does not exist (worker.reference_dir, DRIFTLINE_WORKER_REFERENCE_DIR): "
            "no model will be monitored; build one with `driftline reference build`"
        )
    loaded, broken = [], []
    for file in sorted(directory.glob("*.json")):
        try:
            profile = ReferenceProfile.load(file)
        except Exception as exc:  # a foreign or half-written file: named, not fatal to the rest
            broken.append(f"{file.name} ({' '.join(str(exc).split())[:80]})")
            continue
        loaded.append(f"{profile.model}@{profile.model_version}")
    if broken:
        raise CommandError(
            f"{directory}: not readable as profiles: {', '.join(broken)}"
            + (f"; loaded {', '.join(loaded)}" if loaded else "")
        )
    if not loaded:
        raise CommandError(
            f"{directory} holds no profile (*.json): build one with `driftline reference build`"
        )
    return f"{directory}: {', '.join(loaded)}"


def _thresholds_present(config: Config) -> str:
    from pathlib import Path

    path = Path(config.worker.thresholds_file)
    if not path.exists():
        raise _AdviceError(
            f"{path} does not exist (relative to {Path.cwd()}): the worker would use the "
            "built-in defaults; set worker.thresholds_file (DRIFTLINE_WORKER_THRESHOLDS_FILE)"
        )
    return str(path)


def format_doctor(results: list[tuple[str, str, str]]) -> str:
    """One line per check.

    >>> print(format_doctor([("ok", "Kafka", "127.0.0.1:9092 (PLAINTEXT)"),
    ...     ("FAIL", "PostgreSQL", "cannot connect ...")]))
    ok    Kafka               127.0.0.1:9092 (PLAINTEXT)
    FAIL  PostgreSQL          cannot connect ...
    """
    return "\n".join(f"{status:4}  {what:18}  {detail}" for status, what, detail in results)
