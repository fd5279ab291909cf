"""Contract tests of the input adapters with payloads shaped like the platforms' documented ones:
CloudEvents on Kafka (binary mode as Knative's KafkaSink writes KServe's payload-logger events,
and structured mode), and Open Inference Protocol v2 request/response pairs."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from driftline.config import Config, ConfigError, load_config
from driftline.streams.formats import (
    LABEL_FORMATS,
    PREDICTION_FORMATS,
    REJECTION_KINDS,
    Decoded,
    label_decoder,
    parse_labels,
    parse_predictions,
    prediction_decoder,
)
from driftline.streams.formats.base import GuardedDecoder
from driftline.streams.formats.cloudevents import CloudEventsJson
from driftline.streams.formats.oip import OipSettings, OpenInference

RECORD = {
    "prediction_id": "p-1",
    "model": "fraud",
    "model_version": "3",
    "timestamp": 1_767_225_600.5,
    "features": {"amount": 12.0, "country": "FR"},
    "score": 0.8,
}


def binary_headers(**attributes: str) -> list[tuple[str, bytes]]:
    """Headers as the CloudEvents Kafka binding (binary mode) writes them."""
    base = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/inference/fraud",
        "type": "dev.driftline.prediction",
    }
    headers = [(f"ce_{k}", v.encode()) for k, v in {**base, **attributes}.items()]
    return [*headers, ("content-type", b"application/json")]


def kinds(decoded: Decoded) -> list[str]:
    assert all(r.kind in REJECTION_KINDS and r.reason for r in decoded.rejected)
    return [r.kind for r in decoded.rejected]


# -- CloudEvents ------------------------------------------------------------------------------


def test_binary_mode_event_carries_driftline_records() -> None:
    decoder = CloudEventsJson("prediction")
    one = decoder.decode(orjson.dumps(RECORD), binary_headers())
    many = decoder.decode(orjson.dumps({"records": [RECORD, RECORD]}), binary_headers())
    assert one.records == [RECORD] and one.rejected == []
    assert len(many.records) == 2


def test_structured_mode_event_with_data_or_data_base64() -> None:
    decoder = CloudEventsJson("prediction")
    envelope = {
        "specversion": "1.0",
        "id": "e-2",
        "source": "/inference/fraud",
        "type": "dev.driftline.prediction",
        "time": "2026-12-01T10:00:00Z",
        "datacontenttype": "application/json",
        "data": RECORD,
    }
    headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    assert decoder.decode(orjson.dumps(envelope), headers).records == [RECORD]
    encoded = {k: v for k, v in envelope.items() if k != "data"}
    encoded["data_base64"] = base64.b64encode(orjson.dumps([RECORD])).decode()
    assert decoder.decode(orjson.dumps(encoded), headers).records == [RECORD]


def test_plain_json_on_a_cloudevents_topic_is_read_as_driftline_json() -> None:
    assert CloudEventsJson().decode(orjson.dumps(RECORD), None).records == [RECORD]


def test_labels_in_cloudevents() -> None:
    label = {"prediction_id": "p-1", "label": 1, "timestamp": 10}
    decoded = CloudEventsJson("label").decode(orjson.dumps(label), binary_headers())
    assert decoded.records == [{"prediction_id": "p-1", "label": 1, "timestamp": 10.0}]
    bad = CloudEventsJson("label").decode(orjson.dumps({**label, "label": None}), binary_headers())
    assert kinds(bad) == ["schema_violation"] and "'label'" in bad.rejected[0].reason


@pytest.mark.parametrize(
    ("value", "headers", "kind", "words"),
    [
        (orjson.dumps(RECORD), binary_headers(id=""), "invalid_event", "'id'"),
        (
            orjson.dumps(RECORD),
            [h for h in binary_headers() if h[0] != "ce_source"],
            "invalid_event",
            "'source'",
        ),
        (
            b"amount,country\n12,FR",
            [*binary_headers()[:-1], ("content-type", b"text/csv")],
            "unsupported_format",
            "text/csv",
        ),
        (b"{not json", binary_headers(), "invalid_json", "not valid JSON"),
        (b"", binary_headers(), "invalid_event", "no data"),
        (orjson.dumps({**RECORD, "score": 2}), binary_headers(), "schema_violation", "'score'"),
        (
            b"{broken",
            [("content-type", b"application/cloudevents+json")],
            "invalid_json",
            "structured",
        ),
        (
            orjson.dumps({"specversion": "1.0", "id": "x", "source": "/s", "data": RECORD}),
            [("content-type", b"application/cloudevents+json")],
            "invalid_event",
            "'type'",
        ),
        (
            orjson.dumps(
                {"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data_base64": "%%"}
            ),
            [("content-type", b"application/cloudevents+json")],
            "invalid_event",
            "base64",
        ),
        (
            orjson.dumps(RECORD),
            [("ce_specversion", b"0.3"), *binary_headers()[1:]],
            "invalid_event",
            "specversion '0.3' is not supported",
        ),
        (
            orjson.dumps(RECORD),
            [*binary_headers(), ("ce_time", b"yesterday")],
            "invalid_event",
            "RFC 3339",
        ),
        (
            orjson.dumps(RECORD),
            [*binary_headers(), ("ce_time", b"2026-12-01T10:00:00")],  # no offset
            "invalid_event",
            "RFC 3339",
        ),
        (
            orjson.dumps(RECORD),
            [*binary_headers(), ("ce_time", b"2026-13-01T10:00:00Z")],
            "invalid_event",
            "RFC 3339",
        ),
        (
            orjson.dumps(
                {"specversion": "2.0", "id": "x", "source": "/s", "type": "t", "data": RECORD}
            ),
            [("content-type", b"application/cloudevents+json")],
            "invalid_event",
            "specversion '2.0'",
        ),
        (
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": "x",
                    "source": "/s",
                    "type": "t",
                    "data": RECORD,
                    "time": "01/12/2026",
                }
            ),
            [("content-type", b"application/cloudevents+json")],
            "invalid_event",
            "RFC 3339",
        ),
    ],
)
def test_bad_cloudevents_are_rejected_with_a_reason(
    value: bytes, headers: list[tuple[str, bytes]], kind: str, words: str
) -> None:
    decoded = CloudEventsJson("prediction").decode(value, headers)
    assert decoded.records == [] and kinds(decoded) == [kind]
    assert words in decoded.rejected[0].reason


def test_headers_as_a_mapping_with_mixed_case_keys() -> None:
    headers = {k.upper() if k.startswith("ce_") else k: v for k, v in binary_headers()}
    assert CloudEventsJson().decode(orjson.dumps(RECORD), headers).records == [RECORD]


# -- Open Inference Protocol --------------------------------------------------------------------

# KServe's sklearn-iris example of the v2 protocol: a [2, 4] FP32 input, one INT32 output.
IRIS_REQUEST = {
    "id": "9b3c0c8e-1f0e-4b7c-8a53-0c7f3f3d1e2a",
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    ],
}
IRIS_RESPONSE = {
    "model_name": "sklearn-iris",
    "model_version": None,
    "id": "9b3c0c8e-1f0e-4b7c-8a53-0c7f3f3d1e2a",
    "parameters": None,
    "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT32", "data": [1, 1]}],
}
IRIS_COLUMNS = {"input-0": "sepal_length sepal_width petal_length petal_width"}


def kserve_headers(half: str, time: str, request_id: str = IRIS_REQUEST["id"]) -> list[Any]:
    """What KServe's payload logger emits, after Knative's KafkaSink (binary mode)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", request_id.encode()),
        ("ce_source", b"http://localhost:9081/"),
        ("ce_type", f"org.kubeflow.serving.inference.{half}".encode()),
        ("ce_time", time.encode()),
        ("ce_inferenceservicename", b"sklearn-iris"),
        ("ce_namespace", b"kserve-test"),
        ("ce_component", b"predictor"),
        ("ce_endpoint", b"sklearn-iris-predictor"),
        ("content-type", b"application/json"),
    ]


