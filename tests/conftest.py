"""Fixtures that connect to the real services.

Where they are: the variables `deploy/local/env.sh` exports (`make test` sources it), else the
defaults of the local stack. A service that does not answer:
- under CI=true: the test FAILS (CI must never pass by skipping what it should test);
- elsewhere: with Docker available, Kafka and PostgreSQL come from testcontainers;
  otherwise the test is skipped with a message saying how to start the stack (`make up`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftline.config import Config, load_config
from driftline.local import free_port

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _missing(service: str, where: str) -> None:
    message = f"{service} is not reachable at {where}: run `make up` (or `make test`, which does)"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class KafkaService:
    bootstrap_servers: str


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaService]:
    bootstrap = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if _reachable(bootstrap):
        yield KafkaService(bootstrap)
        return
    if not IN_CI and _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield KafkaService(container.get_bootstrap_server())
        return
    _missing("Kafka", bootstrap)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get(
        "DRIFTLINE_POSTGRES_URL", "postgresql://driftline:driftline@127.0.0.1:5432/driftline"
    )
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    if _reachable(host_port):
        yield url
        return
    if not IN_CI and _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield container.get_connection_url()
        return
    _missing("PostgreSQL", host_port)


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    url = os.environ.get("DRIFTLINE_PROMETHEUS_URL", "http://127.0.0.1:9090")
    if not _reachable(url.split("//", 1)[1]):
        _missing("Prometheus", url)
    return url


@pytest.fixture
def isolated_config(kafka: KafkaService, tmp_path: Path) -> tuple[Config, dict[str, str]]:
    """A config with topics, consumer group and ports of its own, and the same settings as
    environment variables (for worker processes the test starts)."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DRIFTLINE_TOPICS_PREDICTIONS": f"test-{suffix}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"test-{suffix}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"test-{suffix}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"test-{suffix}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"test-{suffix}.metrics",
        "DRIFTLINE_WORKER_APP_ID": f"test-{suffix}",
        "DRIFTLINE_WORKER_METRICS_PORT": str(free_port()),
        "DRIFTLINE_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "DRIFTLINE_WORKER_BATCH_TIMEOUT_SECONDS": "0.2",
    }
    return load_config(ROOT / "config" / "driftline.yaml", environ=env), env
