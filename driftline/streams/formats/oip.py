"""Open Inference Protocol (v2, "KServe v2") request/response pairs, as prediction records.

An inference server logs the request (`{"inputs": [tensor, ...]}`) and the response
(`{"model_name", "model_version", "id", "outputs": [tensor, ...]}`) as two separate messages,
usually CloudEvents (KServe's payload logger: types `org.kubeflow.serving.inference.request`
and `.response`, the same `ce_id` on both; Knative's KafkaSink writes them in binary mode). A
tensor is `{"name", "shape", "datatype", "data"}` with `data` flat or nested in row-major order
and `shape[0]` the batch dimension.

Mapping (config keys under `formats:`, see docs/FORMATS.md):

* each input tensor of shape `[n]` or `[n, 1]` is the feature named like the tensor; a tensor of
  shape `[n, k]` is k features, named by `oip_columns[tensor]` (space-separated names) or
  `<tensor>_<j>` without it. Higher ranks (images, embeddings) are rejected.
* the prediction is the output tensor `oip_prediction_output` (default: the first output). With
  one column its value is `prediction`; with k columns they are class probabilities (classes
  named by `oip_columns[tensor]`, else `0..k-1`) and `prediction` is the most probable class.
* model: `oip_model`, else the response's `model_name`, else the `inferenceservicename`
  extension; version: the response's `model_version` (else empty); event time: the request's
  CloudEvent `time` (else the response's, else a numeric `parameters.timestamp` in the body);
  `latency_ms` from the two event times when both are there; `prediction_id` the request id,
  suffixed `:<row>` for batches of more than one row.

The join: request and response meet in `join.PendingHalves`, keyed by request id (the `requestid`
extension if present, else the CloudEvent `id`, else the body's `id`). It is explicit and
bounded: at most `oip_max_pending` halves and `oip_max_pending_bytes` of payload wait, for at most
`oip_max_wait_seconds` (wall clock); beyond that the oldest is dropped and reported as an
`unjoined` rejection naming its request id (in the result of the message that pushed it out).
The records are emitted with the message that completes the pair. Limitation: the waiting
halves live in the worker's memory; unless the caller checkpoints `pending.to_dict()` with its
offsets and calls `pending.restore(...)` after a restart (the pipeline does not yet), the halves
waiting at a restart or rebalance are lost (at most the bounds above), since their offsets may
already be committed. With
`oip_require_response: false` (payload logger in `request` mode) each request becomes records at
once, without prediction, and responses are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from driftline.streams.formats.base import Decoded, GuardedDecoder, Headers, RejectedRecord
from driftline.streams.formats.cloudevents import CloudEvent, event_data, event_time, read_event
from driftline.streams.formats.contract import RecordError, check_prediction, json_type
from driftline.streams.formats.join import Half, PendingHalves, Waiting

__all__ = ["OipSettings", "OpenInference"]
_PLAIN = msgspec.json.Decoder()


class _UnreadableError(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class OipSettings:
    model: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    prediction_output: str | None = None
    require_response: bool = True
    max_pending: int = 10_000
    max_pending_bytes: int = 64 * 1024 * 1024
    max_wait_seconds: float = 300.0


class OpenInference(GuardedDecoder):
    """Decoder for Open Inference Protocol request/response messages (`formats.predictions: oip`).

    >>> oip = OpenInference(OipSettings())
    >>> ce = [("ce_specversion", b"1.0"), ("ce_source", b"http://localhost:9081/"),
    ...       ("ce_inferenceservicename", b"iris"), ("content-type", b"application/json")]
    >>> oip.decode(b'{"inputs": [{"name": "petal_length", "shape": [1], "datatype": "FP32",'
    ...     b' "data": [1.4]}]}', ce + [("ce_id", b"r-1"), ("ce_time", b"2026-12-01T10:00:00Z"),
    ...     ("ce_type", b"org.kubeflow.serving.inference.request")])
    Decoded(records=[], rejected=[])
    >>> oip.decode(b'{"model_name": "iris", "model_version": "3", "id": "r-1", "outputs": '
    ...     b'[{"name": "predict", "shape": [1], "datatype": "INT64", "data": [2]}]}',
    ...     ce + [("ce_id", b"r-1"), ("ce_time", b"2026-12-01T10:00:00.012Z"),
    ...     ("ce_type", b"org.kubeflow.serving.inference.response")]).records
    [{'prediction_id': 'r-1', 'model': 'iris', 'model_version': '3', 'timestamp': 1796119200.0, 'features': {'petal_length': 1.4}, 'prediction': 2, 'latency_ms': 12.0}]
    """

    def __init__(self, settings: OipSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.pending = PendingHalves(
            settings.max_pending, settings.max_pending_bytes, settings.max_wait_seconds, clock
        )
        self._columns = {name: names.split() for name, names in settings.columns.items()}
        self._clock = clock

    def decode(self, value: bytes | None, headers: Headers = None) -> Decoded:
        try:
            key, waiting = self._read(value, headers)
        except _UnreadableError as exc:
            return Decoded([], [RejectedRecord(exc.kind, str(exc), None)])
        if not self.settings.require_response:
            if waiting.half == "response":
                return Decoded([], [])
            return self._records(key, waiting, None)
        other, evicted = self.pending.offer(key, waiting)
        if other is None:
            return Decoded([], evicted)
        request, response = (other, waiting) if other.half == "request" else (waiting, other)
        records, rejected = self._records(key, request, response)
        return Decoded(records, evicted + rejected)

    # -- one message -------------------------------------------------------------------------

    def _read(self, value: bytes | None, headers: Headers) -> tuple[str, Waiting]:
        event = read_event(value, headers)
        if isinstance(event, RejectedRecord):
            raise _UnreadableError(event.kind, event.reason)
        if event is None:
            try:
                body = _PLAIN.decode(value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _UnreadableError("invalid_json", f"not valid JSON: {exc}") from exc
            event = CloudEvent({}, data_value=body, has_data_value=True)
        body = event_data(event)
        if isinstance(body, RejectedRecord):
            raise _UnreadableError(body.kind, body.reason)
        if type(body) is not dict:
            raise _UnreadableError(
                "invalid_shape",
                f"expected an inference request or response object, got {json_type(body)}",
            )
        half = _which_half(event.attributes.get("type", ""), body)
        key = event.attributes.get("requestid") or event.attributes.get("id") or body.get("id")
        if not isinstance(key, str | int) or isinstance(key, bool) or key == "":
            raise _UnreadableError(
                "invalid_event", "no request id: neither a CloudEvent id nor a body 'id'"
            )
        when = event_time(event)
        if when is None:
            parameters = body.get("parameters")
            stamp = parameters.get("timestamp") if type(parameters) is dict else None
            when = float(stamp) if isinstance(stamp, int | float) else None
        size = len(value or b"")
        return str(key), Waiting(half, body, when, event.attributes, size, self._clock())

    # -- a complete pair -----------------------------------------------------------------------

    def _records(self, key: str, request: Waiting, response: Waiting | None) -> Decoded:
        try:
            features, n = self._tensors(request.body, "inputs")
            outputs: dict[str, list[Any]] = {}
            predictions: list[dict[str, Any]] = [{} for _ in range(n)]
            if response is not None:
                outputs_by_tensor, m = self._tensor_map(response.body, "outputs")
                if m != n:
                    raise _UnreadableError(
                        "invalid_shape", f"request {key!r} has {n} rows but its response {m}"
                    )
                predictions = self._predictions(outputs_by_tensor, n)
                del outputs
            model = self._model(request, response)
        except _UnreadableError as exc:
            return Decoded([], [RejectedRecord(exc.kind, f"inference {key!r}: {exc}", None)])
        when = request.time if request.time is not None else (response.time if response else None)
        if when is None:
            return Decoded(
                [],
                [
                    RejectedRecord(
                        "invalid_event",
                        f"inference {key!r}: no event time (CloudEvent 'time' attribute, or a "
                        "numeric 'parameters.timestamp')",
                        None,
                    )
                ],
            )
        version = response.body.get("model_version", "") if response is not None else ""
        latency = None
        if response is not None and request.time is not None and response.time is not None:
            latency = round((response.time - request.time) * 1000.0, 3)
        valid: list[dict[str, Any]] = []
        rejected: list[RejectedRecord] = []
        for row in range(n):
            record: dict[str, Any] = {
                "prediction_id": key if n == 1 else f"{key}:{row}",
                "model": model,
                "model_version": version if version is not None else "",
                "timestamp": when,
                "features": {name: column[row] for name, column in features.items()},
                **predictions[row],
            }
            if latency is not None and latency >= 0:
                record["latency_ms"] = latency
            try:
                valid.append(check_prediction(record))
            except RecordError as exc:
                rejected.append(
                    RejectedRecord("schema_violation", f"inference {key!r} row {row}: {exc}", row)
                )
        return Decoded(valid, rejected)

    def _model(self, request: Waiting, response: Waiting | None) -> Any:
        if self.settings.model:
            return self.settings.model
        if response is not None and response.body.get("model_name"):
            return response.body["model_name"]
        for half in (request, response):
            if half is not None and half.attributes.get("inferenceservicename"):
                return half.attributes["inferenceservicename"]
        raise _UnreadableError(
            "invalid_event",
            "no model name: set formats.oip_model, or send 'model_name' in the response",
        )

    def _predictions(self, outputs: dict[str, list[list[Any]]], n: int) -> list[dict[str, Any]]:
        name = self.settings.prediction_output or next(iter(outputs))
        if name not in outputs:
            raise _UnreadableError(
                "unsupported_format",
                f"the response has no output tensor {name!r} (formats.oip_prediction_output)",
            )
        columns = outputs[name]
        if len(columns) == 1:
            return [{"prediction": columns[0][row]} for row in range(n)]
        classes = self._columns.get(name) or [str(j) for j in range(len(columns))]
        if len(classes) != len(columns):
            raise _UnreadableError(
                "invalid_shape",
                f"output {name!r} has {len(columns)} columns but formats.oip_columns names "
                f"{len(classes)}",
            )
        out = []
        for row in range(n):
            probabilities = {cls: column[row] for cls, column in zip(classes, columns, strict=True)}
            try:
                predicted = max(probabilities, key=lambda c: probabilities[c])
            except TypeError as exc:
                raise _UnreadableError(
                    "schema_violation", f"output {name!r} row {row} holds non-numbers"
                ) from exc
            out.append({"prediction": predicted, "probabilities": probabilities})
        return out

    def _tensors(self, body: dict[str, Any], field_name: str) -> tuple[dict[str, list[Any]], int]:
        by_tensor, n = self._tensor_map(body, field_name)
        features: dict[str, list[Any]] = {}
        for name, columns in by_tensor.items():
            if len(columns) == 1:
                features[name] = columns[0]
                continue
            names = self._columns.get(name) or [f"{name}_{j}" for j in range(len(columns))]
            if len(names) != len(columns):
                raise _UnreadableError(
                    "invalid_shape",
                    f"input {name!r} has {len(columns)} columns but formats.oip_columns names "
                    f"{len(names)}",
                )
            features.update(zip(names, columns, strict=True))
        return features, n

    def _tensor_map(
        self, body: dict[str, Any], field_name: str
    ) -> tuple[dict[str, list[list[Any]]], int]:
        """Each tensor as its list of columns (each a list of n row values), and n."""
        tensors = body.get(field_name)
        if type(tensors) is not list or not tensors:
            raise _UnreadableError(
                "invalid_shape", f"'{field_name}' must be a non-empty array of tensors"
            )
        out: dict[str, list[list[Any]]] = {}
        rows: int | None = None
        for i, tensor in enumerate(tensors):
            name, columns = _tensor_columns(tensor, f"{field_name}[{i}]")
            if rows is not None and len(columns[0]) != rows:
                raise _UnreadableError(
                    "invalid_shape",
                    f"tensor {name!r} has {len(columns[0])} rows, the one before it {rows}",
                )
            rows = len(columns[0])
            out[name] = columns
        assert rows is not None
        return out, rows


def _which_half(event_type: str, body: dict[str, Any]) -> Half:
    lowered = event_type.lower()
    if lowered.endswith("request"):
        return "request"
    if lowered.endswith("response"):
        return "response"
    if "outputs" in body and "inputs" not in body:
        return "response"
    if "inputs" in body:
        return "request"
    raise _UnreadableError(
        "invalid_shape", "neither an inference request ('inputs') nor a response ('outputs')"
    )


def _tensor_columns(tensor: Any, where: str) -> tuple[str, list[list[Any]]]:
    """A tensor's name and its columns (k lists of n row values). Hot path: one call per
    tensor, so plain comparisons rather than generators."""
    if type(tensor) is not dict:
        raise _UnreadableError(
            "invalid_shape", f"{where} must be a tensor object, got {json_type(tensor)}"
        )
    name, data = tensor.get("name"), tensor.get("data")
    shape: Any = tensor.get("shape")
    if type(name) is not str or not name:
        raise _UnreadableError("invalid_shape", f"{where} needs a 'name'")
    rank = len(shape) if type(shape) is list else 0
    n, k = (shape[0], 1) if rank == 1 else (shape[0], shape[1]) if rank == 2 else (-1, -1)
    if type(n) is not int or type(k) is not int or n < 0 or k < 0:
        raise _UnreadableError(
            "unsupported_format",
            f"tensor {name!r}: shape {shape!r} is not [n] or [n, k] (one row per prediction)",
        )
    if k == 0:
        raise _UnreadableError("invalid_shape", f"tensor {name!r} has no columns")
    if type(data) is not list:
        raise _UnreadableError(
            "unsupported_format",
            f"tensor {name!r}: 'data' must be a JSON array (binary data is not read)",
        )
    if data and type(data[0]) is list:  # nested rows; flat data is the common case
        data = _flatten(data)
    if len(data) != n * k:
        raise _UnreadableError(
            "invalid_shape",
            f"tensor {name!r}: shape {shape} holds {n * k} values, data has {len(data)}",
        )
    if k == 1:
        return name, [data]
    return name, [data[j::k] for j in range(k)]


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major nested lists flattened (OIP allows both forms)."""
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out
