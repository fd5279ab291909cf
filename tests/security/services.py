"""Private Kafka and PostgreSQL instances for the security and fault tests, started with the
project's own scripts (deploy/local/kafka.sh, postgres.sh) on free ports, with a cache directory
of their own: never the shared stack, which other tests use at the same time.

The cache directory is a 0700 temporary directory, like a clone under root's home or
`mktemp -d`: a PostgreSQL started from it proves the scripts keep what the `postgres` user
touches where it can reach it (issue 15, "setup from anywhere").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from driftline.local import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "local"
# What env.sh exports in the shell that runs the tests: the private instance must not inherit it.
_STACK_VARIABLES = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_HOME", "PG_PORT", "DRIFTLINE_RUN")


def _script_env(cache: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STACK_VARIABLES}
    env["DRIFTLINE_CACHE"] = str(cache)
    env.update(values)
    return env


def _run(script: str, action: str, env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPTS / script), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{script} {action} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


@dataclass
class PrivateKafka:
    """A one-node Kafka (KRaft) with a PLAINTEXT listener (`bootstrap`, for tests and the
    broker itself), SASL_SSL with SCRAM-SHA-512 (`sasl_bootstrap`) and mutual TLS
    (`mtls_bootstrap`), all on 127.0.0.1."""

    cache: Path
    tls_dir: Path
    scram_users: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    sasl_port: int = field(default_factory=free_port)
    mtls_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def log(self) -> Path:
        return self.cache / "logs" / "kafka.log"

    def _env(self) -> dict[str, str]:
        properties = self.cache / "tls.properties"
        properties.parent.mkdir(parents=True, exist_ok=True)
        p, c, s, m = self.port, self.controller_port, self.sasl_port, self.mtls_port
        properties.write_text(
            f"listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c},"
            f"SASL_SSL://127.0.0.1:{s},MTLS://127.0.0.1:{m}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s},"
            f"MTLS://127.0.0.1:{m}\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_SSL:SASL_SSL,MTLS:SSL\n"
            "sasl.enabled.mechanisms=SCRAM-SHA-512\n"
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
            "ssl.keystore.type=PEM\n"
            f"ssl.keystore.location={self.tls_dir / 'broker.pem'}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.tls_dir / 'ca.crt'}\n"
            "listener.name.mtls.ssl.client.auth=required\n"
        )
        scram = " ".join(
            f"--add-scram 'SCRAM-SHA-512=[name={name},password={password}]'"
            for name, password in self.scram_users.items()
        )
        lib = os.environ.get("KAFKA_LIB") or str(ROOT / ".cache" / "kafka" / "lib")
        return _script_env(
            self.cache,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            KAFKA_LIB=lib,
            KAFKA_EXTRA_PROPERTIES=str(properties),
            KAFKA_FORMAT_ARGS=scram,
        )

    def start(self) -> float:
        """Start (formatting the storage the first time); seconds until it answered."""
        started = time.monotonic()
        _run("kafka.sh", "start", self._env())
        return time.monotonic() - started

    def stop(self) -> None:
        _run("kafka.sh", "stop", self._env())


@dataclass
class PrivatePostgres:
    """PostgreSQL 15 from deploy/local/postgres.sh, with TLS when given a certificate."""

    cache: Path
    password: str
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    port: int = field(default_factory=free_port)
    user: str = "driftline"
    database: str = "driftline"

    def url(self, user: str | None = None, password: str | None = None) -> str:
        user, password = user or self.user, password or self.password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{self.database}"

    def _env(self) -> dict[str, str]:
        values = {
            "PG_PORT": str(self.port),
            "PG_USER": self.user,
            "PG_PASSWORD": self.password,
            "PG_DATABASE": self.database,
        }
        if self.ssl_cert and self.ssl_key:
            values |= {"PG_SSL_CERT": str(self.ssl_cert), "PG_SSL_KEY": str(self.ssl_key)}
        return _script_env(self.cache, **values)

    def paths(self) -> dict[str, Path]:
        """What postgres.sh gives the server: home, data and log."""
        lines = _run("postgres.sh", "paths", self._env()).splitlines()
        return {name: Path(value) for name, _, value in (line.partition(" ") for line in lines)}

    def start(self) -> float:
        started = time.monotonic()
        _run("postgres.sh", "start", self._env())
        return time.monotonic() - started

    def stop(self, purge: bool = True) -> None:
        home = self.paths()["home"]
        _run("postgres.sh", "stop", self._env())
        if purge and home.name.startswith("driftline-postgres"):
            shutil.rmtree(home, ignore_errors=True)
