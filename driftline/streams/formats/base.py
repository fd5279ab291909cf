"""The decoder seam: what every input format returns, and the fixed set of rejection kinds."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "REJECTION_KINDS",
    "Decoded",
    "Decoder",
    "GuardedDecoder",
    "Headers",
    "RejectedRecord",
    "header_map",
    "never_raises",
]

Headers = (
    Sequence[tuple[str, bytes | None]]
    | Mapping[str, bytes | None]
    | Callable[[], Sequence[tuple[str, bytes | None]] | None]
    | None
)
"""Kafka headers as the clients hand them over: confluent-kafka's list of pairs (or its
`Message.headers` method itself), Faust's mapping or list, or None. Keys are compared in lower case (the CloudEvents Kafka binding writes them lower case)."""

REJECTION_KINDS: frozenset[str] = frozenset(
    {
        "invalid_json",  # the bytes are not JSON (or not UTF-8, or a number beyond a double)
        "invalid_shape",  # JSON, but not an object/array of records where one was expected
        "schema_violation",  # a record breaks the contract: the reason names field and index
        "invalid_event",  # a CloudEvent without a required attribute (id, source, type, ...)
        "unsupported_format",  # a content type or tensor layout this decoder cannot read
        "unjoined",  # an inference request whose response never came (or the reverse)
        "timestamp_out_of_range",  # event time beyond the configured skew (set by the pipeline)
        "store_rejected",  # a valid record the database refused to store (set by a sink)
        "worker_error",  # last resort: an unexpected error inside a decoder (a bug) or the worker
    }
)
"""Every `RejectedRecord.kind`. A fixed, documented set, so it is safe as a Prometheus label
(`driftline_dlq_records_total{reason=...}`) and in DLQ headers; the detail goes in `reason`."""


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """One record (or a whole message, `index` None) that will not reach the windows."""

    kind: str  # one of REJECTION_KINDS
    reason: str  # for humans, goes into the DLQ header; names the field and the record index
    index: int | None  # position inside a batch message, None for the message itself


class Decoded(NamedTuple):
    """The result of decoding one Kafka message: valid records and rejections, both possibly
    empty. A tuple, so `valid, rejected = decoder.decode(...)` reads like `parse_predictions`."""

    records: list[dict[str, Any]]
    rejected: list[RejectedRecord]


class Decoder(Protocol):
    """An input format: one Kafka message (value and headers) in, normalised records out.

    A prediction record is a plain dict with the keys of `config/schemas/prediction.v1.schema
    .json` (`prediction_id`, `model`, `model_version`, `timestamp` as float, `features`, and
    optionally `prediction`, `score`, `probabilities`, `attributions`, `latency_ms`, `error`),
    already validated by `contract.check_prediction`; a label record has `prediction_id`, `label`
    and `timestamp`. Unknown top-level keys are dropped. `decode` never raises on bad input:
    implementations derive from `GuardedDecoder`, which turns any exception into a rejection.
    """

    def decode(self, value: bytes | None, headers: Headers = None) -> Decoded: ...


def rejection_for(exc: Exception) -> RejectedRecord:
    """The rejection of a message whose decoding raised: nesting too deep for the parser
    (RecursionError), bytes that are not JSON or not UTF-8 are `invalid_json`; anything else is
    a decoder bug, `worker_error`, with the exception named so the DLQ shows it.

    >>> rejection_for(RecursionError("maximum recursion depth exceeded"))
    RejectedRecord(kind='invalid_json', reason='not valid JSON: nested too deeply', index=None)
    >>> rejection_for(KeyError("x")).kind
    'worker_error'
    """
    if isinstance(exc, RecursionError):
        return RejectedRecord("invalid_json", "not valid JSON: nested too deeply", None)
    if isinstance(exc, ValueError):  # msgspec.DecodeError, UnicodeDecodeError, json's errors
        return RejectedRecord("invalid_json", f"not valid JSON: {exc}", None)
    return RejectedRecord(
        "worker_error", f"the decoder failed on this message: {type(exc).__name__}: {exc}", None
    )


def never_raises(decode: Callable[..., Decoded]) -> Callable[..., Decoded]:
    """`decode` turned into a function that rejects the message instead of raising.

    The one place that keeps the promise of `Decoder.decode`: every decoder class derives from
    `GuardedDecoder` (which applies this to its `decode`), and the plain `parse_*` functions are
    wrapped with it. Python 3.11+ makes the `try` free when nothing is raised.

    >>> boom = never_raises(lambda value, headers=None: [][1])
    >>> boom(b"x").rejected[0].kind
    'worker_error'
    """

    @functools.wraps(decode)
    def guarded(*args: Any, **kwargs: Any) -> Decoded:
        try:
            return decode(*args, **kwargs)
        except Exception as exc:  # the contract: never raise on input
            return Decoded([], [rejection_for(exc)])

    guarded.__never_raises__ = True  # type: ignore[attr-defined]
    return guarded


class GuardedDecoder:
    """Base class of every decoder: its subclass's `decode` is wrapped by `never_raises` when
    the class is defined, so no format can forget the guard."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        decode = cls.__dict__.get("decode")
        if decode is not None and not getattr(decode, "__never_raises__", False):
            setattr(cls, "decode", never_raises(decode))  # noqa: B010 - replaces the method


def header_map(
    headers: Headers, *, lower_case: bool = True, drop_prefix: str | None = None
) -> dict[str, bytes]:
    """Headers as a dict (the last value wins; a str value is encoded, None becomes b""): names
    in lower case (what the decoders compare), or as sent (`lower_case=False`: the copy a dead
    letter carries); names starting with `drop_prefix` (compared in lower case) left out.

    >>> header_map([("ce_id", b"1"), ("Content-Type", None)])
    {'ce_id': b'1', 'content-type': b''}
    >>> header_map({"Trace": "x", "Driftline.reason": b"old"}, lower_case=False,
    ...            drop_prefix="driftline.")
    {'Trace': b'x'}
    """
    if callable(headers):  # confluent-kafka's Message.headers is a method
        headers = headers()
    if not headers:
        return {}
    items: Any = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, bytes] = {}
    for key, value in items:
        name = str(key)
        lower = name.lower()
        if drop_prefix is not None and lower.startswith(drop_prefix):
            continue
        if isinstance(value, str):
            value = value.encode()
        out[lower if lower_case else name] = value or b""
    return out
