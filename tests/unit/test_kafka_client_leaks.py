"""No Kafka client outlives what created it: `PredictionLogger.close()` lets go of its producer
even with records queued for a broker that is not there, and the suite's guard
(`tests/conftest.py`, `pytest_runtest_teardown`) fails a test that leaves a client behind.

A client left alive retries its broker forever from librdkafka's threads; once that broker is
gone it prints `%3|...|rdkafka#producer-N| ... Connect to ... failed: Connection refused` into
every later test's output. No broker is needed here: the clients point at a closed port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftline.client import DeliveryError, PredictionLogger
from tests.conftest import ROOT, live_kafka_clients


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clients_back_to(expected: int) -> int:
    """live_kafka_clients() once it is `expected` (a destroyed client's threads take a moment)."""
    deadline = time.monotonic() + 2
    while (live := live_kafka_clients()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return live


def test_close_drops_queued_records_and_the_producer_goes_with_the_logger() -> None:
    before = live_kafka_clients()
    logger = PredictionLogger(
        f"127.0.0.1:{_closed_port()}", "any",
        settings={"message.timeout.ms": 60_000, "log_level": 0},
    )  # fmt: skip
    logger.log(prediction_id="p-1", model="fraud", model_version="1", features={}, prediction=1)
    assert live_kafka_clients() == before + 1
    with pytest.raises(DeliveryError, match="1 record\\(s\\) still queued after 0 s"):
        logger.close(timeout=0)
    del logger  # no garbage collection needed: nothing else holds the producer
    assert _clients_back_to(before) == before


CONFTEST = """
from tests.conftest import (  # noqa: F401  the suite's guard
    pytest_fixture_post_finalizer, pytest_fixture_setup, pytest_runtest_makereport,
    pytest_runtest_setup, pytest_runtest_teardown,
)
"""
LEAKY = """
import pytest
from confluent_kafka import Producer

SETTINGS = {"bootstrap.servers": "127.0.0.1:PORT", "log_level": 0}
LEFT = []


@pytest.fixture(scope="module")
def shared_producer():
    yield Producer(SETTINGS)  # the module's: alive across its tests by design


def test_uses_a_module_fixture(shared_producer):
    assert shared_producer.flush(0) == 0


def test_leaves_a_producer_behind():
    LEFT.append(Producer(SETTINGS))


def test_uses_the_module_fixture_too(shared_producer):
    assert shared_producer.flush(0) == 0


def test_fails_with_a_client_in_its_frame():
    producer = Producer(SETTINGS)
    assert producer is None


def test_drops_its_producer():  # the last of the module: the module fixture goes with it
    producer = Producer(SETTINGS)
    assert producer.flush(0) == 0
"""


def test_the_guard_fails_a_test_that_leaves_a_client_behind(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_leaky.py").write_text(LEAKY.replace("PORT", str(_closed_port())))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir",
         str(tmp_path), str(tmp_path / "test_leaky.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert "1 failed, 4 passed, 1 error" in out, out[-3000:]
    assert "ERROR at teardown of test_leaves_a_producer_behind" in out, out[-3000:]
    assert "test_leaves_a_producer_behind left 1 Kafka client(s) alive" in out, out[-3000:]
    assert "New client objects: Producer" in out, out[-3000:]
    # the failed test is reported once, for its assertion: its frames are kept for debugging
    assert "test_fails_with_a_client_in_its_frame left" not in out, out[-3000:]
