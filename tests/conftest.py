"""Fixtures that connect to the real services.

Where they are: the variables `deploy/local/env.sh` exports (`make test` sources it), else the
defaults of the local stack. A service that does not answer:
- under CI=true: the test FAILS (CI must never pass by skipping what it should test);
- elsewhere: with Docker available, Kafka and PostgreSQL come from testcontainers;
  otherwise the test is skipped with a message saying how to start the stack (`make up`).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from driftline.config import Config, load_config
from driftline.detectors.profile import ReferenceProfile
from driftline.local import free_port
from driftline.simulate import simulate

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
    _remember_topics(env)
    return load_config(ROOT / "config" / "driftline.yaml", environ=env), env


@pytest.fixture(scope="session")
def fraud_profile() -> ReferenceProfile:
    """The simulator's fraud model, profiled from 3,000 records (seed 99)."""
    records, labels = simulate(3_000, seed=99)
    return ReferenceProfile.from_records(
        records, model="fraud", model_version="1", labels=[x["label"] for x in labels]
    )


# -- no Kafka client outlives its test -----------------------------------------------------------
# A confluent-kafka client (Producer, Consumer, AdminClient, or one inside a driftline object) left
# alive keeps retrying its broker from librdkafka's native threads: once that broker is gone (a
# closed port, a private Kafka stopped) it prints `%3|...|rdkafka#producer-N| ... Connect to ...
# failed` into whatever runs next, for the rest of the session (the demo test checks its output).
# librdkafka names its threads: one `rdk:main` per client handle, visible in /proc (native
# threads are not in threading.enumerate()). Counting them costs well under a millisecond.
_TASKS = Path("/proc/self/task")
_CLIENTS_AT_SETUP = pytest.StashKey[int]()
_FAILED = pytest.StashKey[bool]()
_REPORTED: set[int] = set()  # ids of client objects already named by a failure
# Clients that module- or session-scoped fixtures hold (they outlive a test by design), by
# fixture: counted when it is set up, forgotten when it is finalized.
_FIXTURE_CLIENTS: dict[int, int] = {}


def live_kafka_clients() -> int:
    """librdkafka client handles alive in this process (its `rdk:main` threads)."""
    count = 0
    with suppress(OSError):
        for task in _TASKS.iterdir():
            with suppress(OSError):  # a thread that ended meanwhile
                count += (task / "comm").read_text().strip() == "rdk:main"
    return count


def _test_owned_clients() -> int:
    """Live clients less those of the broader-scoped fixtures set up now."""
    return live_kafka_clients() - sum(_FIXTURE_CLIENTS.values())


