"""shared/outbox.py and tests/event_consumer.py on the real PostgreSQL and the Kafka stand-in,
in aurora's database, which declares the outbox's schema (shared/migrations/outbox/)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from contextlib import closing

import pytest

from domains.aurora.db import DATABASE
from shared.outbox import Event, add_events, event_id, pending_count, publish_outbox
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
        cur.execute("SELECT o.event_id::text, o.topic, o.payload, w.id IS NULL FROM event_outbox o"
                    " LEFT JOIN event_outbox_waiting w ON w.id = o.id ORDER BY o.id")
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


class DiesAtCommit:
    """A connection whose owner dies (``os._exit``) when it commits: a publisher that crashed
    after Kafka acknowledged its batch and before the transaction that marks it committed."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def cursor(self, *args, **kwargs):
        return self._conn.cursor(*args, **kwargs)

    def rollback(self) -> None:
        self._conn.rollback()

    def commit(self) -> None:
        os._exit(CRASHED)


CRASHED = 3


def publisher_that_crashes_before_marking() -> None:
    with closing(DATABASE.connect()) as conn:
        publish_outbox(DiesAtCommit(conn), "aurora_kafka")
    os._exit(0)  # not reached when a batch was sent


def test_published_at_least_once_and_read_exactly_once(db, kafka_broker):
    with db.cursor() as cur:
        add_events(cur, events(20), source="tests")
    db.commit()
    assert publish_outbox(db, "aurora_kafka").published == 20
    assert pending_count(db) == 0
    # 5 more, and a publisher (its own process) that dies after Kafka acknowledged them,
    # before its transaction moved the mark: they are still waiting and go out again
    with db.cursor() as cur:
        add_events(cur, events(5, start=20), source="tests")
    db.commit()
    child = multiprocessing.get_context("fork").Process(target=publisher_that_crashes_before_marking)
    child.start()
    child.join(60)
    assert child.exitcode == CRASHED
    assert pending_count(db) == 5
    db.commit()
    assert publish_outbox(db, "aurora_kafka").published == 5
    assert pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=25, timeout=40)
        got += consumer.read(timeout=6, idle=3)  # anything beyond the 25 would be a duplicate or an extra
    assert sorted(e["data"]["n"] for e in got) == list(range(25))
    assert consumer.duplicates == 5  # the crashed publisher's batch, sent twice
    for key in ("user-0", "user-1", "user-2"):  # per key, in outbox order
        ns = [e["data"]["n"] for e in got if e["key"] == key]
        assert ns == sorted(ns)


def test_rows_go_out_in_transaction_id_order_across_a_power_of_ten(db, kafka_broker):
    """The outbox order is (txid, id) as numbers: rows of transaction 99 before those of 100, in
    batches of 2. Ordered as text ('100' < '99'), the first batch would end in transaction 99
    after 100's rows... or, as here, the mark would pass transaction 99's rows unsent."""
    with db.cursor() as cur:
        add_events(cur, events(6), source="tests")
        # three transactions' ids set by hand: 9 (ids 1-2), 99 (3-4), 100 (5-6)
        cur.execute("UPDATE event_outbox SET txid = (CASE WHEN n <= 2 THEN '9' WHEN n <= 4 THEN '99' ELSE '100' END)::xid8"
                    " FROM (SELECT id AS oid, row_number() OVER (ORDER BY id) AS n FROM event_outbox) r"
                    " WHERE id = r.oid")
    db.commit()
    assert publish_outbox(db, "aurora_kafka", batch_size=2).published == 6
    assert pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=6, timeout=40)
        got += consumer.read(timeout=6, idle=3)  # anything beyond the 6 would be a duplicate or an extra
    assert sorted(e["data"]["n"] for e in got) == list(range(6))
    assert consumer.duplicates == 0
    # sent in the order of the transactions' ids as numbers (9, 99, 100), per key
    for key in ("user-0", "user-1", "user-2"):
        ns = [e["data"]["n"] for e in got if e["key"] == key]
        assert ns == sorted(ns)


