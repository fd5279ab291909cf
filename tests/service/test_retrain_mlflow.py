"""The MLflow Model Registry backend against a real `mlflow server` (the `mlflow_server`
fixture of tests/conftest.py: PostgreSQL backend store in a schema of its own, a temporary
artifact root, a free port): versions, artifacts, status tags and the champion/challenger
aliases follow driftline's registry."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.config import Config
from driftline.sinks.store import PostgresStore
from tests.service.test_retrain import _challenger, add_sample
from tests.service.test_retrain_helpers import schema_store

pytestmark = pytest.mark.service


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    with schema_store(postgres_url) as store:
        yield store


def test_versions_aliases_and_artifacts_follow_the_registry_in_mlflow(
    isolated_config: tuple[Config, dict[str, str]],
    tmp_path: Path,
    store: PostgresStore,
    mlflow_server: str,
) -> None:
    from mlflow import MlflowClient

    service, _, champion, challenger = _challenger(
        isolated_config,
        tmp_path,
        store,
        "fraud",
        RETRAINING_REGISTRY="mlflow",
        RETRAINING_MLFLOW_TRACKING_URI=mlflow_server,
    )
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)

    def mirrored(version: str) -> tuple[str, dict[str, str]]:
        found = client.search_model_versions(
            f"name = 'fraud' and tag.`driftline.version` = '{version}'"
        )
        assert len(found) == 1, (version, found)
        return found[0].version, found[0].tags

    champion_mv, tags = mirrored(champion)
    assert tags["driftline.status"] == "champion"
    challenger_mv, tags = mirrored(challenger)
    assert tags["driftline.status"] == "challenger" and tags["driftline.parent"] == champion
    aliases = client.get_registered_model("fraud").aliases
    assert aliases == {"champion": champion_mv, "challenger": challenger_mv}
    # The artifact in MLflow is the registered one, byte for byte.
    row = service.registry.version("fraud", challenger)
    assert row is not None
    source = client.get_model_version("fraud", challenger_mv).source
    downloaded = Path(source.removeprefix("file://")) / "model.bin"
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == row["artifact_sha256"]
    run = client.get_run(client.get_model_version("fraud", challenger_mv).run_id)
    assert run.data.metrics["accuracy"] == pytest.approx(row["metrics"]["accuracy"])

    add_sample(store, 2000, model="fraud", version=champion, seed=7, accuracy=0.88)
    add_sample(store, 600, model="fraud", version=challenger, seed=8, accuracy=0.96)
    assert service.evaluate_tests()[0][1] == "promote"
    aliases = client.get_registered_model("fraud").aliases
    assert aliases == {"champion": challenger_mv}
    assert mirrored(champion)[1]["driftline.status"] == "retired"
    assert mirrored(challenger)[1]["driftline.status"] == "champion"
