-- DAG 7 (ecommerce_ml_events_funnels): sessions, funnels per interval and per article, the
-- rejected events with reasons, and the event files each interval consumed (late detection).
CREATE TABLE event_files (
    path         text        PRIMARY KEY,      -- lake path relative to the base
    slot_start   timestamptz NOT NULL,         -- the interval the file's events belong to
    rows         integer     NOT NULL,
    sha256       text        NOT NULL
);
CREATE INDEX event_files_slot ON event_files (slot_start);

CREATE TABLE event_rejections (
    slot_start timestamptz NOT NULL,
    file       text        NOT NULL,
    line       integer     NOT NULL,
    event_id   text,
    reason     text        NOT NULL CHECK (reason IN ('missing_value', 'duplicate_event_id', 'unknown_article',
                                                      'invalid_event_type', 'wrong_slot')),
    PRIMARY KEY (slot_start, file, line)
);

-- One row per session per interval in which it has events (sessions: 30 minutes of inactivity end one).
CREATE TABLE event_sessions (
    slot_start    timestamptz NOT NULL,
    session_id    text        NOT NULL,      -- <session_key>-<epoch ms of the session's first event>
    session_key   text        NOT NULL,
    customer_id   text,
    session_start timestamptz NOT NULL,
    first_ts      timestamptz NOT NULL,      -- first / last event of the session in this interval
    last_ts       timestamptz NOT NULL,
    views         integer     NOT NULL,
    carts         integer     NOT NULL,
    purchases     integer     NOT NULL,
    PRIMARY KEY (slot_start, session_id)
);

CREATE TABLE funnel_interval (
    slot_start          timestamptz PRIMARY KEY,
    slot_end            timestamptz NOT NULL,
    events              integer NOT NULL,   -- valid events with ts in the interval
    late_events         integer NOT NULL,   -- of those, events that arrived after their interval closed
    rejected_events     integer NOT NULL,
    active_sessions     integer NOT NULL,   -- sessions with an event in the interval
    new_sessions        integer NOT NULL,   -- sessions that started in the interval
    views               integer NOT NULL,
    carts               integer NOT NULL,
    purchases           integer NOT NULL,
    sessions_viewed     integer NOT NULL,   -- sessions whose first view is in the interval
    sessions_carted     integer NOT NULL,   -- ... whose first add_to_cart after a view is in the interval
    sessions_purchased  integer NOT NULL,   -- ... whose first purchase after that is in the interval
    view_to_cart_rate   double precision,
    cart_to_purchase_rate double precision
);

CREATE TABLE funnel_article (
    slot_start         timestamptz NOT NULL,
    article_id         text        NOT NULL CHECK (article_id ~ '^[0-9]{10}$'),
    views              integer     NOT NULL,
    carts              integer     NOT NULL,
    purchases          integer     NOT NULL,
    sessions_viewed    integer     NOT NULL,
    sessions_carted    integer     NOT NULL,
    sessions_purchased integer     NOT NULL,
    PRIMARY KEY (slot_start, article_id)
);
