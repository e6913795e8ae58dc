"""Transactional outbox: events written with the data they describe, published to Kafka later.

Writing an event straight to Kafka from a task loses it when the broker is down, and
publishes an event for data whose transaction then rolls back. Instead:

1. :func:`add_events` inserts the events into the domain's ``event_outbox`` table on the
   caller's cursor, inside the caller's transaction: the events exist if and only if the data
   they describe was committed. An event's id is derived from its topic and a key the caller
   chooses for the fact it reports (:func:`event_id`), so writing the same fact again (a
   rerun) adds nothing (``ON CONFLICT (event_id) DO NOTHING``).
2. :func:`publish_outbox` sends the waiting rows in outbox order (writing transaction, then
   id) through the Kafka provider's :class:`KafkaProducerHook`, waits for the broker's
   acknowledgements and moves a high-water mark (one row, ``event_outbox_mark``) past the
   acknowledged ones, instead of rewriting each published row. At-least-once: the mark moves
   after Kafka has the rows, so a crash in between sends them again; consumers de-duplicate
   by ``event_id`` (as the tests' ``tests/event_consumer.py`` does). The view
   ``event_outbox_waiting`` lists the rows not published yet. When the broker is unreachable nothing is marked, a
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
``shared/migrations/outbox/`` (0001: the table; 0002: its publish mark and waiting view). A domain that publishes declares it and
gets the table in its own database, migrated before the domain's own migrations
(:class:`shared.db.DomainDatabase`)::

    DATABASE = DomainDatabase("aurora", Path(__file__).parent / "migrations", uses=(SCHEMA,))
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
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


class EncodedJSON(str):
    """An event's ``data`` already encoded as JSON text (a JSON object), put into the message as
    it is: for a publisher of many events that has the text at hand (e.g. it hashed it for the
    event's id), instead of encoding a dict a second time. ``json.loads`` gives the data back."""


@dataclass(frozen=True)
class Event:
    """One event to add: ``dedup_key`` names the fact (e.g. ``"<user>|energy|2026-12-02|<hash>"``);
    ``data`` a mapping, or an :class:`EncodedJSON` text of one."""

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
        "data": json.loads(event.data) if isinstance(event.data, EncodedJSON) else dict(event.data),
    }


def _envelope_texts(events: Iterable[Event], source: str, occurred_at: str) -> Iterator[tuple[str, str, str | None, str]]:
    """(event id, topic, key, message text) per event: the text ``json.dumps(envelope(...))``
    gives, with the envelope's few repeated strings encoded once and :class:`EncodedJSON` data
    put in as it is."""
    encoded: dict[Any, str] = {}

    def enc(v: Any) -> str:
        text = encoded.get(v)
        if text is None:
            text = encoded[v] = json.dumps(v)
            if len(encoded) > 10_000:  # keys repeat little: keep the cache small
                encoded.clear()
        return text

    tail = f'"schema_version": {SCHEMA_VERSION}, "occurred_at": {enc(occurred_at)}, "source": {enc(source)}, "key": '
    for e in events:
        eid = e.event_id  # a uuid5 (SHA-1): made once per event
        data = e.data if isinstance(e.data, EncodedJSON) else json.dumps(dict(e.data), default=str)
        # no sort_keys: the column is jsonb, which keeps keys in its own order whatever the text's
        yield eid, e.topic, e.key, (f'{{"event_id": "{eid}", "event_type": {enc(e.event_type)}, {tail}'
                                    f'{enc(e.key)}, "data": {data}}}')


