"""Input formats: one Kafka message (value, headers) in, normalised records and rejections out.

The pipeline asks this package for the decoder of each topic and calls `decode(value, headers)`;
everything downstream sees the same record dicts whatever the wire format. Formats, chosen by
`formats.predictions` / `formats.labels` in the config (docs/FORMATS.md):

=============  ===========================================  ====================
name           reads                                        topics
=============  ===========================================  ====================
driftline      driftline JSON: a record, an array, or        predictions, labels
               `{"records": [...]}` (default)
cloudevents    the same inside CloudEvents (Kafka binding,   predictions, labels
               binary or structured mode)
oip            Open Inference Protocol v2 request/response   predictions
               pairs (KServe payload logger), joined by id
=============  ===========================================  ====================

Adding a format: a module here with a class that has `decode(value, headers) -> Decoded`, and
one line in `PREDICTION_FORMATS` (and/or `LABEL_FORMATS`) below, e.g.
`"csvline": decoder_from("csvline:CsvLines"),` (imported when first built).

>>> from driftline.config import Config
>>> decoder = prediction_decoder(Config())
>>> decoder.decode(b'{"prediction_id": 1, "model": "m", "model_version": "1", '
...                b'"timestamp": 5, "features": {"x": 0.5}}').records
[{'prediction_id': 1, 'model': 'm', 'model_version': '1', 'timestamp': 5.0, 'features': {'x': 0.5}}]
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from driftline.streams.formats.base import (
    REJECTION_KINDS,
    Decoded,
    Decoder,
    Headers,
    RejectedRecord,
)
from driftline.streams.formats.cloudevents import CloudEventsJson
from driftline.streams.formats.contract import RecordError, check_label, check_prediction
from driftline.streams.formats.driftline_json import (
    DriftlineJson,
    decode_labels,
    decode_predictions,
)
from driftline.streams.formats.oip import OipSettings, OpenInference
from driftline.streams.formats.structs import StructPredictions

if TYPE_CHECKING:
    from driftline.config import Config, FormatsConfig

__all__ = [
    "LABEL_FORMATS",
    "PREDICTION_FORMATS",
    "REJECTION_KINDS",
    "Decoded",
    "Decoder",
    "Headers",
    "RecordError",
    "RejectedRecord",
    "check_label",
    "check_prediction",
    "decoder_from",
    "label_decoder",
    "parse_labels",
    "parse_predictions",
    "prediction_decoder",
]

def decoder_from(
    path: str, *args: Any, with_config: bool = False
) -> Callable[[FormatsConfig], Decoder]:
    """A registry entry for a format module of this package, imported when a decoder is first
    built (so a new format is one module and one line here): `path` is `module:name`;
    `name(*args)` builds the decoder, or with `with_config` `name(config, *args)` (`config` is
    the `formats` section, for options of the format's own).

    >>> from driftline.config import Config
    >>> make = decoder_from("cloudevents:CloudEventsJson", "prediction")
    >>> type(make(Config().formats)).__name__
    'CloudEventsJson'
    """
    module, _, name = path.partition(":")

    def build(config: FormatsConfig) -> Decoder:
        factory = getattr(import_module(f"{__name__}.{module}"), name)
        decoder: Decoder = factory(config, *args) if with_config else factory(*args)
        return decoder

    return build


PREDICTION_FORMATS: dict[str, Callable[[FormatsConfig], Decoder]] = {
    "driftline": lambda _: DriftlineJson("prediction"),
    "cloudevents": lambda _: CloudEventsJson("prediction"),
    "oip": lambda config: OpenInference(
        OipSettings(
            model=config.oip_model,
            columns=config.oip_columns,
            prediction_output=config.oip_prediction_output,
            require_response=config.oip_require_response,
            max_pending=config.oip_max_pending,
            max_pending_bytes=config.oip_max_pending_bytes,
            max_wait_seconds=config.oip_max_wait_seconds,
        )
    ),
}
LABEL_FORMATS: dict[str, Callable[[FormatsConfig], Decoder]] = {
    "driftline": lambda _: DriftlineJson("label"),
    "cloudevents": lambda _: CloudEventsJson("label"),
}


def prediction_decoder(config: Config, for_windows: bool = False) -> Decoder:
    """The decoder of the predictions topic (`formats.predictions`, checked at config load).
    Build it once per worker: a joining format (oip) keeps its pending halves in it.

    `for_windows`: the worker's hot path. For driftline JSON, records may then come as Structs
    that read like the dicts (`record["model"]`, `.get`, `in`) and that
    `RecordBatch.from_records` turns into the same columns faster (`structs.py`)."""
    if for_windows and config.formats.predictions == "driftline":
        return StructPredictions()
    return PREDICTION_FORMATS[config.formats.predictions](config.formats)


def label_decoder(config: Config) -> Decoder:
    """The decoder of the labels topic (`formats.labels`)."""
    return LABEL_FORMATS[config.formats.labels](config.formats)


parse_predictions: Callable[[bytes | None], Decoded] = decode_predictions
"""driftline JSON predictions (the default format without headers), as a plain function.

>>> ok, bad = parse_predictions(b'[{"prediction_id": "1", "model": "fraud", '
...     b'"model_version": "3", "timestamp": 1.0, "features": {"x": 1}}, {"model": "fraud"}]')
>>> len(ok), bad[0].reason
(1, "record 1: missing required field 'prediction_id'")
"""

parse_labels: Callable[[bytes | None], Decoded] = decode_labels
"""driftline JSON labels (one label, an array, or `{"records": [...]}`), validated against
`config/schemas/label.v1.schema.json`: a null, object or list label is rejected.

>>> parse_labels(b'{"prediction_id": "p-1", "label": [1], "timestamp": 3}').rejected[0].reason
"field 'label' must be a number within ±1e+15, a string of at most 1024 characters or a boolean, got array"
"""
