"""Steady prediction traffic for the long fault tests: batch messages (a JSON array of records
per Kafka message, one event time each) produced at a set rate of predictions per second.

Messages are serialised once from a pool of simulated records with a placeholder timestamp,
and the placeholder is replaced per message: producing costs a bytes.replace and a produce
call, so the generator stays far cheaper than the worker it loads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Producer

from driftline.config import Config
from driftline.simulate import simulate

_PLACEHOLDER = 9_999_999_999.125
_TOKEN = orjson.dumps(_PLACEHOLDER)


@dataclass
class Load:
    """``rate`` predictions/s in messages of ``per_message`` records; event time advances
    ``event_speed`` seconds per second (windows close that much faster than in real time)."""

    config: Config
    rate: float
    per_message: int = 100
    start_time: float = 1_767_225_600.0
    event_speed: float = 10.0
    pool_messages: int = 64
    produced: int = 0  # predictions
    messages: int = 0
    event_time: float = 0.0  # of the last message
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        records, _ = simulate(self.pool_messages * self.per_message, seed=21)
        self._pool = []
        for i in range(self.pool_messages):
            chunk = records[i * self.per_message : (i + 1) * self.per_message]
            self._pool.append(orjson.dumps([r | {"timestamp": _PLACEHOLDER} for r in chunk]))
        self._producer = Producer(
            {**self.config.kafka.confluent_settings(), "linger.ms": 20,
             "queue.buffering.max.kbytes": 512 * 1024, "compression.type": "lz4"}
        )  # fmt: skip
        self.event_time = self.start_time

    def burst(self, predictions: int) -> None:
        """Produce ``predictions`` at once (a backlog), as fast as the producer goes."""
        for _ in range(predictions // self.per_message):
            self._send()
        self._producer.flush(60)

    def _send(self) -> None:
        self.event_time += self.per_message / self.rate * self.event_speed
        value = self._pool[self.messages % self.pool_messages].replace(
            _TOKEN, b"%.3f" % self.event_time
        )
        while True:
            try:
                self._producer.produce(self.config.topics.predictions, value=value)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        self.messages += 1
        self.produced += self.per_message

    def start(self, seconds: float) -> None:
        """Produce at ``rate`` for ``seconds`` in a thread (10 slices a second)."""

        def run() -> None:
            started = time.monotonic()
            while not self._stop.is_set():
                elapsed = time.monotonic() - started
                if elapsed >= seconds:
                    break
                due = int(elapsed * self.rate / self.per_message) + 1
                while self.messages < due + self._offset:
                    self._send()
                self._stop.wait(0.1)
            self._producer.flush(60)

        self._offset = self.messages
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(60)
