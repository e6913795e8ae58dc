-- Publishing marks a high-water mark instead of rewriting every published row (issue 25): the
-- publisher sends rows in (txid, id) order and, once Kafka acknowledged a contiguous run of
-- them, moves one tiny row (event_outbox_mark) past it. Rewriting a ~1.5 KB row per event
-- (a non-HOT UPDATE of published_at, plus the FOR UPDATE lock before it) was most of publish.
--
-- txid: the writing transaction's id. Ids from the bigserial are handed out at INSERT, but
-- transactions commit in any order, so "every id below the mark is published" would skip a
-- row whose transaction committed after a later id was published. A transaction whose id is
-- below the oldest one still running (pg_snapshot_xmin of the publisher's snapshot) has ended:
-- no row can appear any more below that frontier, so the publisher only passes rows below it,
-- in (txid, id) order, and the mark never jumps over a row that commits later.
--
-- Rows written before this migration get txid 0 (a constant default: no table rewrite), so
-- they come first, in id order; those with published_at set stay published. published_at is
-- now set only for a row acknowledged after an unacknowledged one (a hole the mark cannot
-- pass yet); attempts/last_error only for rows Kafka did not acknowledge.
ALTER TABLE event_outbox ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE event_outbox ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX event_outbox_txid_id ON event_outbox (txid, id);
DROP INDEX IF EXISTS event_outbox_unpublished;

-- One row: everything at or below (txid, id) was acknowledged by Kafka. Moved forward only,
-- by the publisher holding the outbox's publish lock (a transaction-level advisory lock,
-- shared/outbox.py), in the transaction that read the batch: two publishers never send the
-- same rows at once and never both skip one.
CREATE TABLE event_outbox_mark (
    name  text PRIMARY KEY,
    txid  xid8   NOT NULL,
    id    bigint NOT NULL
);
INSERT INTO event_outbox_mark (name, txid, id) VALUES ('published', '0', 0);

-- The events not published yet (the one definition of "waiting"): above the mark and not
-- acknowledged one by one.
CREATE VIEW event_outbox_waiting AS
SELECT o.*
  FROM event_outbox o, event_outbox_mark m
 WHERE m.name = 'published' AND (o.txid, o.id) > (m.txid, m.id) AND o.published_at IS NULL;