def add_events(cur: Any, events: Iterable[Event], source: str) -> int:
    """Insert ``events`` into the outbox on the caller's cursor (the caller commits).

    Returns how many were new; an event whose id is already in the outbox is skipped.
    ``events`` is consumed as a stream (a generator stays a generator): each event's message is
    made and sent to the server as it comes, never all held in memory at once.
    """
    from shared.db import copy_rows

    # COPY into a staging table, then one INSERT ... SELECT in the events' order. A key that is
    # COPY's NULL marker (the text \N) travels as NULL with the flag ``n_key`` and is put back.
    def staged() -> Iterator[tuple]:
        for n, (eid, topic, key, payload) in enumerate(_envelope_texts(events, source, datetime.now(UTC).isoformat())):
            yield (n, eid, topic, None, payload, True) if key == "\\N" else (n, eid, topic, key, payload, None)

    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (n bigint, event_id uuid, topic text, event_key text,"
                " payload text, n_key boolean) ON COMMIT DROP")
    copy_rows(cur, _STAGING, ["n", "event_id", "topic", "event_key", "payload", "n_key"], staged())
    cur.execute(
        f"WITH ins AS (INSERT INTO {OUTBOX_TABLE} (event_id, topic, event_key, payload)"
        f" SELECT event_id, topic, CASE WHEN n_key THEN '\\N' ELSE event_key END, payload::jsonb FROM {_STAGING}"
        " ORDER BY n ON CONFLICT (event_id) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
    )
    added = cur.fetchone()[0]
    cur.execute(f"DROP TABLE {_STAGING}")
    return int(added)


_STAGING = "_outbox_staging"


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


