-- DAG 7's sessions live in the lake only (issue 25): each slot's rows are the registered artifact
-- curated/event_sessions/v=<day>/sessions-<version>-<sha>.parquet (dataset_registry: dataset
-- 'event_sessions', kind 'artifact', version = the slot, YYYY-MM-DDTHHMM), written by
-- process_interval. The table took 261 bytes a row (>= 150 MB a day at 1x, ~55 GB a year) and
-- nothing read a session by key: the funnels are computed from the events when an interval is
-- processed. Every slot it holds must be reachable in the lake before it goes: refuse otherwise.
DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(v, ', ' ORDER BY v) INTO missing
    FROM (SELECT DISTINCT to_char(slot_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24MI') AS v FROM event_sessions) slots
    WHERE NOT EXISTS (SELECT 1 FROM dataset_registry r WHERE r.dataset = 'event_sessions'
                      AND r.kind = 'artifact' AND (r.version = slots.v OR r.version LIKE slots.v || '-%'));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'event_sessions: slots % have rows in the table but no registered lake artifact; '
            'move them first: domains.ecommerce_ml.events.move_table_sessions_to_lake (README, events and funnels)', missing;
    END IF;
END $$;

DROP TABLE event_sessions;
-- the table's registry rows described it; the artifact rows of the same versions stay
DELETE FROM dataset_registry WHERE dataset = 'event_sessions' AND kind = 'table';
