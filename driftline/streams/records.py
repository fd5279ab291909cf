"""Parsing and validating records off the wire: bytes in, plain dicts (or a reason) out.

Kept for existing imports: the implementation lives in `driftline.streams.formats` (the input
decoders, the record contract and its checks); see that package for the formats and bounds.
"""

from __future__ import annotations

from driftline.streams.formats import (
    REJECTION_KINDS,
    Decoded,
    RecordError,
    RejectedRecord,
    parse_labels,
    parse_predictions,
)

__all__ = [
    "REJECTION_KINDS",
    "Decoded",
    "RecordError",
    "RejectedRecord",
    "parse_labels",
    "parse_predictions",
]
