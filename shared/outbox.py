"""Transactional outbox: events written with the data they describe, published to Kafka later.

Writing an event straight to Kafka from a task loses it when the broker is down, and
publishes an event for data whose transaction then rolls back. Instead:

1. :func:`add_events` inserts the events into the domain's ``event_outbox`` table on the
   caller's cursor, inside the caller's transaction: the events exist if and only if the data
   they describe was committed. An event's id is derived from its topic and a key the caller
   chooses for the fact it reports (:func:`event_id`), so writing the same fact again (a
   rerun) adds nothing (``ON CONFLICT (event_id) DO NOTHING``).
2. :func:`publish_outbox` sends the unpublished rows in outbox order through the Kafka
   provider's :class:`KafkaProducerHook`, waits for the broker's acknowledgements and marks
   only the acknowledged rows published. At-least-once: a row is marked after Kafka has it,
   so a crash in between sends it again; consumers de-duplicate by ``event_id`` (as the
   tests' ``tests/event_consumer.py`` does). When the broker is unreachable nothing is marked, a
   warning names the number of events waiting, and the call returns normally: the next
   publish (any later run) sends them.

The message (value, UTF-8 JSON; key = the event's ``key``; header ``event_id``)::

    {
      "event_id":       "3f0c...-uuid",      # unique per fact; de-duplicate on it
      "event_type":     "aurora.prediction.created",
      "schema_version": 1,
      "occurred_at":    "2026-12-02T06:00:12.345678+00:00",   # when the outbox row was written
      "source":         "aurora/prediction_pipeline",
      "key":            "user-42",           # also the Kafka message key (per-key ordering)
      "data":           {...}                # the event type's own fields
    }

The table ``event_outbox`` is this component's schema, defined once in
``shared/migrations/outbox/0001_event_outbox.sql``. A domain that publishes declares it and
gets the table in its own database, migrated before the domain's own migrations
(:class:`shared.db.DomainDatabase`)::

    DATABASE = DomainDatabase("aurora", Path(__file__).parent / "migrations", uses=(SCHEMA,))
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

OUTBOX_TABLE = "event_outbox"
SCHEMA = "outbox"  # the table's migrations, shared/migrations/outbox/: DomainDatabase(uses=(SCHEMA,))
SCHEMA_VERSION = 1  # of the message (the envelope below), not of the table
# Ids are uuid5(NAMESPACE, "<topic>|<dedup key>"): the same fact always gets the same id.
NAMESPACE = uuid.UUID("5b0f2f4e-8d0a-4c7e-9a55-0f6f7a3c2b11")


def event_id(topic: str, dedup_key: str) -> str:
    """The id of the event reporting ``dedup_key`` on ``topic`` (stable across reruns)."""
    return str(uuid.uuid5(NAMESPACE, f"{topic}|{dedup_key}"))


@dataclass(frozen=True)
class Event:
    """One event to add: ``dedup_key`` names the fact (e.g. ``"<user>|energy|2026-12-02|<hash>"``)."""

    topic: str
    event_type: str
    key: str
    data: Mapping[str, Any]
    dedup_key: str

    @property
    def event_id(self) -> str:
        return event_id(self.topic, self.dedup_key)


def envelope(event: Event, source: str, occurred_at: datetime | None = None) -> dict[str, Any]:
    """The documented JSON message of an event (see the module docstring)."""
    return _envelope(event, event.event_id, source, (occurred_at or datetime.now(UTC)).isoformat())


def _envelope(event: Event, eid: str, source: str, occurred_at: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": event.event_type,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": occurred_at,
        "source": source,
        "key": event.key,
        "data": dict(event.data),
    }


def add_events(cur: Any, events: Iterable[Event], source: str) -> int:
    """Insert ``events`` into the outbox on the caller's cursor (the caller commits).

    Returns how many were new; an event whose id is already in the outbox is skipped.
    """
    occurred_at = datetime.now(UTC).isoformat()
    rows = []
    for e in events:
        eid = e.event_id  # a uuid5 (SHA-1): made once per event
        # no sort_keys: the column is jsonb, which keeps keys in its own order whatever the text's
        rows.append((eid, e.topic, e.key, json.dumps(_envelope(e, eid, source, occurred_at), default=str)))
    if not rows:
        return 0
    if any(key == "\\N" for _, _, key, _ in rows):  # COPY's NULL marker as a key: the array statement
        return _insert_arrays(cur, rows)
    # COPY into a staging table, then one INSERT ... SELECT in the events' order: the same rows and
    # count as the array statement below, without the driver escaping every payload into an array
    # literal (the same with psycopg 3 and psycopg2)
    from shared.db import copy_rows

    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (n bigint, event_id uuid, topic text, event_key text,"
                " payload text) ON COMMIT DROP")
    copy_rows(cur, _STAGING, ["n", "event_id", "topic", "event_key", "payload"],
              ((n, *row) for n, row in enumerate(rows)))
    cur.execute(
        f"WITH ins AS (INSERT INTO {OUTBOX_TABLE} (event_id, topic, event_key, payload)"
        f" SELECT event_id, topic, event_key, payload::jsonb FROM {_STAGING} ORDER BY n"
        " ON CONFLICT (event_id) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
    )
    added = cur.fetchone()[0]
    cur.execute(f"DROP TABLE {_STAGING}")
    return int(added)


_STAGING = "_outbox_staging"


def _insert_arrays(cur: Any, rows: list[tuple[str, str, str | None, str]]) -> int:
    ids, topics, keys, payloads = (list(col) for col in zip(*rows, strict=True))
    # one statement over arrays: the same with psycopg 3 (the provider's default) and psycopg2
    cur.execute(
        f"WITH ins AS (INSERT INTO {OUTBOX_TABLE} (event_id, topic, event_key, payload)"
        " SELECT e, t, k, p::jsonb FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])"
        " WITH ORDINALITY AS u(e, t, k, p, n) ORDER BY n"
        " ON CONFLICT (event_id) DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
        (ids, topics, keys, payloads),
    )
    return int(cur.fetchone()[0])


# Producer settings for the outbox's batches, under the connection's own (the connection wins):
# messages wait up to 20 ms to fill a batch of up to 10,000 messages / 1 MB, compressed (lz4);
# the local queue holds several outbox batches, so producing never waits on the broker.
# librdkafka's batching for a publisher of many events at once (about 1.6x on aurora's publish,
# measured with benchmarks.aurora_features --predictions): a domain sets them in its Kafka
# connection's extras (the provider passes every extra to the producer), as aurora's
# settings.yaml does; documented here so that other domains use the same figures.
PRODUCER_BATCHING: dict[str, Any] = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
}


@dataclass(frozen=True)
class PublishResult:
    published: int
    waiting: int
    broker_reachable: bool = True
    topics: frozenset[str] = frozenset()  # the topics that got acknowledged events (lineage outputs)


def _delivery_recorder(acked: list[int], errors: dict[int, str]):
    """A delivery callback body: an acknowledged row id into ``acked``, a failed one into ``errors``."""

    def record(err: Any, row_id: int) -> None:
        if err is None:
            acked.append(row_id)
        else:
            errors[row_id] = str(err)

    return record


def pending_count(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE published_at IS NULL")
        return int(cur.fetchone()[0])


def publish_outbox(
    conn: Any,
    kafka_conn_id: str,
    *,
    batch_size: int = 5000,
    probe_timeout: float = 10.0,
    flush_timeout: float = 60.0,
) -> PublishResult:
    """Publish every unpublished outbox row, oldest first, in batches; mark the acknowledged ones.

    Rows are locked ``FOR UPDATE SKIP LOCKED`` while a batch is in flight, so two publishers
    never send the same batch concurrently. An unreachable broker (no metadata within
    ``probe_timeout``) or unacknowledged messages leave rows unpublished and log a warning
    with the count; nothing is raised for that, the rows wait for the next publish.
    """
    producer = _producer(kafka_conn_id)
    try:
        result = _publish(conn, producer, kafka_conn_id, batch_size, probe_timeout, flush_timeout)
        if result.topics:
            _record_topics(producer, kafka_conn_id, result.topics)
        return result
    finally:
        producer.purge()  # nothing is left after the flushes; a failed batch's rows stay unpublished
        producer.close()  # no client left reconnecting to a broker that is down


def _producer(kafka_conn_id: str) -> Any:
    """The provider's ``KafkaProducerHook`` producer, configured by the connection's extras."""
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    return KafkaProducerHook(kafka_config_id=kafka_conn_id).get_producer()


def _publish(conn: Any, producer: Any, kafka_conn_id: str, batch_size: int, probe_timeout: float,
             flush_timeout: float) -> PublishResult:
    from confluent_kafka import KafkaException

    try:
        producer.list_topics(timeout=probe_timeout)
    except KafkaException as e:
        waiting = pending_count(conn)
        conn.rollback()
        log.warning(
            "Kafka broker of connection %r unreachable (%s): %d event(s) wait in the outbox "
            "and go out with the next publish", kafka_conn_id, e, waiting,
        )
        return PublishResult(0, waiting, broker_reachable=False)

    published = 0
    topics: set[str] = set()
    while True:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT id, event_id::text, topic, event_key, payload::text FROM {OUTBOX_TABLE}"
                " WHERE published_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (batch_size,),
            )
            batch = cur.fetchall()
            if not batch:
                conn.commit()
                break
            acked: list[int] = []
            errors: dict[int, str] = {}
            on_delivery = _delivery_recorder(acked, errors)
            produce = producer.produce
            for row_id, eid, topic, key, payload in batch:
                while True:
                    try:  # text as it is: the client sends str values, keys and headers as UTF-8
                        produce(topic, value=payload, key=key, headers=[("event_id", eid)],
                                on_delivery=lambda err, msg, row_id=row_id, record=on_delivery: record(err, row_id))
                        break
                    except BufferError:  # local queue full: let deliveries drain, then go on
                        producer.poll(0.5)
            left = producer.flush(flush_timeout)
            if left:
                producer.purge()  # undelivered messages: their rows stay unpublished
                producer.flush(5)
            done = set(acked)
            if acked:
                topics.update(r[2] for r in batch if r[0] in done)
                cur.execute(
                    f"UPDATE {OUTBOX_TABLE} SET published_at = now(), attempts = attempts + 1, last_error = NULL"
                    " WHERE id = ANY(%s)", (acked,),
                )
            failed = [r[0] for r in batch if r[0] not in done]
            if failed:
                cur.execute(
                    f"UPDATE {OUTBOX_TABLE} SET attempts = attempts + 1, last_error = %s WHERE id = ANY(%s)",
                    (next(iter(errors.values()), "not acknowledged in time")[:500], failed),
                )
        conn.commit()
        published += len(acked)
        if failed:
            waiting = pending_count(conn)
            conn.rollback()
            log.warning(
                "Kafka did not acknowledge %d event(s) (%s): %d event(s) wait in the outbox for the next publish",
                len(failed), next(iter(errors.values()), "timeout"), waiting,
            )
            return PublishResult(published, waiting, broker_reachable=True, topics=frozenset(topics))
    log.info("published %d event(s) from the outbox", published)
    return PublishResult(published, 0, topics=frozenset(topics))


def _record_topics(producer: Any, kafka_conn_id: str, topics: Iterable[str]) -> None:
    """Report the topics the task published to as OpenLineage outputs (``kafka://<bootstrap>``)."""
    from airflow.sdk import BaseHook

    from shared.lineage import kafka_topic, record_io

    bootstrap = BaseHook.get_connection(kafka_conn_id).extra_dejson.get("bootstrap.servers", "")
    record_io(producer, outputs=[kafka_topic(bootstrap, t) for t in sorted(topics)])