def test_a_row_committed_after_a_later_one_is_never_skipped_and_a_long_transaction_stops_nothing(db, kafka_broker):
    """Ids are handed out at INSERT, transactions commit in any order. Writer A takes its
    transaction id first and holds its events open; writer B commits events with ids below
    (B inserted first) and above (B inserted after) A's. No publish may move the mark past a row
    A can still commit below it: B's rows wait for A up to ``settle_timeout``, then go out marked
    one by one while the mark stays below A; A's rows go out once A commits, each event once.
    A mark by id alone (``id > last published id``) skips A's rows for ever; a publish that only
    waits for A is stopped by any long transaction on the server (another team's database too)."""
    with closing(DATABASE.connect()) as a, closing(DATABASE.connect()) as b:
        with a.cursor() as cur:
            cur.execute("INSERT INTO facts VALUES (1)")  # A's transaction id: the older one
        with b.cursor() as cur:
            add_events(cur, events(3, start=0), source="tests")  # ids below A's events
        b.commit()
        with a.cursor() as cur:
            add_events(cur, events(3, start=3), source="tests")
        with b.cursor() as cur:
            add_events(cur, events(3, start=6), source="tests")  # ids above A's events
        b.commit()
        result = publish_outbox(db, "aurora_kafka", settle_timeout=0.5)
        assert (result.published, result.waiting) == (6, 0)  # B's, marked one by one; A's not visible yet
        with db.cursor() as cur:
            cur.execute("SELECT txid < (SELECT min(txid) FROM event_outbox WHERE published_at IS NOT NULL)"
                        " FROM event_outbox_mark")
            assert cur.fetchone()[0] is True  # the mark stayed below A
        db.commit()
        a.commit()
    assert publish_outbox(db, "aurora_kafka").published == 3  # A's, now below the horizon
    assert pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=9, timeout=40)
        got += consumer.read(timeout=6, idle=3)
    assert sorted(e["data"]["n"] for e in got) == list(range(9)) and consumer.duplicates == 0


def test_a_publish_waits_for_a_running_writer_then_sends_its_rows_too(db, kafka_broker):
    writer = DATABASE.connect()
    with writer.cursor() as cur:
        add_events(cur, events(4, start=0), source="tests")
    with db.cursor() as cur:
        add_events(cur, events(4, start=4), source="tests")
    db.commit()
    timer = threading.Timer(1.0, writer.commit)
    timer.start()
    try:
        result = publish_outbox(db, "aurora_kafka", settle_timeout=30)
    finally:
        timer.join()
        writer.close()
    assert (result.published, result.waiting) == (8, 0)


def test_concurrent_publishers_send_each_event_once_while_writers_add_more(db, kafka_broker):
    """Four publishers at once, small batches, while a writer commits more events: together
    they send every event exactly once (the publish lock serialises batches, the mark moves
    only forward), and their counts add up."""
    with db.cursor() as cur:
        add_events(cur, events(3000), source="tests")
    db.commit()
    counts: list[int] = []
    done = threading.Event()

    def write_more() -> None:
        with closing(DATABASE.connect()) as conn:
            for start in range(3000, 4000, 50):
                with conn.cursor() as cur:
                    add_events(cur, events(50, start=start), source="tests")
                conn.commit()
        done.set()

    def publish() -> None:
        with closing(DATABASE.connect()) as conn:
            while True:
                finished = done.is_set()  # read before the publish: nothing was added after it
                counts.append(publish_outbox(conn, "aurora_kafka", batch_size=200).published)
                if finished:
                    return

    threads = [threading.Thread(target=write_more)] + [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(counts) == 4000 and pending_count(db) == 0
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        got = consumer.read(expected=4000, timeout=60)
        got += consumer.read(timeout=6, idle=3)
    assert sorted(e["data"]["n"] for e in got) == list(range(4000)) and consumer.duplicates == 0


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
    import time

    n, batch = 12_000, 1_000
    with db.cursor() as cur:
        add_events(cur, events(n), source="tests")
    db.commit()
    # the publisher's first mark (batch 1 acknowledged) waits on a lock the gate holds; once it
    # waits, the broker stops and the gate lets it commit: batch 2 goes into the outage, however
    # fast the publisher is
    gate_lock = 4242
    gate = DATABASE.connect()
    with gate.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (gate_lock,))
        cur.execute("CREATE FUNCTION wait_for_the_gate() RETURNS trigger LANGUAGE plpgsql AS"
                    f" $$ BEGIN PERFORM pg_advisory_xact_lock_shared({gate_lock}); RETURN NEW; END $$")
        cur.execute("CREATE TRIGGER wait_for_the_gate AFTER UPDATE ON event_outbox_mark"
                    " FOR EACH ROW EXECUTE FUNCTION wait_for_the_gate()")
    gate.commit()
    stopped = threading.Event()

    def stop_after_the_first_batch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with gate.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
                            " AND NOT granted", (gate_lock,))
                waiting = cur.fetchone()[0]
            gate.commit()
            if waiting:
                kafka_broker.stop()
                stopped.set()
                break
            time.sleep(0.01)
        with gate.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (gate_lock,))
        gate.commit()

    watcher = threading.Thread(target=stop_after_the_first_batch)
    watcher.start()
    try:
        result = publish_outbox(db, "aurora_kafka", batch_size=batch, flush_timeout=5)
    finally:
        watcher.join()
        gate.close()
    assert stopped.is_set()
    with db.cursor() as cur:
        cur.execute("SELECT o.event_id::text, w.id IS NULL, o.attempts, o.last_error FROM event_outbox o"
                    " LEFT JOIN event_outbox_waiting w ON w.id = o.id ORDER BY o.id")
        rows = cur.fetchall()
    db.commit()
    marked = [r for r in rows if r[1]]
    waiting = [r for r in rows if not r[1]]
    assert result.published == len(marked) and result.waiting == len(waiting)
    assert batch <= len(marked) < n and result.waiting > 0
    assert all(r[2] == 0 and r[3] is None for r in marked)  # attempts: the sends Kafka did not acknowledge
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