def iris(**settings: Any) -> OpenInference:
    return OpenInference(OipSettings(columns=IRIS_COLUMNS, **settings))


def test_kserve_request_and_response_join_into_records() -> None:
    decoder = iris()
    first = decoder.decode(
        orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z")
    )
    assert first == Decoded([], []) and len(decoder.pending) == 1
    joined = decoder.decode(
        orjson.dumps(IRIS_RESPONSE), kserve_headers("response", "2026-12-01T10:00:00.025Z")
    )
    assert joined.rejected == [] and len(decoder.pending) == 0
    assert joined.records == [
        {
            "prediction_id": f"{IRIS_REQUEST['id']}:{row}",
            "model": "sklearn-iris",
            "model_version": "",
            "timestamp": 1_796_119_200.0,
            "features": dict(
                zip(
                    IRIS_COLUMNS["input-0"].split(),
                    IRIS_REQUEST["inputs"][0]["data"][row],
                    strict=True,
                )
            ),
            "prediction": 1,
            "latency_ms": 25.0,
        }
        for row in range(2)
    ]


def test_the_response_may_arrive_first_and_tensors_may_be_flat() -> None:
    decoder = iris()
    flat = {
        **IRIS_REQUEST,
        "inputs": [{**IRIS_REQUEST["inputs"][0], "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6]}],
    }
    assert (
        decoder.decode(
            orjson.dumps(IRIS_RESPONSE), kserve_headers("response", "2026-12-01T10:00:01Z")
        ).records
        == []
    )
    joined = decoder.decode(orjson.dumps(flat), kserve_headers("request", "2026-12-01T10:00:00Z"))
    assert [r["features"]["petal_width"] for r in joined.records] == [1.4, 1.6]
    assert joined.records[0]["latency_ms"] == 1000.0


def test_one_tensor_per_feature_and_class_probabilities() -> None:
    """MLServer/pandas style: one [n, 1] tensor per column; a predict_proba output [n, 2]."""
    decoder = OpenInference(
        OipSettings(
            model="churn",
            columns={"predict_proba": "stay leave"},
            prediction_output="predict_proba",
        )
    )
    request = {
        "inputs": [
            {"name": "tenure", "shape": [2, 1], "datatype": "INT64", "data": [3, 40]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "gold"]},
            {"name": "autopay", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ]
    }
    response = {
        "model_name": "churn-v2",
        "model_version": "7",
        "outputs": [
            {
                "name": "predict_proba",
                "shape": [2, 2],
                "datatype": "FP64",
                "data": [0.2, 0.8, 0.9, 0.1],
            }
        ],
    }
    headers = kserve_headers("request", "2026-12-01T10:00:00Z", "r-9")
    decoder.decode(orjson.dumps(request), headers)
    records = decoder.decode(
        orjson.dumps(response), kserve_headers("response", "2026-12-01T10:00:00Z", "r-9")
    ).records
    assert [r["model"] for r in records] == ["churn", "churn"]
    assert [r["model_version"] for r in records] == ["7", "7"]
    assert records[0]["features"] == {"tenure": 3, "plan": "basic", "autopay": True}
    assert [r["prediction"] for r in records] == ["leave", "stay"]
    assert records[1]["probabilities"] == {"stay": 0.9, "leave": 0.1}


def test_seldon_request_id_extension_and_structured_mode() -> None:
    decoder = iris()
    for half, body in (("request", IRIS_REQUEST), ("response", IRIS_RESPONSE)):
        event = {
            "specversion": "1.0",
            "id": f"{half}-event",  # Seldon: a fresh id per event, the request id apart
            "requestid": "req-1",
            "source": "io.seldon.serving.deployment.mlserver",
            "type": f"io.seldon.serving.inference.{half}",
            "time": "2026-12-01T10:00:00Z",
            "datacontenttype": "application/json",
            "data": body,
        }
        out = decoder.decode(
            orjson.dumps(event), [("content-type", b"application/cloudevents+json")]
        )
    assert [r["prediction_id"] for r in out.records] == ["req-1:0", "req-1:1"]


def test_bare_oip_json_uses_body_id_and_parameters_timestamp() -> None:
    decoder = iris()
    request = {**IRIS_REQUEST, "parameters": {"timestamp": 1_767_225_600}}
    decoder.decode(orjson.dumps(request), None)
    out = decoder.decode(orjson.dumps(IRIS_RESPONSE), None)
    assert [r["timestamp"] for r in out.records] == [1_767_225_600.0] * 2
    assert "latency_ms" not in out.records[0]


def test_requests_alone_when_the_logger_sends_no_responses() -> None:
    decoder = iris(require_response=False, model="iris")
    out = decoder.decode(
        orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z")
    )
    assert len(out.records) == 2 and "prediction" not in out.records[0]
    assert decoder.decode(
        orjson.dumps(IRIS_RESPONSE), kserve_headers("response", "2026-12-01T10:00:00Z")
    ) == Decoded([], [])
    assert len(decoder.pending) == 0


def test_the_join_is_bounded_in_count_bytes_and_time() -> None:
    now = [0.0]
    decoder = OpenInference(
        OipSettings(columns=IRIS_COLUMNS, max_pending=2, max_wait_seconds=60),
        clock=lambda: now[0],
    )
    for i in range(3):
        out = decoder.decode(
            orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z", f"r{i}")
        )
    assert kinds(out) == ["unjoined"] and "'r0'" in out.rejected[0].reason
    assert len(decoder.pending) == 2 and decoder.pending.evicted == 1
    now[0] = 61.0
    late = decoder.decode(
        orjson.dumps(IRIS_RESPONSE), kserve_headers("response", "2026-12-01T10:00:00Z", "r2")
    )
    assert kinds(late) == ["unjoined", "unjoined"] and late.records == []
    assert len(decoder.pending) == 1  # the late response waits for a request that is gone
    small = OpenInference(OipSettings(columns=IRIS_COLUMNS, max_pending_bytes=300))
    small.decode(orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z", "a"))
    evicted = small.decode(
        orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z", "b")
    )
    assert kinds(evicted) == ["unjoined"] and small.pending.pending_bytes <= 300


def test_a_redelivered_half_replaces_the_waiting_one() -> None:
    decoder = iris()
    for _ in range(2):
        decoder.decode(
            orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z")
        )
    assert len(decoder.pending) == 1


def _pair(
    decoder: OpenInference, request: Any, response: Any, time: str = "2026-12-01T10:00:00Z"
) -> Decoded:
    first = decoder.decode(orjson.dumps(request), kserve_headers("request", time))
    second = decoder.decode(orjson.dumps(response), kserve_headers("response", time))
    return Decoded(first.records + second.records, first.rejected + second.rejected)


@pytest.mark.parametrize(
    ("request_body", "response_body", "kind", "words"),
    [
        (
            {
                "inputs": [
                    {"name": "img", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}
                ]
            },
            IRIS_RESPONSE,
            "unsupported_format",
            "shape",
        ),
        (
            {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1, 2]}]},
            IRIS_RESPONSE,
            "invalid_shape",
            "holds 8 values, data has 2",
        ),
        (
            {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1] * 6}]},
            IRIS_RESPONSE,
            "invalid_shape",
            "formats.oip_columns names 4",
        ),
        (
            IRIS_REQUEST,
            {
                **IRIS_RESPONSE,
                "outputs": [{"name": "o", "shape": [3], "datatype": "INT32", "data": [1, 1, 1]}],
            },
            "invalid_shape",
            "2 rows but its response 3",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1e16]}]},
            {
                **IRIS_RESPONSE,
                "outputs": [{"name": "o", "shape": [1], "datatype": "INT32", "data": [0]}],
            },
            "schema_violation",
            "features.x",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": "AAEC"}]},
            IRIS_RESPONSE,
            "unsupported_format",
            "binary",
        ),
        ({"inputs": []}, IRIS_RESPONSE, "invalid_shape", "non-empty array"),
        (
            IRIS_REQUEST,
            {**IRIS_RESPONSE, "model_name": None},
            "invalid_event",
            "no model name",
        ),
    ],
)
def test_bad_oip_pairs_are_rejected_with_a_reason(
    request_body: Any, response_body: Any, kind: str, words: str
) -> None:
    decoder = OpenInference(OipSettings(columns=IRIS_COLUMNS))
    if kind == "invalid_event":  # no model name anywhere: drop the extension as well
        decoder.decode(
            orjson.dumps(request_body),
            [
                h
                for h in kserve_headers("request", "2026-12-01T10:00:00Z")
                if h[0] != "ce_inferenceservicename"
            ],
        )
        out = decoder.decode(
            orjson.dumps(response_body),
            [
                h
                for h in kserve_headers("response", "2026-12-01T10:00:00Z")
                if h[0] != "ce_inferenceservicename"
            ],
        )
    else:
        out = _pair(decoder, request_body, response_body)
    assert out.records == [] or kind == "schema_violation"
    assert kind in kinds(out), out
    assert any(words in r.reason for r in out.rejected), out.rejected


