-- Dataset facets per producing job (issue 22, lineage integrity). Until now the facets every
-- job reported for a dataset were merged into lineage_dataset.facets, so one team's event that
-- named another team's dataset wrote facets (schema, column lineage, ...) the other team then
-- saw. From here on each (dataset, job) pair has its own row, written only by that job's
-- events, and a reader sees only the rows of the jobs it may see.
--
-- The upgrade keeps what is stored: the per-job rows are rebuilt from the raw events
-- (lineage_event keeps every event retention has not purged), with the same rule ingest uses
-- (per facet, the latest event by event time wins; within an event, the last entry naming the
-- dataset, outputs after inputs);
-- an edge whose events are gone still gets its (empty) row, so no dataset a job touches
-- disappears; and the old merged columns are kept, renamed, unread.

CREATE TABLE lineage_dataset_facet (
    dataset_namespace text        NOT NULL,
    dataset_name      text        NOT NULL,
    job_namespace     text        NOT NULL,      -- the job whose events wrote these facets
    job_name          text        NOT NULL,
    facets            jsonb       NOT NULL DEFAULT '{}',  -- facets + input/outputFacets, latest event wins per facet
    created_at        timestamptz NOT NULL,      -- earliest event time of the job naming the dataset
    updated_at        timestamptz NOT NULL,      -- latest one
    PRIMARY KEY (dataset_namespace, dataset_name, job_namespace, job_name)
);
CREATE INDEX lineage_dataset_facet_job ON lineage_dataset_facet (job_namespace, job_name);
CREATE INDEX lineage_dataset_facet_updated ON lineage_dataset_facet (updated_at);

WITH io AS (
    SELECT e.id, e.event_time, e.job_namespace, e.job_name, k.ord, x.n,
           d->>'namespace' AS dataset_namespace, d->>'name' AS dataset_name,
           (CASE WHEN jsonb_typeof(d->'facets') = 'object' THEN d->'facets' ELSE '{}' END)
           || (CASE WHEN jsonb_typeof(d->k.io_facets) = 'object' THEN d->k.io_facets ELSE '{}' END) AS facets
    FROM lineage_event e
    CROSS JOIN (VALUES (1, 'inputs', 'inputFacets'), (2, 'outputs', 'outputFacets')) AS k(ord, list, io_facets)
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(e.payload->k.list) = 'array' THEN e.payload->k.list ELSE '[]' END) WITH ORDINALITY AS x(d, n)
    WHERE jsonb_typeof(d) = 'object' AND d->>'namespace' <> '' AND d->>'name' <> ''
),
latest AS (
    SELECT DISTINCT ON (io.dataset_namespace, io.dataset_name, io.job_namespace, io.job_name, f.key)
           io.dataset_namespace, io.dataset_name, io.job_namespace, io.job_name, f.key, f.value
    FROM io CROSS JOIN LATERAL jsonb_each(io.facets) AS f
    ORDER BY io.dataset_namespace, io.dataset_name, io.job_namespace, io.job_name, f.key,
             io.event_time DESC, io.id DESC, io.ord DESC, io.n DESC
),
merged AS (
    SELECT dataset_namespace, dataset_name, job_namespace, job_name, jsonb_object_agg(key, value) AS facets
    FROM latest GROUP BY 1, 2, 3, 4
)
INSERT INTO lineage_dataset_facet (dataset_namespace, dataset_name, job_namespace, job_name, facets, created_at, updated_at)
SELECT p.dataset_namespace, p.dataset_name, p.job_namespace, p.job_name, coalesce(m.facets, '{}'), p.created_at, p.updated_at
FROM (SELECT dataset_namespace, dataset_name, job_namespace, job_name,
             min(event_time) AS created_at, max(event_time) AS updated_at
      FROM io GROUP BY 1, 2, 3, 4) p
LEFT JOIN merged m USING (dataset_namespace, dataset_name, job_namespace, job_name);

INSERT INTO lineage_dataset_facet (dataset_namespace, dataset_name, job_namespace, job_name, created_at, updated_at)
SELECT dataset_namespace, dataset_name, job_namespace, job_name, min(updated_at), max(updated_at)
FROM lineage_edge GROUP BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;

ALTER TABLE lineage_dataset RENAME COLUMN facets TO legacy_facets;
ALTER TABLE lineage_dataset RENAME COLUMN lifecycle_state TO legacy_lifecycle_state;
COMMENT ON COLUMN lineage_dataset.legacy_facets IS
    'facets of every job merged, as stored before 0002_dataset_facets_per_job; no longer written or read';
COMMENT ON COLUMN lineage_dataset.legacy_lifecycle_state IS
    'as stored before 0002_dataset_facets_per_job; no longer written or read (see lineage_dataset_facet)';
