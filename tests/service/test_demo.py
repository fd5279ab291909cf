"""`driftline demo`, shortened (20-s windows, one window after the promotion), end to end on the
real Kafka and PostgreSQL: the three incidents are detected, Slack (a local receiver) gets the
alerts, the retrained model is A/B tested and promoted, the report is written, and no library
log line reaches the terminal."""

from __future__ import annotations

import io
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from rich.console import Console

from driftline import demo
from driftline.cli import main
from driftline.config import load_config
from driftline.local import delete_topics
from driftline.retrain.service import ensure_control_topic
from driftline.router import RoutingDecision
from driftline.sinks.store import PostgresStore
from driftline.streams.reader import TopicReader
from driftline.streams.topics import ensure_topics
from tests.conftest import ROOT
from tests.service.test_retrain_helpers import config_of

pytestmark = pytest.mark.service

SHORT = demo.Plan(
    window_seconds=20,
    rate=60.0,
    speedup=10.0,
    after_windows=1,
    budget_seconds=100.0,
    training_records=3000,
    min_new_labels=500,
    ab_min_samples_per_arm=200,
)


def test_short_demo_tells_the_whole_story(
    kafka: Any, postgres_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", postgres_url)
    monkeypatch.chdir(ROOT)  # the config's relative paths
    config_path = ROOT / "config" / "driftline.yaml"
    terminal = io.StringIO()
    outcome = demo.play(
        load_config(config_path),
        config_path,
        plan=SHORT,
        report_path=tmp_path / "report.html",
        console=Console(file=terminal, width=120, highlight=False),
        workdir=tmp_path,
    )
    try:
        text = terminal.getvalue()
        story = outcome.story
        assert story is not None, text
        assert outcome.ok, (outcome.reasons, text)
        last = text.rstrip().rsplit("\n\n", 1)[-1].replace("\n", " ")  # one wrapped paragraph
        assert "demo OK" in last and "FAILED" not in text, text[-2000:]

        incidents = story.incidents
        assert incidents["data drift"].via == f"data_drift {demo.SHIFTED_FEATURE}", text
        assert incidents["concept drift"].via.split()[0] in demo.DETECTED_BY["concept drift"]
        quality = incidents["data quality"].via
        if not demo.DATA_QUALITY_FALLBACK:
            assert quality.split()[0].startswith("data_quality"), quality
        assert demo.BROKEN_FEATURE in quality, quality
        for incident in incidents.values():
            assert incident.detected_event_time is not None, incident
            delay = incident.detected_event_time - (story.start + incident.onset)
            assert 0 <= delay <= 2 * SHORT.window_seconds, (incident, delay)

        # Slack got the drift and the concept-drift alerts, and the A/B decision.
        titles = [title for _, title, _ in story.slack]
        assert any(f"data drift on fraud/1: {demo.SHIFTED_FEATURE}" in t for t in titles), titles
        assert any("concept drift on fraud/1" in t for t in titles), titles
        assert incidents["data drift"].alert_wall is not None
        assert incidents["concept drift"].alert_wall is not None
        decisions = [e for e in story.events if e["type"] == "ab_decision"]
        assert decisions and decisions[0]["evidence"]["decision"] == "promote", decisions
        assert story.promoted_version == "2"

        before, during, after = (story.accuracy(p) for p in ("before", "degraded", "after"))
        assert before is not None and before > 0.8, story.tally
        assert during is not None and after is not None and after > during + 0.3, story.tally
        assert abs(after - before) < 0.05, story.tally

        assert outcome.report is not None and outcome.report == (tmp_path / "report.html")
        html = outcome.report.read_text()
        assert len(html) > 100_000, len(html)
        for section in ("Drifted features", "Data quality", "Alert timeline", "Retraining runs"):
            assert f"<h2>{section}</h2>" in html, section
        assert str(outcome.report) in text.replace("\n", "")

        # No library noise: nothing on the process's stdout/stderr, no rdkafka line anywhere.
        # (No earlier test's client can print here: the suite fails a test that leaves one
        # alive, see `pytest_runtest_teardown` in tests/conftest.py.)
        captured = capfd.readouterr()
        noise = re.compile(r"^%\d\|", re.M)
        assert not noise.search(text) and not noise.search(captured.err), captured.err[-2000:]
        assert captured.err == "", captured.err[-2000:]
    finally:
        delete_topics(kafka.bootstrap_servers, f"{outcome.run}.")
        store = PostgresStore(postgres_url, schema=outcome.schema)
        try:
            store.drop_schema()
        finally:
            store.close()


def test_simulate_routes_through_the_router_during_an_ab_test(
    isolated_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`driftline simulate` while an A/B test is running: each prediction carries the version
    the router chose (about the challenger's share), and it says so."""
    _, env = isolated_config
    env = {**env, "DRIFTLINE_RETRAINING_CONTROL_TOPIC": f"test-{uuid.uuid4().hex[:8]}.control"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = config_of(env)
    ensure_topics(config)
    ensure_control_topic(config)
    producer = Producer(config.kafka.confluent_settings())
    decision = RoutingDecision("fraud", "1", "2", 0.3, test_id="t", updated_at=time.time())
    producer.produce(
        config.retraining.control_topic, key="fraud", value=orjson.dumps(decision.to_dict())
    )
    producer.flush(30)

    assert main(["simulate", "--records", "2000", "--rate", "1000"]) == 0
    assert "A/B test of fraud running: 30% of predictions to fraud@2" in capsys.readouterr().err
    reader = TopicReader(config, config.topics.predictions, start="beginning")
    versions: Counter[str] = Counter()
    for message in reader.messages(timeout=30, idle=3):
        versions[orjson.loads(message.value() or b"{}")["model_version"]] += 1
        if sum(versions.values()) >= 2000:
            break
    reader.close()
    assert sum(versions.values()) == 2000, versions
    assert 0.25 < versions["2"] / 2000 < 0.35, versions
