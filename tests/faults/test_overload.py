"""Fault: overload (issue 14). Producers at twice the worker's measured capacity for two
minutes: the lag grows, shows in the metrics, the lagging-consumer alert fires in a real
Prometheus (a private one with this checkout's rules, deploy/local/prometheus.sh), memory
stays bounded (the backlog waits in Kafka, not in the worker), nothing crashes, and once the
producers stop the lag drains to zero with every prediction processed."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from driftline.config import load_config
from driftline.local import free_port, start_worker_process, stop_worker_processes
from driftline.streams.topics import ensure_topics
from tests.conftest import KafkaService, build_reference, worker_env
from tests.faults.load import Load
from tests.faults.test_broker_restart import processed, wait_until
from tests.faults.test_monitoring_down import query
from tests.security.services import _run, _script_env

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]
OVERLOAD_SECONDS = 120.0
RSS_BOUND_MIB = 640  # docs/OPERATIONS.md, "Faults": batches of 5,000 messages of 10 (497-519 seen)


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


@pytest.mark.slow_fault
def test_overload_lag_grows_fires_the_alert_and_drains(kafka: KafkaService, tmp_path: Path) -> None:
    references = tmp_path / "references"
    build_reference(references)
    env = worker_env(kafka.bootstrap_servers, f"overload-{uuid.uuid4().hex[:8]}", references)
    config = load_config(ROOT / "config" / "driftline.yaml", environ=env)
    ensure_topics(config)
    port = config.worker.metrics_port
    prometheus = free_port()
    script_env = _script_env(
        tmp_path / "cache",
        PROMETHEUS_PORT=str(prometheus),
        ALERTMANAGER_PORT=str(free_port()),
        ALERTMANAGER_CLUSTER_PORT=str(free_port()),
        DRIFTLINE_WORKER_METRICS_PORT=str(port),
    )
    _run("prometheus.sh", "start", script_env)
    # 10 predictions a message: a worker batch (worker.batch_size messages) holds 50,000
    load = Load(config, rate=10_000.0, per_message=10)
    backlog = 300_000
    load.burst(backlog)
    worker = start_worker_process(None, tmp_path / "worker.log", env=env)
    samples: list[tuple[float, float, float, float]] = []  # (t, lag, processed, rss)
    lagging = 'ALERTS{alertname="DriftlineConsumerLagging", alertstate="firing"}'
    try:
        # capacity: how fast the worker drains a backlog (after its first records)
        wait_until(lambda: processed(port) > 0, 120, "the first records")
        started, first = time.monotonic(), processed(port)
        wait_until(lambda: processed(port) >= backlog, 300, "the initial backlog")
        capacity = (processed(port) - first) / (time.monotonic() - started)
        warm_rss, _ = memory_mib(worker.pid)
        load.rate = 2 * capacity
        overload_at = time.monotonic()
        load.start(OVERLOAD_SECONDS)
        fired_after = None
        while time.monotonic() - overload_at < OVERLOAD_SECONDS + 600:
            now = time.monotonic() - overload_at
            lag = metric(port, "driftline_consumer_lag_records")
            samples.append((now, lag, processed(port), memory_mib(worker.pid)[0]))
            assert worker.poll() is None, "the worker died under overload"
            if fired_after is None and query(prometheus, lagging) == 1.0:
                fired_after = now
            if now > OVERLOAD_SECONDS and processed(port) >= load.produced and lag == 0:
                break
            time.sleep(2)
        drained_after = time.monotonic() - overload_at
        load.stop()
        _, peak_rss = memory_mib(worker.pid)
        lag_in_prometheus = query(
            prometheus, "max_over_time(sum(driftline_consumer_lag_records)[10m:5s])"
        )
    finally:
        load.stop()
        stop_worker_processes([worker])
        _run("prometheus.sh", "stop", script_env)
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode is not None and worker.returncode <= 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    peak_lag = max(s[1] for s in samples)
    print(
        f"capacity {capacity:,.0f} predictions/s; producers at {load.rate:,.0f}/s for "
        f"{OVERLOAD_SECONDS:.0f} s; peak lag {peak_lag:,.0f} messages ({load.per_message} "
        f"predictions each); DriftlineConsumerLagging firing after {fired_after or -1:.0f} s; drained "
        f"{drained_after - OVERLOAD_SECONDS:.0f} s after the producers stopped; RSS {warm_rss:.0f} "
        f"MiB warm, peak {peak_rss:.0f} MiB (bound {RSS_BOUND_MIB})"
    )
    during = [s for s in samples if s[0] <= OVERLOAD_SECONDS]
    assert peak_lag > 1_000 and during[-1][1] > during[len(during) // 4][1], samples  # grew
    assert samples[-1][1] == 0, samples[-5:]  # drained
    assert samples[-1][2] >= load.produced, (samples[-1], load.produced)  # every prediction
    assert fired_after is not None, "DriftlineConsumerLagging never fired"
    assert lag_in_prometheus is not None and lag_in_prometheus > 1_000  # visible in Prometheus
    assert peak_rss < RSS_BOUND_MIB, (warm_rss, peak_rss)
