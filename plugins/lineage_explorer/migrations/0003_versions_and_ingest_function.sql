-- Versions like Marquez's, and the ingest in one server-side call (issue 23).
--
-- Job versions: a job's version is derived from what defines the code it runs, as the provider
-- reports it: the DAG's version (the ``airflow``/``airflowDagRun`` run facets' dagRun
-- ``dag_version_id`` and ``dag_bundle_version``) and the job's ``sourceCodeLocation`` and
-- ``sourceCode`` facets. Same inputs, same version (md5 of them as a uuid), so a replay or
-- this upgrade gives the ids ingest gives.
--
-- Dataset versions: one per (dataset, writing run, schema) for a run's outputs; a new version
-- when the schema facet or the writing run changes. A job that only reads a dataset records
-- the version it saw (dataset, reading job, schema), with no run. Every version row belongs to
-- the one job whose events made it, so a reader sees only the versions of the jobs it may see.
--
-- lineage_ingest_event(): what LineageStore._ingest did in seven statements (the run/parent
-- checks, raw event, job, run, datasets, per-job facets, edges), plus the versions, in one
-- call: one round trip per event, so many events can share a transaction (group commit).
-- The rules are unchanged: unique (run id, event type, event time); a run belongs to one job
-- (checked first, and re-checked by the run upsert: SQLSTATE LN409 when a concurrent event
-- claimed the run in between); state and facets by event time.
--
-- The upgrade fills versions for what is stored, from the raw events, with the same functions.

ALTER TABLE lineage_job ADD COLUMN current_version uuid;
ALTER TABLE lineage_run ADD COLUMN job_version uuid;
ALTER TABLE lineage_run ADD COLUMN input_versions jsonb NOT NULL DEFAULT '[]';   -- [{namespace, name, version}]
ALTER TABLE lineage_run ADD COLUMN output_versions jsonb NOT NULL DEFAULT '[]';