@pytest.mark.parametrize(
    ("value", "headers", "kind"),
    [
        (b"[1, 2]", None, "invalid_shape"),
        (b"{oops", None, "invalid_json"),
        (orjson.dumps({"model_name": "m"}), None, "invalid_shape"),
        (orjson.dumps({"inputs": []}), None, "invalid_event"),  # no id anywhere
    ],
)
def test_unreadable_oip_messages(value: bytes, headers: Any, kind: str) -> None:
    assert kinds(iris().decode(value, headers)) == [kind]


def test_no_event_time_is_a_reason() -> None:
    decoder = iris()
    decoder.decode(orjson.dumps(IRIS_REQUEST), None)
    out = decoder.decode(orjson.dumps(IRIS_RESPONSE), None)
    assert kinds(out) == ["invalid_event"] and "no event time" in out.rejected[0].reason


# -- the registry and its config ------------------------------------------------------------------


def test_formats_are_chosen_per_topic_in_config() -> None:
    config = load_config(
        environ={"DRIFTLINE_FORMATS_PREDICTIONS": "oip", "DRIFTLINE_FORMATS_LABELS": "cloudevents"}
    )
    assert isinstance(prediction_decoder(config), OpenInference)
    assert isinstance(label_decoder(config), CloudEventsJson)
    default = load_config(environ={})
    assert prediction_decoder(default).decode(orjson.dumps(RECORD)).records == [RECORD]
    assert set(PREDICTION_FORMATS) >= set(LABEL_FORMATS)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"DRIFTLINE_FORMATS_PREDICTIONS": "avro"},
            r"formats.predictions \(from DRIFTLINE_FORMATS_PREDICTIONS\): expected one of",
        ),
        ({"DRIFTLINE_FORMATS_LABELS": "oip"}, "formats.labels"),
        ({"DRIFTLINE_FORMATS_OIP_MAX_PENDING": "0"}, "formats.oip_max_pending"),
        ({"DRIFTLINE_FORMATS_OIP_MAX_WAIT_SECONDS": "-1"}, "formats.oip_max_wait_seconds"),
    ],
)
def test_bad_format_config_fails_at_start_naming_the_key(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(environ=env)


def test_headers_straight_from_a_confluent_message() -> None:
    """confluent-kafka's `Message.headers` is a method; the decoders accept it as is."""

    class Message:
        def headers(self) -> list[tuple[str, bytes]]:
            return binary_headers()

    decoded = CloudEventsJson().decode(orjson.dumps(RECORD), Message().headers)
    assert decoded.records == [RECORD]


# -- no input makes a decoder raise ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input-0", "x", "predict", ""]),
        "shape": st.lists(st.integers(-1, 3), max_size=3),
        "datatype": st.sampled_from(["FP32", "BYTES", "BOOL"]),
        "data": st.lists(_json, max_size=6) | _json,
    }
)
_oip_body = st.fixed_dictionaries(
    {},
    optional={
        "id": _json,
        "inputs": st.lists(_tensor, max_size=3) | _json,
        "outputs": st.lists(_tensor, max_size=3) | _json,
        "model_name": _json,
        "model_version": _json,
        "parameters": st.fixed_dictionaries({}, optional={"timestamp": _json}) | _json,
    },
)
_deep = st.builds(
    lambda n, opener, closed: (
        opener * n + (opener.replace(b"[", b"]").replace(b'{"a":', b"}") * n if closed else b"")
    ),
    st.integers(200, 5000),
    st.sampled_from([b"[", b'{"a":', b'{"records":[']),
    st.booleans(),
)
_values = st.one_of(
    _deep,
    st.binary(max_size=64),
    _json.map(lambda v: json.dumps(v).encode()),
    _oip_body.map(lambda v: json.dumps(v).encode()),
    st.none(),
)
_header_names = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_requestid",
        "content-type",
        "CE_ID",
        "other",
    ]
)
_headers = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            _header_names,
            st.one_of(
                st.binary(max_size=12),
                st.none(),
                st.sampled_from(
                    [
                        b"1.0",
                        b"application/json",
                        b"application/cloudevents+json",
                        b"org.kubeflow.serving.inference.request",
                        b"org.kubeflow.serving.inference.response",
                        b"2026-12-01T10:00:00Z",
                        b"r1",
                    ]
                ),
            ),
        ),
        max_size=8,
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_values, _headers), min_size=1, max_size=3))
def test_no_message_makes_a_decoder_raise(messages: list[tuple[bytes | None, Any]]) -> None:
    decoders = [
        *(make(Config().formats) for make in PREDICTION_FORMATS.values()),
        *(make(Config().formats) for make in LABEL_FORMATS.values()),
        CloudEventsJson("prediction"),
        CloudEventsJson("label"),
        OpenInference(OipSettings(max_pending=2)),
        OpenInference(OipSettings(require_response=False, columns={"x": "a b"})),
    ]
    for value, headers in messages:
        for decoder in decoders:
            decoded = decoder.decode(value, headers)
            assert isinstance(decoded, Decoded)
            assert all(r.kind in REJECTION_KINDS and r.reason for r in decoded.rejected)
        for parse in (parse_predictions, parse_labels):
            decoded = parse(value)
            assert all(r.kind in REJECTION_KINDS and r.reason for r in decoded.rejected)


