"""`driftline alerts tail` on the real broker: a malformed message on the alerts topic is
skipped with one line on stderr, and the events around it are still printed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.cli import main

pytestmark = pytest.mark.service


def test_alerts_tail_skips_a_malformed_message_with_one_line(
    kafka: Any, isolated_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    config, env = isolated_config
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(config.topics.alerts, 1, 1)]).values():
        future.result()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    event = {
        "schema_version": 1, "event_id": "e" * 32, "type": "data_drift", "severity": "warning",
        "model": "fraud", "model_version": "3", "feature": "amount", "test": "psi",
        "statistic": 0.42, "p_value": None, "threshold": None, "evidence": {},
        "window_start": 1_767_225_600.0, "window_end": 1_767_225_900.0,
        "detected_at": 1_767_225_900.25,
    }  # fmt: skip
    garbage = [b"\xff\xfenot json", b"[1, 2, 3]", b"", b'{"detected_at": "yesterday"}']
    producer = Producer(config.kafka.confluent_settings())
    for value in [orjson.dumps(event), *garbage, orjson.dumps({**event, "event_id": "f" * 32})]:
        producer.produce(config.topics.alerts, key=b"fraud", value=value)
    assert producer.flush(30) == 0

    assert main(["alerts", "tail", "--from-beginning", "--timeout", "8"]) == 0
    captured = capsys.readouterr()
    out, err = captured.out.splitlines(), captured.err.splitlines()
    # the object with odd values is not malformed: printed with what it has
    assert [line[-33:-1] for line in out[::2]] == ["e" * 32, "f" * 32] and len(out) == 3
    skipped = [line for line in err if line.startswith("skipped malformed message")]
    assert len(skipped) == 3, err
    assert [line.split()[3] for line in skipped] == [
        f"{config.topics.alerts}[0]@{offset}" for offset in (1, 2, 3)
    ]
    assert "Traceback" not in captured.err
