"""A real `mlflow server` for the MLflow registry tests: PostgreSQL backend store in a schema of
its own, a temporary artifact root, a free port. The `mlflow_server` fixture of
tests/conftest.py starts one in the background when the session begins (it takes ~30-50 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from driftline.local import free_port


@dataclass
class MlflowServer:
    postgres_url: str
    directory: Path
    port: int = field(default_factory=free_port)
    schema: str = field(default_factory=lambda: f"mlflow_{uuid.uuid4().hex[:10]}")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "mlflow.log"

    def start(self, timeout: float = 180) -> None:
        """Started and answering /health; RuntimeError with the log's tail otherwise."""
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        store_uri = (
            self.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
            + f"?options=-csearch_path%3D{self.schema}"
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "mlflow", "server",
                    "--backend-store-uri", store_uri,
                    "--default-artifact-root", str(self.directory / "mlartifacts"),
                    "--no-serve-artifacts",
                    "--host", "127.0.0.1",
                    "--port", str(self.port),
                    "--workers", "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start in {timeout:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )
