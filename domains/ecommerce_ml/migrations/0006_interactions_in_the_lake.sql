-- DAG 1's cleaned interactions live in the lake only (issue 25): each day is the registered
-- artifact curated/interactions/v=<day>/part-<sha>.parquet (dataset_registry: dataset
-- 'interactions', kind 'artifact'), written by build_interactions since DAG 1 began and read by
-- DuckDB (DAGs 1, 4, 5; interactions.open_interactions for the domain's users). The table held
-- the same rows again (4.3 M a day at 1x; the COPY was 62 % of the daily step) and nothing read it.
-- Every day it holds must be reachable in the lake before it goes: refuse otherwise.
DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(d::text, ', ' ORDER BY d) INTO missing
    FROM (SELECT DISTINCT day AS d FROM interactions) days
    WHERE NOT EXISTS (SELECT 1 FROM dataset_registry r WHERE r.dataset = 'interactions'
                      AND r.kind = 'artifact' AND r.version = days.d::text);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'interactions: days % have rows in the table but no registered lake artifact; '
            'rerun ecommerce_ml_user_item_interactions for them with the previous release first', missing;
    END IF;
END $$;

DROP TABLE interactions;
-- the table's registry rows described it; the artifact rows of the same versions stay
DELETE FROM dataset_registry WHERE dataset = 'interactions' AND kind = 'table';
