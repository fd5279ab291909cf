"""The files that users run without us: docker-compose, CLI help, alert rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from driftline.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DRIFTLINE = [sys.executable, "-m", "driftline"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def test_compose_mounts_only_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {
        "kafka",
        "postgres",
        "prometheus",
        "alertmanager",
        "grafana",
        "driftline-worker",
    } <= set(services)
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                mounts += 1
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()
    assert mounts >= 6


def test_compose_uses_the_native_stack_ports() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    for address in (
        "127.0.0.1:9092",
        "127.0.0.1:9093",
        "port=5432",
        "127.0.0.1:9090",
        "127.0.0.1:9094",
    ):
        assert address in text
    env = (ROOT / "deploy" / "local" / "env.sh").read_text()
    for default in ("9092", "9093", "5432", "9090", "9094", "9108"):
        assert f":-{default}}}" in env


def test_cli_help_lists_commands_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "hunter2")
    text = build_parser().format_help()
    for command in ("worker", "topics", "config", "demo", "dashboards"):
        assert command in text
    assert "hunter2" not in text
    result = subprocess.run(
        [*DRIFTLINE, "--config", str(ROOT / "config/driftline.yaml"), "config", "show"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DRIFTLINE_KAFKA_SASL_PASSWORD": "hunter2"},
    )
    assert (
        "hunter2" not in result.stdout + result.stderr and "sasl_password: '***'" in result.stdout
    )


def test_bad_config_stops_the_cli_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("topics:\n  partitons: 4\n")
    result = subprocess.run(
        [*DRIFTLINE, "--config", str(bad), "config", "show"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "bad.yaml: topics.partitons: unknown key, did you mean partitions?" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is missing (make up installs prometheus)", pytrace=False)
        pytest.skip("promtool is missing: run `make up`")
    return path


def test_alert_rules_pass_promtool_unit_tests() -> None:
    promtool = _promtool()
    check = subprocess.run(
        [promtool, "check", "rules", "config/alert_rules.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "tests/promtool/alert_rules_test.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_prometheus_and_alertmanager_configs_are_valid() -> None:
    promtool = _promtool()
    check = subprocess.run(
        [promtool, "check", "config", "config/prometheus.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    amtool = shutil.which("amtool")
    if amtool:
        check = subprocess.run(
            [amtool, "check-config", "config/alertmanager.yml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
