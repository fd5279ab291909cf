"""`Pipeline.checkpoint(confirm)`: the shell's confirmation awaited after every
`CHECKPOINT_CONFIRM_BYTES` sent (the producer's queue never holds a whole checkpoint), with
the same messages written as without it."""

from __future__ import annotations

import asyncio
import re

import pytest

from driftline.config import Config
from driftline.detectors.profile import ReferenceProfile
from driftline.simulate import simulate
from driftline.streams import pipeline as pipeline_module
from tests.unit.test_pipeline_flow import START, Run, config, profile  # noqa: F401


def _kind(key: bytes | None) -> bytes:
    """The key without the random id of a segment (``s1/0#seg/<id>``, ``s1/0#join/<id>``)."""
    return re.sub(rb"#(\w+)/\w+", rb"#\1/", key or b"")


def _fed(config: Config, profile: ReferenceProfile) -> Run:  # noqa: F811
    stream, _ = simulate(1_500, seed=3, start_time=START, rate_per_second=10.0)
    run = Run(config, profile)
    asyncio.run(run.feed("predictions", stream))
    return run


def test_checkpoint_confirms_as_it_goes_and_writes_the_same(
    config: Config,  # noqa: F811
    profile: ReferenceProfile,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = _fed(config, profile)
    written = asyncio.run(plain.pipeline.checkpoint())
    sent = plain.broker.sent["ckpt"]

    monkeypatch.setattr(pipeline_module, "CHECKPOINT_CONFIRM_BYTES", 2_000)
    run = _fed(config, profile)
    confirmed_at: list[int] = []

    async def confirm() -> None:
        confirmed_at.append(len(run.broker.sent["ckpt"]))

    assert asyncio.run(run.pipeline.checkpoint(confirm)) == written
    in_order = run.broker.sent["ckpt"]
    assert [_kind(k) for k, _, _ in in_order] == [_kind(k) for k, _, _ in sent]
    assert [len(v or b"") for _, v, _ in in_order] == [len(v or b"") for _, v, _ in sent]
    assert len(confirmed_at) >= 2
    # confirmed once 2,000 bytes were queued, never with fewer
    for before, after in zip([0, *confirmed_at], confirmed_at, strict=False):
        queued = sum(len(k or b"") + len(v or b"") for k, v, _ in in_order[before:after])
        assert queued >= 2_000
