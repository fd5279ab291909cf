"""CloudEvents on Kafka (the Kafka protocol binding of CloudEvents 1.0), both content modes.

* **Binary mode** (what Knative's KafkaSink writes for the events of KServe's payload logger):
  the attributes are headers prefixed `ce_` (`ce_specversion`, `ce_id`, `ce_source`,
  `ce_type`, optional `ce_time`, extensions such as `ce_inferenceservicename`), the
  `content-type` header is the data's media type and the value is the data as is.
* **Structured mode**: `content-type: application/cloudevents+json`, and the value is the
  whole event as JSON, with the data under `data` (a JSON value) or `data_base64`.

Headers are parsed by hand rather than with the `cloudevents` SDK: the binding is a dozen lines
(a prefix and four required attributes), the SDK would build an event object per message on the
hot path and adds a dependency, and the adapter needs the raw bytes of the data to hand to the
msgspec fast path anyway.

`CloudEventsJson` reads events whose data is driftline JSON (one record, an array, or
`{"records": [...]}`); a message that is not a CloudEvent at all is read as plain driftline JSON,
so a topic can move to CloudEvents producer by producer.

>>> event = CloudEventsJson("label").decode(
...     b'{"prediction_id": "p-1", "label": 0, "timestamp": 10}',
...     [("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_source", b"/crm"),
...      ("ce_type", b"com.example.label"), ("content-type", b"application/json")])
>>> event.records
[{'prediction_id': 'p-1', 'label': 0, 'timestamp': 10.0}]
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from driftline.streams.formats.base import (
    Decoded,
    GuardedDecoder,
    Headers,
    RejectedRecord,
    header_map,
)
from driftline.streams.formats.contract import json_type
from driftline.streams.formats.driftline_json import (
    RecordKind,
    decode_labels,
    decode_predictions,
    records_from_object,
)

__all__ = [
    "CloudEvent",
    "CloudEventsJson",
    "attribute_problem",
    "event_time",
    "read_event",
]

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_PREFIX = "ce_"
_REQUIRED_HEADERS = tuple(_PREFIX + name for name in REQUIRED_ATTRIBUTES)
_PLAIN = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The attributes (str values, names without prefix) and the data of one event.

    `data` is the raw bytes (binary mode, or `data_base64`), `data_value` the already decoded
    JSON value (structured mode with `data`); exactly one of the two is set, or neither.
    """

    attributes: dict[str, str]
    data: bytes | None = None
    data_value: Any = None
    has_data_value: bool = False