CREATE TABLE lineage_job_version (
    namespace  text        NOT NULL,
    name       text        NOT NULL,
    version    uuid        NOT NULL,
    location   text,
    facets     jsonb       NOT NULL DEFAULT '{}',   -- what the version was derived from
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE lineage_dataset_version (
    dataset_namespace text        NOT NULL,
    dataset_name      text        NOT NULL,
    version           uuid        NOT NULL,
    job_namespace     text        NOT NULL,   -- the job whose event made this version
    job_name          text        NOT NULL,
    run_id            uuid,                   -- the writing run (NULL: a version a reading job saw)
    direction         text        NOT NULL CHECK (direction IN ('in', 'out')),
    fields            jsonb       NOT NULL DEFAULT '[]',   -- the schema facet's fields
    facets            jsonb       NOT NULL DEFAULT '{}',   -- the dataset's facets in that event, latest wins
    lifecycle_state   text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (dataset_namespace, dataset_name, version)
);
CREATE INDEX lineage_dataset_version_dataset ON lineage_dataset_version (dataset_namespace, dataset_name, created_at DESC);
-- a dataset's latest version among those of the jobs a reader may see
CREATE INDEX lineage_dataset_version_job ON lineage_dataset_version
    (dataset_namespace, dataset_name, job_namespace, job_name, created_at DESC);
CREATE INDEX lineage_run_job_version ON lineage_run (job_namespace, job_name, job_version, created_at DESC);
CREATE INDEX lineage_dataset_version_run ON lineage_dataset_version (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX lineage_dataset_version_created ON lineage_dataset_version (created_at);

-- Every event updates rows' updated_at (runs, versions, edges, per-job facets): with no index
-- on it, those updates can stay on their page without touching any index (heap-only tuples).
-- Retention finds old runs and versions by created_at instead (updated_at >= created_at, so
-- "created_at < cutoff AND updated_at < cutoff" is "updated_at < cutoff"); edges, per-job
-- facets and job versions are a few rows per job, read whole.
DROP INDEX lineage_run_updated;
CREATE INDEX lineage_run_created ON lineage_run (created_at);
DROP INDEX lineage_dataset_facet_updated;
ALTER TABLE lineage_run SET (fillfactor = 85);
ALTER TABLE lineage_job SET (fillfactor = 50);
ALTER TABLE lineage_edge SET (fillfactor = 70);
ALTER TABLE lineage_dataset SET (fillfactor = 70);
ALTER TABLE lineage_dataset_facet SET (fillfactor = 70);
ALTER TABLE lineage_job_version SET (fillfactor = 70);

-- The version of a job as an event describes it.
CREATE FUNCTION lineage_job_version_of(p_job_ns text, p_job_name text, p_payload jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT md5(jsonb_build_array(
        p_job_ns, p_job_name,
        coalesce(p_payload #>> '{run,facets,airflow,dagRun,dag_version_id}',
                 p_payload #>> '{run,facets,airflowDagRun,dagRun,dag_version_id}'),
        coalesce(p_payload #>> '{run,facets,airflow,dagRun,dag_bundle_version}',
                 p_payload #>> '{run,facets,airflowDagRun,dagRun,dag_bundle_version}'),
        p_payload #> '{job,facets,sourceCodeLocation,url}',
        p_payload #> '{job,facets,sourceCode,sourceCode}')::text)::uuid
$$;

-- What the job version was derived from (shown with it).
CREATE FUNCTION lineage_job_version_facets(p_payload jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'dagVersionId', coalesce(p_payload #>> '{run,facets,airflow,dagRun,dag_version_id}',
                                 p_payload #>> '{run,facets,airflowDagRun,dagRun,dag_version_id}'),
        'dagVersionNumber', coalesce(p_payload #> '{run,facets,airflow,dagRun,dag_version_number}',
                                     p_payload #> '{run,facets,airflowDagRun,dagRun,dag_version_number}'),
        'dagBundleVersion', coalesce(p_payload #>> '{run,facets,airflow,dagRun,dag_bundle_version}',
                                     p_payload #>> '{run,facets,airflowDagRun,dagRun,dag_bundle_version}'),
        'sourceCodeLocation', p_payload #> '{job,facets,sourceCodeLocation}',
        'sourceCode', p_payload #> '{job,facets,sourceCode}'))
$$;

-- The dataset versions an event names: its outputs (one per writing run and schema) and its
-- inputs (one per reading job and schema). Within an event the last entry naming a dataset
-- in a direction wins, as for the per-job facets.
CREATE FUNCTION lineage_dataset_versions_of(p_job_ns text, p_job_name text, p_run_id uuid, p_payload jsonb)
RETURNS TABLE (direction text, namespace text, name text, version uuid, fields jsonb, facets jsonb,
               lifecycle_state text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (x.direction, x.namespace, x.name)
           x.direction, x.namespace, x.name,
           md5(jsonb_build_array(x.namespace, x.name, x.direction,
               CASE WHEN x.direction = 'out' THEN p_run_id::text ELSE p_job_ns || ':' || p_job_name END,
               x.fields)::text)::uuid,
           x.fields, x.facets, x.facets #>> '{lifecycleStateChange,lifecycleStateChange}'
    FROM (
        SELECT k.direction, d->>'namespace' AS namespace, d->>'name' AS name, n,
               CASE WHEN jsonb_typeof(d #> '{facets,schema,fields}') = 'array'
                    THEN d #> '{facets,schema,fields}' ELSE '[]' END AS fields,
               (CASE WHEN jsonb_typeof(d->'facets') = 'object' THEN d->'facets' ELSE '{}' END)
               || (CASE WHEN jsonb_typeof(d->k.io_facets) = 'object' THEN d->k.io_facets ELSE '{}' END) AS facets
        FROM (VALUES ('in', 'inputs', 'inputFacets'), ('out', 'outputs', 'outputFacets')) AS k(direction, list, io_facets)
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(p_payload->k.list) = 'array' THEN p_payload->k.list ELSE '[]' END)
            WITH ORDINALITY AS e(d, n)
        WHERE jsonb_typeof(d) = 'object' AND d->>'namespace' <> '' AND d->>'name' <> ''
    ) x
    ORDER BY x.direction, x.namespace, x.name, x.n DESC
$$;

-- A shallow merge of jsonb objects in order, the later key winning (Python's dict.update).
CREATE AGGREGATE lineage_jsonb_merge(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}');

-- One event, checks and writes. Returns {'stored'}, {'duplicate'}, or
-- {'refused', <status>, <what: run|parent|parent.root>, <run id>, <facet's job namespace>, <name>}
-- (nothing written). p_parents: [{label, run_id, namespace, name}] from the parent facet (and
-- its root), as RunEvent.parent_runs() read them. Everything else is read from the payload here
-- (in C, not in the api-server's Python): the job's and run's facets, the datasets with the
-- facets this event gives each (facets, then input/outputFacets; inputs before outputs, the
-- last entry naming a dataset winning per facet), the edges and the versions.
CREATE FUNCTION lineage_ingest_event(
    p_run_id uuid, p_event_type text, p_event_time timestamptz, p_job_ns text, p_job_name text,
    p_key_team text, p_payload jsonb, p_dag_id text, p_owner_team text, p_parent_job_name text,
    p_state text, p_parents jsonb
) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    own record;
    par record;
    hit record;
    v_job_version uuid;
    v_job_facets jsonb;
    v_run_rows int;
BEGIN
    SELECT r.job_namespace, r.job_name INTO own FROM lineage_run r WHERE r.run_id = p_run_id;
    IF FOUND AND (own.job_namespace, own.job_name) IS DISTINCT FROM (p_job_ns, p_job_name) THEN
        RETURN ARRAY['refused', '409', 'run', p_run_id::text, p_job_ns, p_job_name];
    END IF;
    IF jsonb_array_length(p_parents) > 0 THEN
        FOR par IN SELECT * FROM jsonb_to_recordset(p_parents) AS x(label text, run_id uuid, namespace text, name text) LOOP
            SELECT r.job_namespace, r.job_name, j.team INTO hit FROM lineage_run r
                LEFT JOIN lineage_job j ON j.namespace = r.job_namespace AND j.name = r.job_name
                WHERE r.run_id = par.run_id;
            IF FOUND THEN
                IF (hit.job_namespace, hit.job_name) IS DISTINCT FROM (par.namespace, par.name) THEN
                    RETURN ARRAY['refused', '409', par.label, par.run_id::text, par.namespace, par.name];
                END IF;
                IF p_key_team IS NOT NULL AND hit.team IS DISTINCT FROM p_key_team THEN
                    RETURN ARRAY['refused', '403', par.label, par.run_id::text, par.namespace, par.name];
                END IF;
            END IF;
        END LOOP;
    END IF;

    INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name, team, payload)
    VALUES (p_run_id, p_event_type, p_event_time, p_job_ns, p_job_name, p_key_team, p_payload)
    ON CONFLICT ON CONSTRAINT lineage_event_once DO NOTHING;
    IF NOT FOUND THEN
        RETURN ARRAY['duplicate'];
    END IF;

    v_job_version := lineage_job_version_of(p_job_ns, p_job_name, p_payload);
    v_job_facets := CASE WHEN jsonb_typeof(p_payload #> '{job,facets}') = 'object' THEN p_payload #> '{job,facets}'
                         ELSE '{}' END;
    WITH io AS MATERIALIZED (
        SELECT k.ord, e.n, k.direction, d->>'namespace' AS namespace, d->>'name' AS name,
               (CASE WHEN jsonb_typeof(d->'facets') = 'object' THEN d->'facets' ELSE '{}' END)
               || (CASE WHEN jsonb_typeof(d->k.io_facets) = 'object' THEN d->k.io_facets ELSE '{}' END) AS facets
        FROM (VALUES (1, 'in', 'inputs', 'inputFacets'), (2, 'out', 'outputs', 'outputFacets'))
             AS k(ord, direction, list, io_facets)
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(p_payload->k.list) = 'array' THEN p_payload->k.list ELSE '[]' END)
            WITH ORDINALITY AS e(d, n)
    ),
    ds AS MATERIALIZED (
        SELECT namespace, name, lineage_jsonb_merge(facets ORDER BY ord, n) AS facets FROM io GROUP BY namespace, name
    ),
    ver AS MATERIALIZED (
        SELECT * FROM lineage_dataset_versions_of(p_job_ns, p_job_name, p_run_id, p_payload)
    ),
    job AS (
        INSERT INTO lineage_job AS j (namespace, name, dag_id, team, parent_job_name, description, location, facets,
                                      current_version, created_at, updated_at)
        VALUES (p_job_ns, p_job_name, p_dag_id, p_owner_team, p_parent_job_name,
                v_job_facets #>> '{documentation,description}', v_job_facets #>> '{sourceCodeLocation,url}',
                v_job_facets, v_job_version, p_event_time, p_event_time)
        ON CONFLICT (namespace, name) DO UPDATE SET
            dag_id = coalesce(excluded.dag_id, j.dag_id), team = coalesce(excluded.team, j.team),
            parent_job_name = coalesce(excluded.parent_job_name, j.parent_job_name),
            description = coalesce(excluded.description, j.description),
            location = coalesce(excluded.location, j.location),
            facets = CASE WHEN excluded.updated_at >= j.updated_at THEN j.facets || excluded.facets
                          ELSE excluded.facets || j.facets END,
            current_version = CASE WHEN excluded.updated_at >= j.updated_at OR j.current_version IS NULL
                                   THEN excluded.current_version ELSE j.current_version END,
            created_at = least(j.created_at, excluded.created_at),
            updated_at = greatest(j.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    run AS (
        INSERT INTO lineage_run AS r (run_id, job_namespace, job_name, state, state_time, nominal_start_time,
                                      nominal_end_time, started_at, ended_at, facets, inputs, outputs, job_version,
                                      input_versions, output_versions, created_at, updated_at)
        VALUES (p_run_id, p_job_ns, p_job_name, coalesce(p_state, 'NEW'), p_event_time,
                (p_payload #>> '{run,facets,nominalTime,nominalStartTime}')::timestamptz,
                (p_payload #>> '{run,facets,nominalTime,nominalEndTime}')::timestamptz,
                CASE WHEN p_event_type = 'START' THEN p_event_time END,
                CASE WHEN p_state IN ('COMPLETED', 'FAILED', 'ABORTED') THEN p_event_time END,
                CASE WHEN jsonb_typeof(p_payload #> '{run,facets}') = 'object' THEN p_payload #> '{run,facets}'
                     ELSE '{}' END,
                (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name) ORDER BY n), '[]')
                 FROM io WHERE direction = 'in'),
                (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name) ORDER BY n), '[]')
                 FROM io WHERE direction = 'out'),
                v_job_version,
                (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name, 'version', version)
                                 ORDER BY namespace, name), '[]') FROM ver WHERE direction = 'in'),
                (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name, 'version', version)
                                 ORDER BY namespace, name), '[]') FROM ver WHERE direction = 'out'),
                p_event_time, p_event_time)
        ON CONFLICT (run_id) DO UPDATE SET
            state = CASE WHEN p_state IS NOT NULL AND excluded.state_time >= r.state_time
                         THEN excluded.state ELSE r.state END,
            state_time = CASE WHEN p_state IS NOT NULL AND excluded.state_time >= r.state_time
                              THEN excluded.state_time ELSE r.state_time END,
            nominal_start_time = coalesce(excluded.nominal_start_time, r.nominal_start_time),
            nominal_end_time = coalesce(excluded.nominal_end_time, r.nominal_end_time),
            started_at = coalesce(least(r.started_at, excluded.started_at), r.started_at, excluded.started_at),
            ended_at = coalesce(greatest(r.ended_at, excluded.ended_at), r.ended_at, excluded.ended_at),
            facets = CASE WHEN excluded.updated_at >= r.updated_at THEN r.facets || excluded.facets
                          ELSE excluded.facets || r.facets END,
            inputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.inputs || excluded.inputs) x),
            outputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.outputs || excluded.outputs) x),
            job_version = CASE WHEN excluded.updated_at >= r.updated_at OR r.job_version IS NULL
                               THEN excluded.job_version ELSE r.job_version END,
            input_versions = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                              FROM jsonb_array_elements(r.input_versions || excluded.input_versions) x),
            output_versions = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                               FROM jsonb_array_elements(r.output_versions || excluded.output_versions) x),
            created_at = least(r.created_at, excluded.created_at),
            updated_at = greatest(r.updated_at, excluded.updated_at)
        -- a run of another job stored since the check above (a concurrent event): nothing of this event stays
        WHERE r.job_namespace = excluded.job_namespace AND r.job_name = excluded.job_name
        RETURNING 1
    ),
    jv AS (
        INSERT INTO lineage_job_version AS v (namespace, name, version, location, facets, created_at, updated_at)
        VALUES (p_job_ns, p_job_name, v_job_version, v_job_facets #>> '{sourceCodeLocation,url}',
                lineage_job_version_facets(p_payload), p_event_time, p_event_time)
        ON CONFLICT (namespace, name, version) DO UPDATE SET
            location = coalesce(excluded.location, v.location),
            created_at = least(v.created_at, excluded.created_at),
            updated_at = greatest(v.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    dataset AS (
        INSERT INTO lineage_dataset AS d (namespace, name, created_at, updated_at)
        SELECT namespace, name, p_event_time, p_event_time FROM ds ORDER BY 1, 2
        ON CONFLICT (namespace, name) DO UPDATE SET created_at = least(d.created_at, excluded.created_at),
            updated_at = greatest(d.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    -- the facets this job reports for each dataset, on the (dataset, this job) row only
    facet AS (
        INSERT INTO lineage_dataset_facet AS f (dataset_namespace, dataset_name, job_namespace, job_name, facets,
                                                created_at, updated_at)
        SELECT namespace, name, p_job_ns, p_job_name, facets, p_event_time, p_event_time FROM ds ORDER BY 1, 2
        ON CONFLICT (dataset_namespace, dataset_name, job_namespace, job_name) DO UPDATE SET
            facets = CASE WHEN excluded.updated_at >= f.updated_at THEN f.facets || excluded.facets
                          ELSE excluded.facets || f.facets END,
            created_at = least(f.created_at, excluded.created_at),
            updated_at = greatest(f.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    edge AS (
        INSERT INTO lineage_edge AS e (job_namespace, job_name, direction, dataset_namespace, dataset_name, updated_at)
        SELECT DISTINCT p_job_ns, p_job_name, direction, namespace, name, p_event_time FROM io ORDER BY 3, 4, 5
        ON CONFLICT (job_namespace, job_name, direction, dataset_namespace, dataset_name) DO UPDATE SET
            updated_at = greatest(e.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    version AS (
        INSERT INTO lineage_dataset_version AS v (dataset_namespace, dataset_name, version, job_namespace, job_name,
                                                  run_id, direction, fields, facets, lifecycle_state,
                                                  created_at, updated_at)
        SELECT namespace, name, version, p_job_ns, p_job_name, CASE WHEN direction = 'out' THEN p_run_id END,
               direction, fields, facets, lifecycle_state, p_event_time, p_event_time
        FROM ver ORDER BY namespace, name, version
        ON CONFLICT (dataset_namespace, dataset_name, version) DO UPDATE SET
            facets = CASE WHEN excluded.updated_at >= v.updated_at THEN v.facets || excluded.facets
                          ELSE excluded.facets || v.facets END,
            lifecycle_state = CASE WHEN excluded.updated_at >= v.updated_at
                                   THEN coalesce(excluded.lifecycle_state, v.lifecycle_state)
                                   ELSE coalesce(v.lifecycle_state, excluded.lifecycle_state) END,
            created_at = least(v.created_at, excluded.created_at),
            updated_at = greatest(v.updated_at, excluded.updated_at)
        RETURNING 1
    )
    SELECT count(*) INTO v_run_rows FROM run;
    IF v_run_rows = 0 THEN
        RAISE EXCEPTION 'run % is already stored for another job; a run belongs to one job', p_run_id
            USING ERRCODE = 'LN409';
    END IF;
    RETURN ARRAY['stored'];
END
$$;

-- The upgrade: versions of what is stored, from the raw events, with the functions above.
WITH ev AS (
    SELECT e.*, lineage_job_version_of(e.job_namespace, e.job_name, e.payload) AS job_version FROM lineage_event e
)
INSERT INTO lineage_job_version (namespace, name, version, location, facets, created_at, updated_at)
SELECT DISTINCT ON (job_namespace, job_name, job_version) job_namespace, job_name, job_version,
       payload #>> '{job,facets,sourceCodeLocation,url}', lineage_job_version_facets(payload),
       min(event_time) OVER w, max(event_time) OVER w
FROM ev
WINDOW w AS (PARTITION BY job_namespace, job_name, job_version)
ORDER BY job_namespace, job_name, job_version, event_time DESC, id DESC;

UPDATE lineage_job j SET current_version = x.version FROM (
    SELECT DISTINCT ON (job_namespace, job_name) job_namespace, job_name,
           lineage_job_version_of(job_namespace, job_name, payload) AS version
    FROM lineage_event ORDER BY job_namespace, job_name, event_time DESC, id DESC
) x WHERE j.namespace = x.job_namespace AND j.name = x.job_name;

UPDATE lineage_run r SET job_version = x.version FROM (
    SELECT DISTINCT ON (run_id) run_id, lineage_job_version_of(job_namespace, job_name, payload) AS version
    FROM lineage_event ORDER BY run_id, event_time DESC, id DESC
) x WHERE r.run_id = x.run_id;

WITH v AS (
    SELECT e.id, e.run_id, e.event_time, e.job_namespace, e.job_name, x.*
    FROM lineage_event e CROSS JOIN LATERAL lineage_dataset_versions_of(e.job_namespace, e.job_name, e.run_id, e.payload) x
)
INSERT INTO lineage_dataset_version (dataset_namespace, dataset_name, version, job_namespace, job_name, run_id,
                                     direction, fields, facets, lifecycle_state, created_at, updated_at)
SELECT DISTINCT ON (namespace, name, version) namespace, name, version, job_namespace, job_name,
       CASE WHEN direction = 'out' THEN run_id END, direction, fields, facets,
       lifecycle_state, min(event_time) OVER w, max(event_time) OVER w
FROM v
WINDOW w AS (PARTITION BY namespace, name, version)
ORDER BY namespace, name, version, event_time DESC, id DESC;

UPDATE lineage_run r SET
    input_versions = coalesce(x.inputs, '[]'), output_versions = coalesce(x.outputs, '[]')
FROM (
    SELECT e.run_id,
           jsonb_agg(DISTINCT jsonb_build_object('namespace', v.namespace, 'name', v.name, 'version', v.version))
               FILTER (WHERE v.direction = 'in') AS inputs,
           jsonb_agg(DISTINCT jsonb_build_object('namespace', v.namespace, 'name', v.name, 'version', v.version))
               FILTER (WHERE v.direction = 'out') AS outputs
    FROM lineage_event e CROSS JOIN LATERAL lineage_dataset_versions_of(e.job_namespace, e.job_name, e.run_id, e.payload) v
    GROUP BY e.run_id
) x WHERE r.run_id = x.run_id;
