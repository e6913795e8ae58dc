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