def pending_count(conn: Any) -> int:
    """The events waiting to be published (the view ``event_outbox_waiting``)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {WAITING_VIEW}")
        return int(cur.fetchone()[0])


WAITING_VIEW = "event_outbox_waiting"  # shared/migrations/outbox/0002_publish_mark.sql
MARK_TABLE = "event_outbox_mark"
MARK = "published"
# the outbox's publish lock (pg_advisory_lock, held for a whole publish; advisory locks are per database)
_PUBLISH_LOCK = int.from_bytes(uuid.uuid5(NAMESPACE, "event_outbox publish").bytes[:8], "big", signed=True)
# The outbox's horizon: the oldest transaction still running that may write into this database,
# or, with none, the snapshot's xmax. A running transaction counts unless pg_stat_activity shows
# it in another database of the server (a transaction there cannot write this table): one not
# found there (just started, prepared, its backend's view stale) counts, so the horizon is never
# above a transaction that may still commit rows here. A transaction's database never changes, so
# a stale view of pg_stat_activity (cached per transaction) only makes the horizon lower.
HORIZON = (
    "(SELECT coalesce((SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x WHERE NOT EXISTS ("
    "    SELECT 1 FROM pg_stat_activity a WHERE a.backend_xid = xid(x) AND a.datid IS NOT NULL"
    "    AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))),"
    "  pg_snapshot_xmax(s.snap)) FROM (SELECT pg_current_snapshot() AS snap) s)"
)
# The next rows to send: above the mark, written by transactions that have all ended (below the
# horizon, so no row can appear below them later), not acknowledged one by one after a hole, in
# (txid, id) order: the table's xid8 column, read along its index event_outbox_txid_id (a bare
# ``ORDER BY txid`` would name the output column ``txid::text``: text order, where '100' < '99',
# so a batch ending at txid 100 would move the mark past rows of txid 99 not sent yet, and every
# batch would sort all waiting rows, payloads included, instead of reading the index's first rows).
_BATCH_ROWS = (
    f"SELECT o.id, o.txid::text, o.event_id::text, o.topic, o.event_key, o.payload::text FROM {OUTBOX_TABLE} o"
    " WHERE (o.txid, o.id) > (%s::xid8, %s)"
)
_NEXT_BATCH = (
    f"{_BATCH_ROWS} AND o.txid < {HORIZON} AND o.published_at IS NULL ORDER BY o.txid, o.id LIMIT %s"
)
# The same rows without the horizon: what a publish sends, marking each row, once a transaction
# that is still running held it back for ``settle_timeout`` (the mark stays below that transaction).
_HELD_BATCH = f"{_BATCH_ROWS} AND o.published_at IS NULL ORDER BY o.txid, o.id LIMIT %s"


def publish_outbox(
    conn: Any,
    kafka_conn_id: str,
    *,
    batch_size: int = 20_000,
    probe_timeout: float = 10.0,
    flush_timeout: float = 60.0,
    settle_timeout: float = 30.0,
) -> PublishResult:
    """Publish every waiting outbox row, oldest first, in batches; mark the acknowledged ones.

    Call it on a connection without uncommitted writes (it commits per batch). The whole
    publish holds the outbox's publish lock (a session-level advisory lock): a second publisher
    waits for the first one to finish, then starts above its mark, so two publishers never send
    the same rows at once and never both skip one. A batch is the next ``batch_size`` rows above
    the high-water mark (``event_outbox_mark``); batches are pipelined: batch k+1 is read and
    handed to the producer while Kafka acknowledges batch k. Once Kafka acknowledged every row of
    a batch (or reported its failure), the mark moves past the acknowledged run at its start, in
    a transaction of its own; a crash before that commit leaves the mark where it was and the
    batch (and the one after it, already sent) is sent again (at least once; consumers
    de-duplicate by ``event_id``). Rows acknowledged after an unacknowledged one get
    ``published_at`` one by one; unacknowledged rows get ``attempts``/``last_error`` and wait.

    Rows whose transaction began after one that is still running and may write into this
    database (:data:`HORIZON`: a transaction that pg_stat_activity shows in another database of
    the server does not count) are held back until it ends, up to ``settle_timeout`` seconds: the
    mark cannot pass a row that may still be committed below it. Then they are sent all the same
    and marked one by one (``published_at``), with a warning, while the mark waits below that
    transaction: a long transaction of this database slows a publish down to per-row marking, it
    never stops it; another database's long transaction does neither.
    An unreachable broker (no metadata within ``probe_timeout``) or unacknowledged messages
    leave rows waiting and log a warning with the count; nothing is raised for that, the rows
    wait for the next publish.
    """
    producer = _producer(kafka_conn_id)
    try:
        result = _publish(conn, producer, kafka_conn_id, batch_size, probe_timeout, flush_timeout, settle_timeout)
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


class _InFlight:
    """One batch produced to Kafka and not resolved yet. Its delivery reports come to
    :meth:`record` (one bound method for the whole batch, called by the client inside
    ``poll``/``flush`` in this thread): a success only counts; a failure keeps the message's
    value (the row's payload, which holds its event id: unique per row) and its error; ``left``:
    the reports still to come. (A delivery report carries the message's value and key, not its
    headers.)"""

    __slots__ = ("rows", "errors", "left")

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows
        self.errors: dict[bytes | None, str] = {}  # failed message's value -> error
        self.left = len(rows)

    def record(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors[msg.value()] = str(err)
        self.left -= 1

    def acked(self) -> bytearray:
        """Per row 1 once acknowledged: with every report in, all rows but those whose payload
        failed. A report missing (the broker never answered and the purge's report did not come
        either) or a failure without its value: no row of the batch counts as acknowledged, all
        are sent again (at least once)."""
        if self.left or None in self.errors:
            return bytearray(len(self.rows))
        if not self.errors:
            return bytearray(b"\x01") * len(self.rows)
        failed = self.errors
        return bytearray(0 if r[5].encode() in failed else 1 for r in self.rows)


def _produce(producer: Any, rows: list[tuple]) -> _InFlight:
    """Hand ``rows`` to the producer (no wait for the broker): their deliveries come later.
    No per-row Python beyond the call: the batch's one callback, the row's own texts (the client
    sends str values, keys and headers as UTF-8)."""
    flight = _InFlight(rows)
    record = flight.record
    produce = producer.produce
    for _, _, eid, topic, key, payload in rows:
        while True:
            try:
                produce(topic, payload, key, headers=[("event_id", eid)], on_delivery=record)
                break
            except BufferError:  # local queue full: let deliveries drain, then go on
                producer.poll(0.5)
    return flight


def _settle(producer: Any, flight: _InFlight, deadline: float) -> bool:
    """Serve deliveries until every row of ``flight`` has its outcome or ``deadline`` passes;
    False: the broker did not answer in time (the caller purges)."""
    import time

    while flight.left:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        producer.poll(min(left, 0.2))
    return True


def _give_up(producer: Any) -> None:
    """Drop every message not acknowledged yet (its row stays unpublished) and collect the
    purge's delivery reports, so each row in flight has an outcome."""
    producer.purge()
    producer.flush(5)


@dataclass
class _Progress:
    published: int = 0
    topics: set[str] | None = None
    blocked: bool = False  # a row was not acknowledged: the mark cannot pass it in this publish
    error: str = ""


def _mark(conn: Any, flight: _InFlight, beyond: bool, progress: _Progress) -> list[int]:
    """In one transaction: move the mark past the acknowledged run at the batch's start (unless
    a row before it failed, or the batch lies past the horizon), mark later acknowledged rows
    one by one (``published_at``), count an attempt on the rest. Returns the failed rows' ids."""
    rows, acked = flight.rows, flight.acked()
    run = 0 if (beyond or progress.blocked) else acked.find(0)  # the run that moves the mark
    run = len(rows) if run < 0 else run
    with conn.cursor() as cur:
        if run:
            cur.execute(f"UPDATE {MARK_TABLE} SET txid = %s::xid8, id = %s WHERE name = %s",
                        (rows[run - 1][1], rows[run - 1][0], MARK))
        holes = [rows[i][0] for i in range(run, len(rows)) if acked[i]]
        if holes:  # acknowledged after an unacknowledged row, or past the horizon: marked one by one
            cur.execute(f"UPDATE {OUTBOX_TABLE} SET published_at = now(), last_error = NULL WHERE id = ANY(%s)",
                        (holes,))
        failed = [rows[i][0] for i in range(run, len(rows)) if not acked[i]]
        if failed:
            error = next(iter(flight.errors.values()), "not acknowledged in time")
            cur.execute(f"UPDATE {OUTBOX_TABLE} SET attempts = attempts + 1, last_error = %s WHERE id = ANY(%s)",
                        (error[:500], failed))
            progress.blocked, progress.error = True, error
    conn.commit()
    progress.published += run + len(holes)
    progress.topics.update({r[3] for r in rows} if run == len(rows)
                           else {rows[i][3] for i in range(len(rows)) if acked[i]})
    return failed


def _publish(conn: Any, producer: Any, kafka_conn_id: str, batch_size: int, probe_timeout: float,
             flush_timeout: float, settle_timeout: float) -> PublishResult:
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

    # The publish lock for the whole publish (a session-level advisory lock; advisory locks are
    # per database): a second publisher waits for this one, then starts above its mark, so two
    # publishers never send the same rows at once and never both skip one. It is taken in a
    # transaction that writes nothing: no transaction id, so it holds no horizon back.
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_PUBLISH_LOCK,))
    try:
        return _publish_locked(conn, producer, batch_size, flush_timeout, settle_timeout)
    finally:
        conn.rollback()  # a failed statement's transaction, if any: the unlock needs a usable one
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_PUBLISH_LOCK,))
        conn.commit()


