"""docs/CONFIGURATION.md, generated from the config dataclasses (the schema) and the comments of
config/driftline.yaml (the descriptions), so the reference cannot drift from the code.

Regenerate with ``driftline config reference > docs/CONFIGURATION.md``; a unit test checks that
the committed file is current and that every key has a description: from ``EXTRA`` below if
there, else from the comment on its line in the YAML file.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from driftline.config import ENV_PREFIX, NON_CONFIG_VARIABLES, Config, Secret
from driftline.keys import declared

__all__ = ["describe_keys", "render_reference"]

YAML_PATH = Path(__file__).resolve().parent.parent / "config" / "driftline.yaml"

# Descriptions of the keys whose comment in config/driftline.yaml is missing or only makes
# sense next to its neighbours there; these win over the comment.
EXTRA = {
    "kafka.ssl_key_password": "passphrase of kafka.ssl_keyfile if the key is encrypted (secret; or ssl_key_password_file)",
    "postgres.sslrootcert": "CA that signed the PostgreSQL server's certificate; with it sslmode defaults to verify-full",
    "postgres.sslkey": "private key of postgres.sslcert (client certificate authentication)",
    "retraining.ab_max_latency_p99_ratio": "guardrail: the challenger's latency p99 over the champion's; above it the challenger is rolled back at once",
    "kafka.security_protocol": "how to reach the brokers: plain, TLS (SSL), SASL, or SASL over TLS",
    "worker.batch_timeout_seconds": "a batch is taken after this long even if smaller than batch_size",
    "notifications.webhook_secret": "HMAC-SHA256 key signing webhook bodies (X-Driftline-Signature; secret)",
    "notifications.max_per_hour_per_model": "at most this many firing/escalation notifications per model and hour; resolutions always go",
    "kafka.bootstrap_servers": "Kafka brokers, comma-separated host:port",
    "kafka.sasl_mechanism": "SASL mechanism when security_protocol is SASL_*",
    "kafka.sasl_username": "SASL user name",
    "kafka.sasl_password": "SASL password (secret: pass it by environment)",
    "kafka.ssl_cafile": "CA certificate file (PEM) to verify the brokers",
    "topics.replication_factor": "replication factor of the topics `driftline topics create` makes",
    "worker.thresholds_file": "per-model detection settings: data-drift tests, alpha and effect gates, output drift, data quality, `importance` (feature-importance drift) and `concept_drift` (detector suite, cooldown); docs/DRIFT_DETECTION.md",
    "notifications.slack_webhook_url": "Slack incoming-webhook URL (secret)",
    "notifications.webhook_url": "generic webhook receiving every alert as JSON (secret)",
    "notifications.pagerduty_routing_key": "PagerDuty Events v2 routing key (secret)",
    "notifications.pagerduty_url": "PagerDuty Events API endpoint",
    "notifications.smtp_host": "SMTP server for e-mail alerts (e-mail is off without it)",
    "notifications.smtp_port": "SMTP port",
    "notifications.smtp_starttls": "upgrade the SMTP connection with STARTTLS",
    "notifications.smtp_username": "SMTP user name",
    "notifications.smtp_password": "SMTP password (secret)",
    "notifications.email_from": "sender address of alert e-mails",
    "notifications.email_to": "recipients of alert e-mails, comma-separated",
    "postgres.url": "PostgreSQL connection URL of the store (secret: it holds the password)",
    "postgres.retention_days": "days of windows, drift scores and events kept (whole day partitions dropped)",
}

_KEY_LINE = re.compile(r"^(?P<indent>\s*)#?\s*(?P<key>[a-z_]+):(?P<rest>.*)$")


def _yaml_comments(text: str) -> dict[str, str]:
    """``section.key`` -> the comment on (and continuing below) its line in the YAML file."""
    comments: dict[str, str] = {}
    section, last = "", ""
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match and not match["indent"] and not line.startswith("#"):
            section, last = match["key"], ""
            continue
        if match and section and match["indent"]:
            last = f"{section}.{match['key']}"
            rest = match["rest"]
            if "#" in rest:
                comment = rest.split("#", 1)[1].strip()
                comments[last] = comment
            continue
        stripped = line.strip()
        if last and stripped.startswith("#") and len(line) - len(line.lstrip()) > 20:
            comments[last] = f"{comments.get(last, '')} {stripped.lstrip('#').strip()}".strip()
    return comments


def _type_name(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return f"{_type_name(inner[0])}, optional"
    if origin is Literal:
        return "one of " + " \\| ".join(f"`{a}`" for a in args)
    if hint is Secret:
        return "secret string"
    if origin is dict:
        return f"mapping {_type_name(args[0])} -> {_type_name(args[1])}"
    return getattr(hint, "__name__", str(hint))


def _constrained(type_name: str, f: dataclasses.Field[Any]) -> str:
    """The type with the bound or the choices declared on the field (`keys.key`)."""
    bound, choices = declared(f)
    if choices is not None:
        return "one of " + " \\| ".join(f"`{c}`" for c in choices)
    return f"{type_name}, {bound}" if bound else type_name


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:  # pragma: no cover - every key has a default
        return ""
    if value is None:
        return "(none)"
    if isinstance(value, Secret):
        return "`" + re.sub(r":[^:@/]+@", ":***@", value.reveal()) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == {}:
        return "`{}`"
    return f"`{value}`"


def describe_keys(yaml_text: str | None = None) -> list[dict[str, str]]:
    """One entry per config key: key, environment variable, type, default, description."""
    comments = _yaml_comments(yaml_text if yaml_text is not None else YAML_PATH.read_text())
    rows = []
    config_hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = config_hints[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section.name}.{f.name}"
            rows.append(
                {
                    "section": section.name,
                    "key": key,
                    "env": ENV_PREFIX + key.replace(".", "_").upper(),
                    "type": _constrained(_type_name(hints[f.name]), f),
                    "default": _default(f),
                    "description": EXTRA.get(key) or comments.get(key, ""),
                }
            )
    return rows


def render_reference(yaml_text: str | None = None) -> str:
    """The Markdown of docs/CONFIGURATION.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `driftline config reference > docs/CONFIGURATION.md` from",
        "     driftline/config.py and the comments of config/driftline.yaml. Do not edit. -->",
        "",
        "driftline reads one YAML file (`--config`, default `config/driftline.yaml` when it",
        "exists) and then the environment: every key `section.key` is overridden by the variable",
        "`DRIFTLINE_<SECTION>_<KEY>`. Every key has a default, so an empty file is a valid config",
        "for the local stack. An unknown key, an unknown `DRIFTLINE_*` variable, a wrong type or",
        "an out-of-range value stops every command at start with a message naming it (with a",
        '"did you mean" when one is close). Secrets are never printed: `driftline config show`',
        "prints the effective configuration as YAML with them masked. `driftline config check`",
        "validates this file, the variables, the thresholds file and the retraining policies",
        "without connecting. The type column shows each key's bounds, declared once on the",
        "field in driftline/config.py and checked by the key reader (driftline/keys.py).",
        "",
        "Environment values are parsed by type: numbers as numbers, booleans as",
        "`true/false/yes/no/1/0`, an empty value clears an optional key, and mappings as",
        "`NAME=VALUE,NAME=VALUE` (e.g. `DRIFTLINE_WINDOWS_MODEL_SIZES=fraud=60,credit=3600`).",
        "",
    ]
    rows = describe_keys(yaml_text)
    for section in dict.fromkeys(r["section"] for r in rows):
        lines += [
            f"## `{section}`",
            "",
            "| key | environment variable | type | default | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in (r for r in rows if r["section"] == section):
            description = r["description"].replace("|", "\\|")
            lines.append(
                f"| `{r['key']}` | `{r['env']}` | {r['type']} | {r['default']} | {description} |"
            )
        lines.append("")
    lines += [
        "## Other variables",
        "",
        "These `DRIFTLINE_*` variables are read by the local stack's scripts and the tests, not by",
        "the config, and are therefore not reported as unknown:",
        "",
        *(f"- `{name}`" for name in sorted(NON_CONFIG_VARIABLES)),
        "",
    ]
    return "\n".join(lines)