def _kafka_client_objects() -> list[str]:
    """The client objects the collector sees (not those frozen by gc.freeze()), with what
    holds each, those a failure already named left out."""
    import gc
    import sys

    kafka = sys.modules.get("confluent_kafka")
    if kafka is None:
        return []
    kinds: tuple[type, ...] = (kafka.Producer, kafka.Consumer)
    if (admin := sys.modules.get("confluent_kafka.admin")) is not None:
        kinds += (admin.AdminClient,)
    found = [o for o in gc.get_objects() if isinstance(o, kinds) and id(o) not in _REPORTED]
    here = sys._getframe()
    described = []
    for client in found:
        _REPORTED.add(id(client))
        holders = {
            type(r).__name__
            for r in gc.get_referrers(client)
            if r is not here and not isinstance(r, dict | list)
        }
        held = f" held by {', '.join(sorted(holders))}" if holders else ""
        described.append(f"{type(client).__name__}{held}")
    return described


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_CLIENTS_AT_SETUP] = _test_owned_clients()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Iterator[Any]:
    if fixturedef.scope == "function":
        return (yield)
    before = live_kafka_clients()
    result = yield
    if (created := live_kafka_clients() - before) > 0:
        _FIXTURE_CLIENTS[id(fixturedef)] = created
    return result


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any]) -> None:
    _FIXTURE_CLIENTS.pop(id(fixturedef), None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Fail a test that leaves a librdkafka client of its own alive (not closed, or still
    referenced) once its fixtures are torn down: close it (Consumer.close(),
    Producer.flush(timeout), PredictionLogger.close()), stop the thread using it, and drop it.

    Checked after every other teardown (pytest's log capture holds the records of the test, and
    through an exception's traceback the frames and the clients in them, until then); not after
    a failure (pytest keeps the failed test's frames for debugging)."""
    result = yield
    before = item.stash.get(_CLIENTS_AT_SETUP, None)
    if before is None or item.stash.get(_FAILED, False) or _test_owned_clients() <= before:
        return result
    import gc
    import time

    # Clients only reachable through a reference cycle go with a collection; the threads of a
    # client being destroyed take a moment to end.
    deadline = time.monotonic() + 1
    while (left := _test_owned_clients() - before) > 0 and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    if left > 0:
        objects = _kafka_client_objects() or ["none the collector sees (frozen, or in C)"]
        pytest.fail(
            f"{item.nodeid} left {left} Kafka client(s) alive (librdkafka `rdk:main` threads): "
            "close and drop every Producer/Consumer/AdminClient it, or the driftline object it "
            f"drives, creates. New client objects: {'; '.join(objects)}",
            pytrace=False,
        )
    return result


# Topics of this run, deleted when it ends: a broker keeps files open for every partition, and
# a local stack that served a few runs (each test with topics of its own) reached its limit of
# open files and died ("Too many open files"). Other runs' topics on the same broker are left.
_RUN_TOPICS: set[str] = set()  # exact names
_RUN_APP_IDS: set[str] = set()  # the worker's own topics: <app_id>-partials, -checkpoints


def _remember_topics(env: dict[str, str]) -> None:
    _RUN_TOPICS.update(v for k, v in env.items() if k.startswith("DRIFTLINE_TOPICS_"))
    if "DRIFTLINE_WORKER_APP_ID" in env:
        _RUN_APP_IDS.add(env["DRIFTLINE_WORKER_APP_ID"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    bootstrap = os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if not (_RUN_TOPICS or _RUN_APP_IDS) or not _reachable(bootstrap):
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    with suppress(Exception):  # cleaning up never fails a run
        existing = admin.list_topics(timeout=10).topics
        ours = [
            t
            for t in existing
            if t in _RUN_TOPICS or any(t.startswith(f"{a}-") for a in _RUN_APP_IDS)
        ]
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            with suppress(Exception):
                future.result(timeout=60)


def build_reference(directory: Path, model: str = "fraud", model_version: str = "1") -> Any:
    """The reference profile of the service tests: 20,000 simulated training records with
    labels, saved as `<directory>/<model>@<version>.json` (what the worker loads)."""
    import copy
    import dataclasses

    directory.mkdir(parents=True, exist_ok=True)
    # Built once per version (about a second, many tests ask): the simulated records differ
    # between models only in their `model` field, so the profile differs only in its name.
    profile = copy.deepcopy(dataclasses.replace(_reference(model_version), model=model))
    profile.save(directory / f"{model}@{model_version}.json")
    return profile


@functools.cache
def _reference(model_version: str) -> Any:
    from driftline.detectors.profile import ReferenceProfile
    from driftline.simulate import simulate

    records, labels = simulate(20_000, seed=99, model="fraud", model_version=model_version)
    return ReferenceProfile.from_records(
        records, model="fraud", model_version=model_version, labels=[x["label"] for x in labels]
    )


def worker_env(bootstrap: str, prefix: str, references: Path, **overrides: str) -> dict[str, str]:
    """Settings (as DRIFTLINE_* variables) of a test worker: topics, consumer group and metrics
    port of its own, 60-s windows with 5 s of lateness and idleness. Keyword arguments are
    more variables, without the DRIFTLINE_ prefix."""
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLINE_TOPICS_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPICS_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPICS_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPICS_DLQ": f"{prefix}.dlq",
        "DRIFTLINE_TOPICS_METRICS": f"{prefix}.metrics",
        "DRIFTLINE_WORKER_APP_ID": prefix,
        "DRIFTLINE_WORKER_METRICS_PORT": str(free_port()),
        "DRIFTLINE_WORKER_REFERENCE_DIR": str(references),
        "DRIFTLINE_WORKER_THRESHOLDS_FILE": str(ROOT / "config" / "drift_thresholds.yaml"),
        "DRIFTLINE_WINDOWS_SIZE_SECONDS": "60",
        "DRIFTLINE_WINDOWS_ALLOWED_LATENESS_SECONDS": "5",
        "DRIFTLINE_WINDOWS_IDLE_TIMEOUT_SECONDS": "5",
    }
    env.update({f"DRIFTLINE_{key}": value for key, value in overrides.items()})
    _remember_topics(env)
    return env


@pytest.fixture
def receiver() -> Iterator[Any]:
    """The Alertmanager webhook receiver on 127.0.0.1:9097 (`tests.service.e2e.Receiver`)."""
    import threading

    from tests.service.e2e import Receiver

    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(url, worker metrics port) of a Prometheus of this test with this checkout's rules
    (`tests.service.e2e.own_prometheus`)."""
    from tests.service.e2e import own_prometheus

    with own_prometheus(tmp_path) as found:
        yield found


# -- private instances for the security and fault tests (never the shared stack) -----------------


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway PKI: CA, broker/server certificate, client certificates, and an unrelated
    CA (to prove an untrusted certificate is refused)."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    from tests.security.pki import make_pki

    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    server_cert, server_key = pki.issue("broker", server=True)
    (directory / "broker.pem").write_text(server_key.read_text() + server_cert.read_text())
    client_cert, client_key = pki.issue("driftline")
    rogue = make_pki(directory, ca_name="rogue-ca")
    rogue_cert, rogue_key = rogue.issue("intruder", ca_name="rogue-ca")
    return TlsFiles(
        directory, pki.ca, server_cert, server_key, client_cert, client_key,
        rogue.ca, rogue_cert, rogue_key,
    )  # fmt: skip


# Starting them takes half a minute or more each (a JVM, initdb, MLflow's imports and
# migrations): they are started in background threads when the session begins, if a collected
# test needs them, so that they start while other tests run and in parallel with each other.
BACKGROUND_SERVICES = ("private_kafka", "private_postgres", "mlflow_server")
_SHARED_POSTGRES_URL = "postgresql://driftline:driftline@127.0.0.1:5432/driftline"


@pytest.fixture(scope="session", autouse=True)
def _background_services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Any]]]:
    """{fixture name: future of the started service} for the services of
    `BACKGROUND_SERVICES` some collected test needs; each is stopped at the end of the session."""
    import secrets

    needed = {
        name
        for item in request.session.items
        for name in BACKGROUND_SERVICES
        if name in getattr(item, "fixturenames", ())
    }
    services: dict[str, Any] = {}
    if needed & {"private_kafka", "private_postgres"}:
        from tests.security.services import PrivateKafka, PrivatePostgres

        tls: TlsFiles = request.getfixturevalue("tls_files")
        if "private_kafka" in needed:
            services["private_kafka"] = PrivateKafka(
                tmp_path_factory.mktemp("kafka-cache"),
                tls.directory,
                {"driftline": "scram-" + secrets.token_urlsafe(12)},
            )
        if "private_postgres" in needed:
            # a 0700 directory, as a clone under root's home would be
            services["private_postgres"] = PrivatePostgres(
                tmp_path_factory.mktemp("pg-clone") / ".cache",
                "pg-" + secrets.token_urlsafe(12),
                tls.server_cert,
                tls.server_key,
            )
    if "mlflow_server" in needed:
        from tests.service.mlflow_server import MlflowServer

        url = os.environ.get("DRIFTLINE_POSTGRES_URL", _SHARED_POSTGRES_URL)
        services["mlflow_server"] = MlflowServer(url, tmp_path_factory.mktemp("mlflow"))
    with ThreadPoolExecutor(max(1, len(services)), thread_name_prefix="service") as pool:
        started = {name: pool.submit(_started, service) for name, service in services.items()}
        try:
            yield started
        finally:
            stops = [pool.submit(_stopped, s, started[n]) for n, s in services.items()]
            for stopping in stops:
                stopping.result()


def _started(service: Any) -> Any:
    service.start()
    return service


def _stopped(service: Any, starting: Future[Any]) -> None:
    """Stopped once its start has ended, whatever the outcome (a failed start may leave a
    process behind)."""
    with suppress(Exception):
        starting.exception()
    with suppress(Exception):
        service.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests needing a private Kafka or PostgreSQL run last (in their order): those start
    in the background while everything else runs."""
    private = ("private_kafka", "private_postgres")
    items.sort(key=lambda item: any(n in getattr(item, "fixturenames", ()) for n in private))


def _private(request: pytest.FixtureRequest, name: str, what: str) -> Any:
    started: dict[str, Future[Any]] = request.getfixturevalue("_background_services")
    try:
        return started[name].result()
    except RuntimeError as exc:
        pytest.fail(f"the private {what} did not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def private_kafka(request: pytest.FixtureRequest) -> Any:
    """A Kafka of this test session (PLAINTEXT, SASL_SSL/SCRAM-SHA-512 and mTLS listeners),
    started once (`_background_services`); tests may stop and restart it. SCRAM user
    `driftline`."""
    return _private(request, "private_kafka", "Kafka")


@pytest.fixture(scope="session")
def private_postgres(request: pytest.FixtureRequest) -> Any:
    """A PostgreSQL of this test session with TLS on, started once (`_background_services`) by
    deploy/local/postgres.sh from a 0700 directory (as a clone under root's home would be)."""
    return _private(request, "private_postgres", "PostgreSQL")


@pytest.fixture(scope="session")
def mlflow_server(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of an `mlflow server` of this session (`tests.service.mlflow_server`), its
    backend store in a schema of its own of the test PostgreSQL; started in the background
    when the session begins (`_background_services`)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        message = "mlflow is not installed: pip install 'driftline[mlflow]'"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from tests.service.mlflow_server import MlflowServer

    if postgres_url == os.environ.get("DRIFTLINE_POSTGRES_URL", _SHARED_POSTGRES_URL):
        started: dict[str, Future[Any]] = request.getfixturevalue("_background_services")
        try:
            yield started["mlflow_server"].result().url
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        return
    # PostgreSQL came from a container: a server of its own on that one
    own = MlflowServer(postgres_url, tmp_path_factory.mktemp("mlflow-own"))
    try:
        own.start()
        yield own.url
    finally:
        own.stop()