_CE_BINARY = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"1"),
    ("ce_source", b"s"),
    ("ce_type", b"t"),
    ("content-type", b"application/json"),
]


@pytest.mark.parametrize(
    "value",
    [b"[" * 1000, b"[" * 100_000, b"[" * 5000 + b"]" * 5000, b'{"records":' * 3000],
    ids=["open-1000", "open-100000", "closed-5000", "records-3000"],
)
@pytest.mark.parametrize("headers", [None, _CE_BINARY], ids=["plain", "ce-binary"])
def test_deep_nesting_is_rejected_as_invalid_json_by_every_decoder(
    value: bytes, headers: Any
) -> None:
    """msgspec raises RecursionError on deep nesting (the reviewer's `b'[' * 1000`): every
    registered decoder and both parse functions must reject, not raise."""
    config = Config().formats
    makers = [*PREDICTION_FORMATS.items(), *LABEL_FORMATS.items()]
    results = [(name, make(config).decode(value, headers)) for name, make in makers]
    results += [("driftline", parse_predictions(value)), ("driftline", parse_labels(value))]
    for name, decoded in results:
        assert decoded.records == []
        kinds = [r.kind for r in decoded.rejected]
        # a JSON format calls it invalid JSON; any other registered format rejects it somehow
        assert kinds == ["invalid_json"] if name in _JSON_FORMATS else len(kinds) == 1, decoded


