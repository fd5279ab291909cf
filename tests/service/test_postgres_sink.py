"""The PostgreSQL store and sink against the real PostgreSQL and Kafka of the local stack.

Each test works in a PostgreSQL schema of its own (search_path), dropped afterwards. The outage
test stops and restarts a PostgreSQL of its own (initdb in a temporary directory, a free port),
never the shared one other tests are using.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import psycopg_pool
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from driftline.config import Config
from driftline.local import free_port
from driftline.sinks.postgres import PostgresSink, SinkSettings
from driftline.sinks.prometheus import REGISTRY
from driftline.sinks.rows import rows_from_message
from driftline.sinks.schema import PARTITIONED, partition_name
from driftline.sinks.store import PostgresStore
from driftline.streams.topics import ensure_topics
from tests.conftest import _missing
from tests.unit.test_postgres_rows import drift_event, window_message

pytestmark = pytest.mark.service

T0 = 1_700_000_040.0


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url, schema=f"dl_test_{uuid.uuid4().hex[:10]}", timeout=2.0)
    store.create_schema()
    try:
        yield store
    finally:
        store.drop_schema()
        store.close()


class PrivatePostgres:
    """A throw-away PostgreSQL server (the local stack's binaries): initdb into a temporary
    directory, a free port, trust authentication; `stop()`/`start()` for outages."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            _missing("PostgreSQL binaries", "/usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1]).parent
        # as root the server runs as 'postgres': its directory must be one it owns and reaches
        self.home = Path(tempfile.mkdtemp(prefix="driftline-pg-", dir="/var/tmp"))
        if os.geteuid() == 0:
            os.chown(self.home, pwd.getpwnam("postgres").pw_uid, -1)
        self.data, self.port = self.home / "data", free_port()
        self.url = f"postgresql://driftline@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "driftline", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, timeout=90, cwd="/", capture_output=True)

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.home / "log"), "-w", *args)

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
                   f"-c unix_socket_directories={self.data}")  # fmt: skip
        self._ctl("-t", "60", "-o", options, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def private_store() -> Iterator[tuple[PostgresStore, PrivatePostgres]]:
    server = PrivatePostgres()
    try:
        server.start()
        store = PostgresStore(server.url, schema="driftline_test", timeout=2.0)
        try:
            yield store, server
        finally:
            store.close()
    finally:
        server.remove()


def _scalar(store: PostgresStore, query: str, *params: Any) -> Any:
    with store.pool.connection() as conn:
        row = conn.execute(query, list(params)).fetchone()
    assert row is not None
    return row[0]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_migrations_apply_once_and_are_idempotent(store: PostgresStore) -> None:
    assert store.upgrade() == [
        "0001_initial",
        "0002_alert_history",
        "0003_retraining",
        "0004_output_drift_data_quality",
        "0005_feature_importance",
        "0006_writer_partitions",
        "0007_provisional_performance",
    ]
    assert store.upgrade() == []
    assert _scalar(store, "SELECT count(*) FROM schema_migrations") == 7
    today = datetime.now(UTC).date()
    for table in PARTITIONED:  # partitions created ahead: yesterday .. +7 days
        for day in (today - timedelta(days=1), today, today + timedelta(days=7)):
            assert _scalar(store, "SELECT to_regclass(%s)::text", partition_name(table, day))


def test_writes_are_idempotent(store: PostgresStore) -> None:
    store.upgrade()
    window = rows_from_message("metrics", orjson.dumps(window_message()))
    event = rows_from_message("alerts", orjson.dumps(drift_event()))
    first = store.write({**window, **event})
    assert first == {"window_metrics": 1, "feature_drift": 2, "drift_events": 1}
    later = drift_event(detected_at=T0 + 9_999)  # a replay re-detects the same finding later
    store.write({**window, **rows_from_message("alerts", orjson.dumps(later))})
    store.write({**window, **event})
    assert _scalar(store, "SELECT count(*) FROM window_metrics") == 1
    assert _scalar(store, "SELECT count(*) FROM feature_drift") == 2
    assert _scalar(store, "SELECT count(*) FROM drift_events") == 1
    detected = _scalar(store, "SELECT extract(epoch FROM detected_at) FROM drift_events")
    assert float(detected) == drift_event()["detected_at"]  # the first detection is kept
    # an old day (replayed data) gets its partition on demand
    old = window_message(start=T0 - 400 * 86400)
    store.write(rows_from_message("metrics", orjson.dumps(old)))
    assert _scalar(store, "SELECT count(*) FROM window_metrics") == 2


def test_an_operational_event_is_stored_once_even_re_emitted_after_a_restart(
    store: PostgresStore,
) -> None:
    from driftline.streams.events import operational_event

    store.upgrade()

    def dropped(now: float) -> bytes:  # stage 1 (model "") found the same checkpoint unusable
        saved = {"partition": 0, "max_event_time": T0, "open": [{"window_end": T0 + 60}]}
        detail = {"stage": "stage1", "checkpoint_key": "s1/0", "error": "E", "checkpoint": saved}
        return orjson.dumps(operational_event("checkpoint_dropped", "s1/0", detail, now))

    store.write(rows_from_message("alerts", dropped(T0 + 100)))
    store.write(rows_from_message("alerts", dropped(T0 + 86_400)))  # after a restart, a day on
    assert _scalar(store, "SELECT count(*) FROM drift_events WHERE type = 'operational'") == 1
    assert _scalar(store, "SELECT model FROM drift_events") == ""
    stored = _scalar(store, "SELECT extract(epoch FROM event_time) FROM drift_events")
    assert float(stored) == T0 + 60


def test_a_provisional_performance_row_is_replaced_by_the_final_one(store: PostgresStore) -> None:
    store.upgrade()

    def summary(labelled: int, final: bool) -> bytes:
        return orjson.dumps(
            {
                "type": "performance_window", "model": "m", "model_version": "1",
                "window_start": T0, "window_end": T0 + 60, "labelled": labelled,
                "label_coverage": labelled / 100, "metrics": {"accuracy": 0.9},
                "baseline_accuracy": 0.9, "accuracy_drop": 0.0, "final": final,
            }
        )  # fmt: skip

    for labelled, final in ((0, False), (40, False), (100, True)):
        store.write(rows_from_message("metrics", summary(labelled, final)))
        row = _row(store, "SELECT labelled, final, count(*) OVER () FROM performance_windows")
        assert row == (labelled, final, 1)


def _row(store: PostgresStore, query: str) -> tuple[Any, ...]:
    with store.pool.connection() as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


def test_retention_drops_partitions_older_than_retention(store: PostgresStore) -> None:
    store.upgrade()
    now = datetime.now(UTC)
    for days in (91, 89):
        start = (now - timedelta(days=days)).timestamp()
        store.write(
            {
                **rows_from_message("metrics", orjson.dumps(window_message(start=start))),
                **rows_from_message("alerts", orjson.dumps(drift_event(window_start=start))),
            }
        )
    old = partition_name("window_metrics", (now - timedelta(days=91)).date())
    assert _scalar(store, "SELECT to_regclass(%s)::text", old) == old
    assert _scalar(store, "SELECT count(*) FROM window_metrics") == 2

    dropped = store.retention(90)

    assert (
        old in dropped
        and partition_name("drift_events", (now - timedelta(days=91)).date()) in dropped
    )
    assert _scalar(store, "SELECT to_regclass(%s)::text", old) is None
    assert _scalar(store, "SELECT count(*) FROM window_metrics") == 1
    assert _scalar(store, "SELECT count(*) FROM feature_drift") == 2
    assert _scalar(store, "SELECT count(*) FROM drift_events") == 1
    kept = _scalar(store, "SELECT min(window_start) FROM window_metrics")
    assert now - kept < timedelta(days=89, hours=1)
    assert store.retention(90) == []  # nothing more to drop


def _publish(config: Config, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer(config.kafka.confluent_settings())
    for topic, value in messages:
        producer.produce(topic, key=b"fraud", value=value)
    assert producer.flush(30) == 0


def _assert_all_committed(config: Config, group_id: str) -> None:
    """Every message written is committed: a new consumer of the group has nothing to read."""
    check = Consumer({**config.kafka.confluent_settings(), "group.id": group_id})
    try:
        for topic in (config.topics.metrics, config.topics.alerts):
            parts = [TopicPartition(topic, p) for p in range(config.topics.partitions)]
            for tp in check.committed(parts, timeout=10):
                _, high = check.get_watermark_offsets(tp, timeout=10)
                assert tp.offset == high or (high == 0 and tp.offset < 0), (topic, tp)
    finally:
        check.close()


def _windows(first: int, count: int) -> list[tuple[str, bytes]]:
    return [
        ("", orjson.dumps(window_message(start=T0 + 60 * i))) for i in range(first, first + count)
    ]


def test_sink_survives_a_postgres_outage_without_loss_or_duplicates(
    private_store: tuple[PostgresStore, PrivatePostgres],
    isolated_config: tuple[Config, dict[str, str]],
) -> None:
    store, server = private_store
    config, _ = isolated_config
    ensure_topics(config)
    metrics, alerts = config.topics.metrics, config.topics.alerts
    settings = SinkSettings(
        batch_messages=25, flush_interval=0.3, max_buffer=30, backoff_initial=0.2, backoff_max=1.0
    )
    store.upgrade()  # `driftline db migrate`: the sink only checks the version
    sink = PostgresSink(config, store, settings)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    try:
        before = [(metrics, v) for _, v in _windows(0, 40)]
        duplicates = [(metrics, v) for _, v in _windows(0, 5)]  # at-least-once input
        extra = [(alerts, orjson.dumps(drift_event())), (metrics, b"{not json")]
        _publish(config, before + duplicates + extra)

        def windows() -> int:
            try:
                return int(_scalar(store, "SELECT count(*) FROM window_metrics"))
            except psycopg.errors.UndefinedTable:  # the sink's thread has not migrated yet
                return 0
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
                return -1  # the restarted server still starting: ask again

        _wait(lambda: windows() == 40, 60, "the first 40 windows")  # first group join can be slow

        server.stop()
        _publish(config, [(metrics, v) for _, v in _windows(40, 60)])

        def backlog() -> float:
            return REGISTRY.get_sample_value("driftline_sink_backlog_records") or 0.0

        _wait(lambda: sink.state.paused, 20, "the sink to fill its buffer and pause")
        _wait(lambda: backlog() == 30, 5, "the backlog gauge to show the full buffer")
        assert (REGISTRY.get_sample_value("driftline_sink_paused") or 0) == 1
        time.sleep(1.0)  # paused: nothing more is read although 30 more messages wait in Kafka
        assert len(sink.state.buffer) == 30 and backlog() == 30  # bounded by max_buffer
        assert sink.stats["write_failures"] >= 1
        server.start()

        _wait(lambda: windows() == 100, 40, "all 100 windows after PostgreSQL came back")
        assert (
            _scalar(
                store,
                "SELECT count(DISTINCT (model, model_version, window_start)) FROM window_metrics",
            )
            == 100
        )
        assert _scalar(store, "SELECT count(*) FROM feature_drift") == 200
        assert _scalar(store, "SELECT count(*) FROM drift_events") == 1
        assert sink.stats["rejected"] == 1
        _wait(lambda: not sink.state.paused and not sink.state.buffer, 10, "the buffer to drain")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    _assert_all_committed(config, sink.group_id)


def _dead_letters(config: Config, expected: int) -> list[tuple[dict[str, bytes], bytes]]:
    """(headers, value) of the first ``expected`` messages of the dead-letter topic."""
    reader = Consumer(
        {
            **config.kafka.confluent_settings(),
            "group.id": f"{config.worker.app_id}-dlq-check",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([config.topics.dlq])
    found: list[tuple[dict[str, bytes], bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for m in reader.consume(num_messages=100, timeout=0.5):
                if m.error() is None:
                    found.append((dict(m.headers() or []), m.value() or b""))
        time.sleep(1.0)  # nothing more than expected arrives
        found += [
            (dict(m.headers() or []), m.value() or b"")
            for m in reader.consume(num_messages=100, timeout=0.5)
            if m.error() is None
        ]
    finally:
        reader.close()
    return found


def test_sink_skips_counts_and_dead_letters_malformed_messages(
    store: PostgresStore, isolated_config: tuple[Config, dict[str, str]]
) -> None:
    """Issue 9, item 8: garbage on the metrics and alerts topics (not JSON, wrong shape, a
    value PostgreSQL refuses) never stops the sink; each bad message is counted and sent to
    the DLQ once with its reason, every valid one is written, and all offsets are committed."""
    config, _ = isolated_config
    ensure_topics(config)
    metrics, alerts = config.topics.metrics, config.topics.alerts
    store.upgrade()  # `driftline db migrate`: the sink only checks the version
    sink = PostgresSink(config, store, SinkSettings(batch_messages=10, flush_interval=0.3))
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    refused = window_message(model="nul\x00byte")  # valid JSON and shape; PostgreSQL refuses NUL
    bad = [
        (metrics, b"{not json"),
        (metrics, orjson.dumps({"type": "window", "evaluation": {"model": 3}})),
        (alerts, orjson.dumps(drift_event(event_id="short"))),
        (alerts, b"[]"),
        (metrics, orjson.dumps(refused)),
    ]
    good = [(metrics, v) for _, v in _windows(0, 12)] + [(alerts, orjson.dumps(drift_event()))]
    try:
        _publish(config, good[:6] + bad + good[6:])

        def windows() -> int:
            try:
                return int(_scalar(store, "SELECT count(*) FROM window_metrics"))
            except psycopg.errors.UndefinedTable:  # the sink's thread has not migrated yet
                return 0
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
                return -1  # the restarted server still starting: ask again

        _wait(lambda: windows() == 12 and not sink.state.buffer, 60, "the 12 valid windows")
        assert thread.is_alive()
        assert _scalar(store, "SELECT count(*) FROM drift_events") == 1
        assert sink.stats["rejected"] == 5
        letters = _dead_letters(config, 5)
        kinds = sorted(h["driftline.reason.kind"].decode() for h, _ in letters)
        assert kinds == ["malformed_message"] * 4 + ["refused_by_sink"], letters
        assert sorted(v for _, v in letters) == sorted(v for _, v in bad)  # original bytes
        for headers, _ in letters:
            assert headers["driftline.source.topic"].decode() in (metrics, alerts)
            assert int(headers["driftline.source.offset"]) >= 0 and headers["driftline.reason"]
            assert headers["driftline.consumer"] == b"sink-postgres"
        # still consuming after the garbage
        _publish(config, [(metrics, v) for _, v in _windows(12, 3)])
        _wait(lambda: windows() == 15, 30, "windows published after the garbage")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    _assert_all_committed(config, sink.group_id)
