-- The transactional outbox (shared/outbox.py documents its use and the message schema): rows
-- are written in the same transaction as the data they describe and published to Kafka
-- afterwards, oldest first, at least once. The one definition of the table: a domain that
-- publishes declares DomainDatabase(..., uses=("outbox",)) and gets it in its own database.
--
-- IF NOT EXISTS: this table was first aurora's migration 0050_event_outbox (the same DDL). On
-- a database that applied it, this migration changes nothing and is only recorded; the old
-- version stays in schema_migrations, where migrate() ignores versions without a file.
CREATE TABLE IF NOT EXISTS event_outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    event_key    text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX IF NOT EXISTS event_outbox_unpublished ON event_outbox (id) WHERE published_at IS NULL;
