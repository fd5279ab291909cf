"""Stage-2 checkpoints through the real Kafka: the pending partials are written as the
partials messages that brought them (bytes unchanged), and a model restored from them closes
its windows exactly as the live one does."""

from __future__ import annotations

import orjson
import pytest

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.simulate import simulate
from driftline.streams.checkpoint import ensure_internal_topics
from driftline.streams.payloads import WatermarkMessage
from tests.service.checkpoint_worker import START, Worker
from tests.service.test_checkpoint_chunks import _latest_raw

pytestmark = pytest.mark.service


def test_pending_partials_are_checkpointed_as_received_and_restore_the_same_windows(
    isolated_config: tuple[Config, dict[str, str]], fraud_profile: ReferenceProfile
) -> None:
    config, _ = isolated_config
    ensure_internal_topics(config)
    live = Worker(config, fraud_profile, n_sources=2)
    # stage 1 of source 0: 700 s of records close two 300-s windows, handed on as partials
    records, _ = simulate(1_400, seed=4, start_time=START, rate_per_second=2.0)
    live.feed(records, 0)
    partials = [v for v in live.sent["partials"] if v.startswith(b'{"kind":"partial"')]
    assert len(partials) == 2
    live.partials(partials)  # source 1 has not reported: both windows stay pending
    assert len(live.pipeline.stage2["fraud"].pending) == 2
    live.checkpoint()
    raw = _latest_raw(config)["s2/fraud"]
    assert all(p in raw for p in partials)  # written as they came, not serialised again

    # source 1 goes idle: both windows close, on the live model and on the restored one
    idle = WatermarkMessage(1, None, True, None).encode()
    restored = Worker(config, fraud_profile, n_sources=2)
    restored.partials([idle])
    live.partials([idle])
    windows = [orjson.loads(v) for v in live.sent["m"] if b'"type":"window"' in v]
    assert [w["evaluation"]["window_start"] for w in windows] == [START, START + 300.0]
    assert restored.sent["m"] == live.sent["m"]
