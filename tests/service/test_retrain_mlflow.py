"""The MLflow Model Registry backend against a real `mlflow server` started here (PostgreSQL
backend store in a schema of its own, a temporary artifact root, a free port): versions,
artifacts, status tags and the champion/challenger aliases follow driftline's registry."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from driftline.config import Config
from driftline.local import free_port
from driftline.sinks.store import PostgresStore
from tests.conftest import IN_CI
from tests.service.test_retrain import _challenger, add_sample
from tests.service.test_retrain_helpers import schema_store

pytestmark = pytest.mark.service


@pytest.fixture
def mlflow_server(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        message = "mlflow is not installed: pip install 'driftline[mlflow]'"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    schema = f"mlflow_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    store_uri = (
        postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
        + f"?options=-csearch_path%3D{schema}"
    )
    port = free_port()
    log = (tmp_path / "mlflow.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            store_uri,
            "--default-artifact-root",
            str(tmp_path / "mlartifacts"),
            "--no-serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start in 180 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


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