def read_event(value: bytes | None, headers: Headers) -> CloudEvent | RejectedRecord | None:
    """The CloudEvent carried by a Kafka message, a rejection, or None when it is not one."""
    found = header_map(headers)
    content_type = found.get("content-type", b"").decode("latin-1").strip().lower()
    if "ce_specversion" in found:
        attributes = {
            name[len(_PREFIX) :]: raw.decode("utf-8", "replace")
            for name, raw in found.items()
            if name.startswith(_PREFIX)
        }
        if content_type:
            attributes.setdefault("datacontenttype", content_type)
        missing = _missing(attributes)
        if missing:
            return missing
        return CloudEvent(attributes, data=value or b"")
    if not content_type.startswith(STRUCTURED_CONTENT_TYPE):
        return None
    try:
        envelope = _PLAIN.decode(value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return RejectedRecord(
            "invalid_json", f"structured CloudEvent is not valid JSON: {exc}", None
        )
    if type(envelope) is not dict:
        return RejectedRecord(
            "invalid_event",
            f"structured CloudEvent must be a JSON object, got {json_type(envelope)}",
            None,
        )
    attributes = {
        str(k): v if type(v) is str else str(v)
        for k, v in envelope.items()
        if k not in ("data", "data_base64")
    }
    missing = _missing(attributes)
    if missing:
        return missing
    if "data_base64" in envelope:
        try:
            data = base64.b64decode(str(envelope["data_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            return RejectedRecord(
                "invalid_event", f"attribute 'data_base64' is not base64: {exc}", None
            )
        return CloudEvent(attributes, data=data)
    if "data" in envelope:
        return CloudEvent(attributes, data_value=envelope["data"], has_data_value=True)
    return CloudEvent(attributes)


def _missing(attributes: dict[str, str]) -> RejectedRecord | None:
    for name in REQUIRED_ATTRIBUTES:
        if not attributes.get(name):
            return _missing_attribute(name)
    return attribute_problem(attributes.get("specversion"), attributes.get("time"))


# RFC 3339 date-time (section 5.6): a full date, 'T', a full time with an optional fraction, and
# a time offset ('Z' or +hh:mm / -hh:mm). ISO 8601 forms RFC 3339 does not allow are refused.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def attribute_problem(
    specversion: str | bytes | None, time_value: str | bytes | None
) -> RejectedRecord | None:
    """A rejection when the event is not CloudEvents 1.0 or its `time` is not RFC 3339.

    >>> attribute_problem("0.3", None).reason
    "CloudEvent specversion '0.3' is not supported: only 1.0"
    >>> attribute_problem("1.0", "2026-12-01 10:00").reason
    "CloudEvent attribute 'time' must be an RFC 3339 timestamp (e.g. 2026-12-01T10:00:00Z), got '2026-12-01 10:00'"
    >>> attribute_problem(b"1.0", b"2026-12-01T10:00:00.5+01:00") is None
    True
    """
    if isinstance(specversion, bytes):
        specversion = specversion.decode("utf-8", "replace")
    if specversion != "1.0":
        return RejectedRecord(
            "invalid_event",
            f"CloudEvent specversion {specversion!r} is not supported: only 1.0",
            None,
        )
    if time_value is None:
        return None
    if isinstance(time_value, bytes):
        time_value = time_value.decode("utf-8", "replace")
    if _RFC3339.fullmatch(time_value):
        try:
            datetime.fromisoformat(time_value.upper())
            return None
        except ValueError:
            pass  # e.g. month 13
    return RejectedRecord(
        "invalid_event",
        "CloudEvent attribute 'time' must be an RFC 3339 timestamp (e.g. 2026-12-01T10:00:00Z),"
        f" got {time_value[:64]!r}",
        None,
    )


def is_json(content_type: str | None) -> bool:
    """JSON data: no content type (JSON is the CloudEvents default for the JSON format),
    `application/json`, `text/json` or any `+json` suffix, parameters ignored."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def event_time(event: CloudEvent) -> float | None:
    """The `time` attribute (RFC 3339) as epoch seconds, None when absent or unreadable.

    >>> event_time(CloudEvent({"time": "2026-12-01T10:00:00.5Z"}))
    1796119200.5
    """
    raw = event.attributes.get("time")
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def event_data(event: CloudEvent) -> Any:
    """The decoded JSON data of an event, or a `RejectedRecord`."""
    content_type = event.attributes.get("datacontenttype")
    if not is_json(content_type):
        return RejectedRecord(
            "unsupported_format",
            f"CloudEvent data has content type {content_type!r}, not JSON",
            None,
        )
    if event.has_data_value:
        return event.data_value
    if not event.data:
        return RejectedRecord("invalid_event", "CloudEvent has no data", None)
    try:
        return _PLAIN.decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return RejectedRecord("invalid_json", f"CloudEvent data is not valid JSON: {exc}", None)


class CloudEventsJson(GuardedDecoder):
    """Decoder for CloudEvents whose data is driftline JSON (`formats.predictions: cloudevents`).

    Binary-mode data goes through the same msgspec fast path as plain driftline JSON.
    """

    def __init__(self, kind: RecordKind = "prediction") -> None:
        self.kind = kind
        self._fast = decode_predictions if kind == "prediction" else decode_labels

    def decode(self, value: bytes | None, headers: Headers = None) -> Decoded:
        found = header_map(headers)
        if "ce_specversion" in found:  # binary mode, the common case: no event object built
            for name in _REQUIRED_HEADERS:
                if not found.get(name):
                    return Decoded([], [_missing_attribute(name[len(_PREFIX) :])])
            problem = attribute_problem(found["ce_specversion"], found.get("ce_time"))
            if problem is not None:
                return Decoded([], [problem])
            media = found.get("content-type", b"").decode("latin-1")
            if media and not is_json(media):
                return Decoded([], [_not_json(media)])
            if not value:
                return Decoded(
                    [], [RejectedRecord("invalid_event", "CloudEvent has no data", None)]
                )
            return self._fast(value)
        event = read_event(value, found)
        if event is None:  # not a CloudEvent: plain driftline JSON
            return self._fast(value)
        if isinstance(event, RejectedRecord):
            return Decoded([], [event])
        content_type = event.attributes.get("datacontenttype")
        if not is_json(content_type):
            return Decoded([], [_not_json(content_type)])
        if event.has_data_value:
            return records_from_object(event.data_value, self.kind)
        if not event.data:
            return Decoded([], [RejectedRecord("invalid_event", "CloudEvent has no data", None)])
        return self._fast(event.data)


def _missing_attribute(name: str) -> RejectedRecord:
    return RejectedRecord(
        "invalid_event", f"CloudEvent lacks the required attribute '{name}'", None
    )


def _not_json(content_type: str | None) -> RejectedRecord:
    return RejectedRecord(
        "unsupported_format", f"CloudEvent data has content type {content_type!r}, not JSON", None
    )
