"""Running driftline workers as local processes: for `driftline demo`, the tests and the
benchmarks (one place, so that every caller starts and stops them the same way)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["free_port", "start_worker_process", "stop_worker_processes"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker_process(
    config_path: Path | None, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `driftline worker` as a child process, logging to `log_path`."""
    command = [sys.executable, "-m", "driftline"]
    if config_path is not None:
        command += ["--config", str(config_path)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [*command, "worker"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def stop_worker_processes(workers: Iterable[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every worker still running (a clean shutdown: checkpoint, commit, leave the
    consumer group), SIGKILL after `timeout`."""
    workers = list(workers)
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def delete_topics(bootstrap_servers: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (what a benchmark created); returns
    the names it could not delete, with the reason."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    failed = []
    if names:
        for name, future in admin.delete_topics(names, operation_timeout=30).items():
            try:
                future.result(timeout=60)
            except Exception as exc:
                failed.append(f"{name}: {exc}")
    return failed