def _read_ahead(conn: Any) -> Any:
    """psycopg 3's pipeline mode on ``conn`` (``Connection.pipeline()``), in which a query is sent
    at ``execute`` and its results read when asked for: the publisher's next batch is read by the
    server while it produces the current one. A connection without it (psycopg2, a wrapper)
    runs each query at ``execute``, as before."""
    from contextlib import nullcontext

    pipeline = getattr(conn, "pipeline", None)
    if pipeline is None:
        return nullcontext()
    from psycopg import Pipeline

    return pipeline() if Pipeline.is_supported() else nullcontext()


def _publish_locked(conn: Any, producer: Any, batch_size: int, flush_timeout: float,
                    settle_timeout: float) -> PublishResult:
    """Batches read, produced and marked in a pipeline: batch k+1 is read from PostgreSQL and
    handed to the producer while Kafka acknowledges batch k; batch k is marked once all its
    deliveries are in (at-least-once: nothing is marked before Kafka acknowledged it). Reads
    commit nothing (the read of batch k+1 and the mark of batch k commit together); only a mark
    takes a transaction id, after the read."""
    import time

    with conn.cursor() as cur:
        cur.execute(f"SELECT txid::text, id FROM {MARK_TABLE} WHERE name = %s", (MARK,))
        position = cur.fetchone()  # (txid, id) of the last row read: the next batch starts above it
    progress = _Progress(topics=set())
    settle_until = None
    beyond = False  # past the horizon: held rows sent and marked one by one, the mark stays
    inflight: _InFlight | None = None

    def resolve(flight: _InFlight, later: _InFlight | None = None) -> bool:
        """``flight``'s outcome marked (and ``later``'s too when ``flight`` failed); False: a
        row was not acknowledged, the publish stops."""
        if not _settle(producer, flight, time.monotonic() + flush_timeout):
            _give_up(producer)
        failed = _mark(conn, flight, beyond, progress)
        if failed and later is not None:
            if not _settle(producer, later, time.monotonic() + 5):
                _give_up(producer)
            _mark(conn, later, beyond, progress)
        return not failed

    def send_read() -> Any:
        """The read of the batch above ``position``, sent (in pipeline mode the server runs it
        while this thread goes on); its rows come with ``fetchall``."""
        cur = conn.cursor()
        cur.execute(_HELD_BATCH if beyond else _NEXT_BATCH, (position[0], position[1], batch_size))
        return cur

    with _read_ahead(conn):
        reading = None
        try:
            while True:
                cur, reading = (reading if reading is not None else send_read()), None
                with cur:
                    batch = cur.fetchall()
                if batch:
                    settle_until = None
                    position = (batch[-1][1], batch[-1][0])
                    # the next batch's read goes to the server now: PostgreSQL reads it while
                    # this batch is handed to the producer and the batch before it is marked
                    reading = send_read()
                    sent = _produce(producer, batch)
                    if inflight is not None and not resolve(inflight, sent):
                        break
                    inflight = sent
                    continue
                if inflight is not None:
                    ok = resolve(inflight)
                    inflight = None
                    if not ok:
                        break
                if beyond:
                    break
                held = pending_count(conn)  # committed, but behind a transaction still running
                conn.commit()
                if not held:
                    break
                settle_until = settle_until or time.monotonic() + settle_timeout
                if time.monotonic() >= settle_until:
                    log.warning("%d event(s) were written by transactions that began after one still running "
                                "(in this database, or not known to be elsewhere); sent now and marked one by one, the mark "
                                "waits for that transaction to end", held)
                    beyond = True
                    continue
                time.sleep(0.05)
        finally:
            if reading is not None:  # a read sent after the publish stopped: its rows are not used
                reading.close()
    topics = frozenset(progress.topics)
    if progress.blocked:
        waiting = pending_count(conn)
        conn.rollback()
        log.warning("Kafka did not acknowledge some event(s) (%s): %d event(s) wait in the outbox for the next publish",
                    progress.error or "timeout", waiting)
        return PublishResult(progress.published, waiting, broker_reachable=True, topics=topics)
    log.info("published %d event(s) from the outbox", progress.published)
    return PublishResult(progress.published, 0, topics=topics)


def _record_topics(producer: Any, kafka_conn_id: str, topics: Iterable[str]) -> None:
    """Report the topics the task published to as OpenLineage outputs (``kafka://<bootstrap>``)."""
    from airflow.sdk import BaseHook

    from shared.lineage import kafka_topic, record_io

    bootstrap = BaseHook.get_connection(kafka_conn_id).extra_dejson.get("bootstrap.servers", "")
    record_io(producer, outputs=[kafka_topic(bootstrap, t) for t in sorted(topics)])