_JSON_FORMATS = {"driftline", "cloudevents", "oip"}


def test_an_unexpected_error_inside_a_decoder_is_a_rejection_not_a_crash() -> None:
    class Broken(GuardedDecoder):
        def decode(self, value: bytes | None, headers: Any = None) -> Decoded:
            raise KeyError("bug")

    decoded = Broken().decode(b"{}")
    assert decoded.records == [] and decoded.rejected[0].kind == "worker_error"
    assert "KeyError" in decoded.rejected[0].reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_oip_body, _oip_body, st.booleans())
def test_no_request_response_pair_makes_the_oip_decoder_raise(
    request: dict[str, Any], response: dict[str, Any], structured: bool
) -> None:
    """Both halves arrive with valid CloudEvent attributes, so every pair reaches the join and
    the tensor mapping, whatever the bodies hold."""
    decoder = OpenInference(OipSettings(columns={"input-0": "a b", "predict": "no yes"}))
    seen = []
    for half, body in (("request", request), ("response", response)):
        value = json.dumps(body).encode()
        headers = kserve_headers(half, "2026-12-01T10:00:00Z", "r1")
        if structured:
            event = {k[3:]: v.decode() for k, v in headers if k.startswith("ce_")}
            value = json.dumps({**event, "data": body}).encode()
            headers = [("content-type", b"application/cloudevents+json")]
        seen.append(decoder.decode(value, headers))
    for decoded in seen:
        assert all(r.kind in REJECTION_KINDS and r.reason for r in decoded.rejected)
        assert all(len(r["features"]) >= 0 for r in decoded.records)


def test_the_join_state_survives_a_restart_through_json() -> None:
    decoder = iris()
    decoder.decode(orjson.dumps(IRIS_REQUEST), kserve_headers("request", "2026-12-01T10:00:00Z"))
    saved = orjson.loads(orjson.dumps(decoder.pending.to_dict()))
    restarted = iris()
    restarted.pending.restore(saved)
    joined = restarted.decode(
        orjson.dumps(IRIS_RESPONSE), kserve_headers("response", "2026-12-01T10:00:00.025Z")
    )
    assert len(joined.records) == 2 and joined.rejected == []
    broken = iris()
    broken.pending.restore({"version": 1, "waiting": [{"key": "x"}, 3, None]})
    broken.pending.restore({"version": 99})
    assert len(broken.pending) == 0
