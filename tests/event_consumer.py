"""Reading the events of :mod:`shared.outbox` exactly once: a consumer that de-duplicates by id.

Publishing is at-least-once (an event acknowledged by Kafka but not yet marked published is
sent again by the next publish), so a consumer skips an ``event_id`` it has already
processed. This one keeps the ids it has seen in memory: enough for tests, documentation
and monitoring scripts; a service that must survive restarts keeps them with its own state
(e.g. a unique column it writes in the same transaction as the event's effect).

    with DedupConsumer("aurora_kafka_monitor", ["aurora.predictions"]) as consumer:
        events = consumer.read(expected=120, timeout=30)   # unique events, in arrival order
        consumer.duplicates                                 # how many repeats were skipped

The connection is the Kafka provider's (its extra is the consumer's librdkafka configuration,
with ``group.id`` and usually ``auto.offset.reset: earliest``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any


class DedupConsumer:
    def __init__(self, kafka_conn_id: str, topics: Sequence[str]) -> None:
        self.kafka_conn_id = kafka_conn_id
        self.topics = list(topics)
        self.seen: set[str] = set()
        self.duplicates = 0
        self._consumer: Any = None

    def __enter__(self) -> DedupConsumer:
        from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook

        self._consumer = KafkaConsumerHook(self.topics, kafka_config_id=self.kafka_conn_id).get_consumer()
        return self

    def __exit__(self, *exc) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def read(self, expected: int | None = None, timeout: float = 30.0, idle: float = 3.0) -> list[dict]:
        """Unique events until ``expected`` new ones arrived, or nothing came for ``idle``
        seconds (once at least one message arrived), or ``timeout`` passed."""
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            if last is not None and time.monotonic() - last > idle and expected is None:
                break
            msg = self._consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                continue  # transient (e.g. a topic not created yet); librdkafka retries
            last = time.monotonic()
            event = json.loads(msg.value())
            if event["event_id"] in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(event["event_id"])
            out.append(event)
        return out
