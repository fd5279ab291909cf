"""`driftline demo`, shortened (20-s windows, one window after the promotion), end to end on the
real Kafka and PostgreSQL: the three incidents are detected, Slack (a local receiver) gets the
alerts, the retrained model is A/B tested and promoted, the report is written, and no library
log line reaches the terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from driftline import demo
from driftline.config import load_config
from driftline.local import delete_topics
from driftline.sinks.store import PostgresStore
from tests.conftest import ROOT

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
        assert len(html) > 100_000 and "Retraining" in html, len(html)
        assert str(outcome.report) in text.replace("\n", "")

        # No library noise: nothing on the process's stdout/stderr, no rdkafka line anywhere.
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