def test_events_are_streamed_in_and_keep_every_key(db):
    """``add_events`` takes a generator (consumed as it goes) and stores each key as given, COPY's
    NULL marker ``\\N`` included; a rerun of the same stream adds nothing."""
    def stream():
        for i in range(2500):
            yield Event(TOPIC, "aurora.test.happened", "\\N" if i % 1000 == 0 else f"user-{i}", {"n": i},
                        dedup_key=f"stream-{i}")

    with db.cursor() as cur:
        assert add_events(cur, stream(), source="tests") == 2500
        assert add_events(cur, stream(), source="tests") == 0
    db.commit()
    with db.cursor() as cur:
        cur.execute("SELECT event_key, (payload->'data'->>'n')::int FROM event_outbox ORDER BY id")
        rows = cur.fetchall()
    db.commit()
    assert [n for _, n in rows] == list(range(2500))  # the stream's order
    assert [k for k, n in rows if n % 1000 == 0] == ["\\N"] * 3 and rows[1] == ("user-1", 1)


def test_another_databases_long_transaction_does_not_hold_the_outbox_back(db, domain_db, kafka_broker):
    """The horizon is the outbox's own database's: a transaction holding a transaction id open in
    another database of the same server (another team's) neither holds the events back nor sends
    the publish into per-row marking; the mark moves past every event, at once."""
    import time

    import psycopg

    other = domain_db("referral")  # another database and role on the same server
    long_tx = psycopg.connect(host=other["host"], port=other["port"], dbname=other["schema"], user=other["login"],
                              password=other["password"])
    try:
        with long_tx.cursor() as cur:
            cur.execute("SELECT pg_current_xact_id()")  # a transaction id, held open: older than the writes below
        with db.cursor() as cur:
            add_events(cur, events(50), source="tests")
        db.commit()
        started = time.monotonic()
        result = publish_outbox(db, "aurora_kafka", settle_timeout=20)
        took = time.monotonic() - started
        with db.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM event_outbox WHERE published_at IS NOT NULL),"
                        " m.txid = l.txid AND m.id = l.id FROM event_outbox_mark m,"
                        " (SELECT txid, id FROM event_outbox ORDER BY txid DESC, id DESC LIMIT 1) l")
            marked_one_by_one, mark_at_the_end = cur.fetchone()
        db.commit()
    finally:
        long_tx.close()
    assert (result.published, result.waiting) == (50, 0)
    assert marked_one_by_one == 0 and mark_at_the_end  # the mark itself moved past them
    assert took < 20  # not held back for settle_timeout


def test_a_batch_knows_its_failed_rows_from_the_delivery_reports_of_its_one_callback(kafka_broker):
    """One callback per batch (``_InFlight.record``): a success only counts, a failure names its
    row by the message's value (the row's payload, holding its event id). Real reports from the stand-in: a batch flushed is
    acknowledged whole; a batch purged before it went out (librdkafka's own failure reports) has
    every row failed, by its id; a batch with a report still missing counts no row as acknowledged."""
    from airflow.sdk import BaseHook
    from confluent_kafka import Producer

    from shared.outbox import _InFlight, _produce

    def rows(start: int, n: int) -> list[tuple]:  # as the publisher reads them: id, txid, event id, topic, key, payload
        return [(i, "1", event_id(TOPIC, f"fact-{i}"), TOPIC, f"user-{i % 3}",
                 f'{{"event_id": "{event_id(TOPIC, f"fact-{i}")}", "data": {{"n": {i}}}}}')
                for i in range(start, start + n)]

    # the connection's producer, lingering 10 s: a batch waits for flush (which sends at once) or purge
    producer = Producer({**BaseHook.get_connection("aurora_kafka").extra_dejson, "linger.ms": 10_000,
                         "message.timeout.ms": 60_000})
    try:
        sent = _produce(producer, rows(0, 50))
        assert producer.flush(30) == 0
        assert sent.left == 0 and not sent.errors and sent.acked() == bytearray([1]) * 50
        purged = _produce(producer, rows(50, 7))
        producer.purge()  # not sent yet (linger): each message gets a failure report
        producer.flush(5)
        assert purged.left == 0
        assert sorted(purged.errors) == sorted(r[5].encode() for r in rows(50, 7))
        assert all("PURGE" in e.upper() for e in purged.errors.values())
        assert purged.acked() == bytearray(7)
    finally:
        producer.purge()
        producer.close()
    missing = _InFlight(rows(60, 3))  # three rows produced, two successes reported, one report never came
    missing.record(None, None)
    missing.record(None, None)
    assert missing.left == 1 and missing.acked() == bytearray(3)
