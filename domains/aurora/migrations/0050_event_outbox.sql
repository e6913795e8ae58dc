-- The transactional outbox of aurora's events (shared/outbox.py documents the table and the
-- message schema): rows are written in the same transaction as the data they describe and
-- published to Kafka (aurora_kafka) afterwards, oldest first, at least once.
CREATE TABLE event_outbox (
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
CREATE INDEX event_outbox_unpublished ON event_outbox (id) WHERE published_at IS NULL;
