"""shared/outbox.py and tests/event_consumer.py on the real PostgreSQL and the Kafka stand-in,
in aurora's database, which declares the outbox's schema (shared/migrations/outbox/)."""

from __future__ import annotations

import logging
from contextlib import closing

import pytest

from domains.aurora.db import DATABASE
from shared.outbox import Event, add_events, pending_count, publish_outbox
from tests.event_consumer import DedupConsumer

TOPIC = "aurora.test_events"


def events(n: int, start: int = 0) -> list[Event]:
    return [Event(TOPIC, "aurora.test.happened", f"user-{i % 3}", {"n": i}, dedup_key=f"fact-{i}")
            for i in range(start, start + n)]


@pytest.fixture
def db(domain_db):
    domain_db("aurora")
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE facts (n integer PRIMARY KEY)")
        conn.commit()
        yield conn


def outbox(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT event_id::text, topic, payload, published_at IS NOT NULL FROM event_outbox ORDER BY id")
        rows = cur.fetchall()
    conn.commit()
    return rows


def test_events_are_written_with_their_data_or_not_at_all(db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO facts VALUES (1)")
        assert add_events(cur, events(2), source="tests") == 2
    db.rollback()
    assert outbox(db) == []
    with db.cursor() as cur:
        cur.execute("INSERT INTO facts VALUES (1)")
        add_events(cur, events(2), source="tests")
    db.commit()
    rows = outbox(db)
    assert len(rows) == 2 and not any(r[3] for r in rows)
    payload = rows[0][2]
    assert set(payload) == {"event_id", "event_type", "schema_version", "occurred_at", "source", "key", "data"}
    assert payload["event_id"] == rows[0][0] and payload["data"] == {"n": 0} and payload["schema_version"] == 1
    with db.cursor() as cur:  # the same facts again (a rerun): nothing new
        assert add_events(cur, events(2), source="tests") == 0
    db.commit()
    assert len(outbox(db)) == 2


def test_published_at_least_once_and_read_exactly_once(db, kafka_broker):
    with db.cursor() as cur:
        add_events(cur, events(20), source="tests")
    db.commit()
    assert publish_outbox(db, "aurora_kafka").published == 20
    assert pending_count(db) == 0
    # a publisher that died after Kafka acknowledged 5 events but before marking them
    with db.cursor() as cur:
        cur.execute("UPDATE event_outbox SET published_at = NULL WHERE id IN (SELECT id FROM event_outbox ORDER BY id LIMIT 5)")
    db.commit()
    assert publish_outbox(db, "aurora_kafka").published == 5
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=20, timeout=40)
        got += consumer.read(timeout=6, idle=3)  # anything beyond the 20 would be a duplicate or an extra
    assert sorted(e["data"]["n"] for e in got) == list(range(20))
    assert consumer.duplicates == 5
    for key in ("user-0", "user-1", "user-2"):  # per key, in outbox order
        ns = [e["data"]["n"] for e in got if e["key"] == key]
        assert ns == sorted(ns)


def test_broker_down_events_wait_then_go_out(db, kafka_broker, caplog):
    kafka_broker.stop()
    with db.cursor() as cur:
        add_events(cur, events(7), source="tests")
    db.commit()
    with caplog.at_level(logging.WARNING, logger="shared.outbox"):
        result = publish_outbox(db, "aurora_kafka", probe_timeout=2)
    assert (result.published, result.waiting, result.broker_reachable) == (0, 7, False)
    assert "7 event(s) wait in the outbox" in caplog.text
    assert pending_count(db) == 7
    kafka_broker.start()
    assert publish_outbox(db, "aurora_kafka").published == 7
    assert pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=7, timeout=40)
    assert sorted(e["data"]["n"] for e in got) == list(range(7)) and consumer.duplicates == 0


def test_a_broker_lost_mid_publish_leaves_exactly_the_unacknowledged_rows_for_the_next_publish(db, kafka_broker):
    """At-least-once across batches: the broker goes down after the first batch was acknowledged
    and marked. Rows are marked only for acknowledged messages; the rest (sent into the outage,
    or never acknowledged) stay unpublished with their attempt and error recorded, and the next
    publish, to the broker back up (a new, empty cluster), sends exactly those, each once."""
    import threading
    import time

    n, batch = 12_000, 1_000
    with db.cursor() as cur:
        add_events(cur, events(n), source="tests")
    db.commit()
    stopped = threading.Event()

    def stop_after_the_first_batch() -> None:
        with closing(DATABASE.connect()) as watcher:
            deadline = time.monotonic() + 60
            while pending_count(watcher) == n and time.monotonic() < deadline:
                watcher.rollback()
                time.sleep(0.005)
        kafka_broker.stop()
        stopped.set()

    watcher = threading.Thread(target=stop_after_the_first_batch)
    watcher.start()
    result = publish_outbox(db, "aurora_kafka", batch_size=batch, flush_timeout=5)
    watcher.join()
    assert stopped.is_set()
    with db.cursor() as cur:
        cur.execute("SELECT event_id::text, published_at IS NOT NULL, attempts, last_error FROM event_outbox ORDER BY id")
        rows = cur.fetchall()
    db.commit()
    marked = [r for r in rows if r[1]]
    waiting = [r for r in rows if not r[1]]
    assert result.published == len(marked) and result.waiting == len(waiting)
    assert batch <= len(marked) < n and result.waiting > 0
    assert all(r[2] == 1 and r[3] is None for r in marked)
    tried = [r for r in waiting if r[2] == 1]  # the batch sent into the outage: attempt and error recorded
    assert tried and all(r[3] for r in tried)
    kafka_broker.start()
    assert publish_outbox(db, "aurora_kafka").published == len(waiting)
    assert pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=len(waiting), timeout=60)
        got += consumer.read(timeout=6, idle=3)
    assert sorted(e["event_id"] for e in got) == sorted(r[0] for r in waiting)
    assert consumer.duplicates == 0
