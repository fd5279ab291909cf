"""Fixtures shared by the unit tests that drive `Pipeline` without a broker."""

from __future__ import annotations

import pytest

from driftline.detectors.profile import ReferenceProfile
from driftline.simulate import simulate


@pytest.fixture(scope="session")
def fraud_profile() -> ReferenceProfile:
    """The simulator's fraud model, profiled from 3,000 records (seed 99)."""
    records, labels = simulate(3_000, seed=99)
    return ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    )
