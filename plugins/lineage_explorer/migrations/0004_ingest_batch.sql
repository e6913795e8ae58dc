-- The group commit's batch in one set-based call (issue 23, 1,000 events/s).
--
-- lineage_ingest_event() (0003) stores one event per call: ~0.9 ms of PostgreSQL CPU per event,
-- most of it seven upserts per event, each row of a shared dataset, a job or a run rewritten
-- once per event. lineage_ingest_batch() stores a whole batch with one statement per table:
-- the batch's events are aggregated per row first (a job, a run, a dataset, a facet row, an
-- edge, a version is written once per batch), with the result of storing them one at a time,
-- in order, through lineage_ingest_event():
--
-- - order-free columns (created_at/updated_at, started_at/ended_at, edges, datasets) are the
--   min/max over the batch; "the latest non-null wins" columns (dag_id, team, location, ...)
--   the last non-null in arrival order;
-- - what depends on event time order (facets merged "a later event wins", run state, current
--   versions) is folded in arrival order, which equals the one-at-a-time result when every
--   event is not older than what is stored for its row and a job's events in the batch are in
--   time order (the usual case: a run reports START, RUNNING..., COMPLETE). Otherwise the
--   call gives up (NULL, nothing written: an event older than its job's stored row, whose
--   updated_at bounds every row the job's events write, or a job's events out of order in the
--   batch; SQLSTATE LN410 from a row's guard when a concurrent writer made it newer meanwhile)
--   and the caller stores the batch one event at a time, as before.
--
-- Nothing the one-at-a-time path could refuse goes through here either: a run id stored (or
-- in the batch) for another job, or a parent/root run of another job or of another team than
-- the key's, makes the call return NULL before it writes anything. A run another writer
-- claimed for another job in between (the run upsert's WHERE) raises LN409, as before.

-- Raises LN410 (the batch must be stored one event at a time); typed like its argument.
CREATE FUNCTION lineage_batch_fallback(anyelement) RETURNS anyelement
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'an event older than what is stored: the batch is stored one event at a time'
        USING ERRCODE = 'LN410';
END
$$;

-- One call per batch. The arrays are the batch's events in arrival order, the arguments of
-- lineage_ingest_event() one element per event. Returns per event true (stored) or false
-- (already stored, or an earlier event of the batch with the same run id, type and time), or
-- NULL when nothing was written and the batch must go one event at a time.
CREATE FUNCTION lineage_ingest_batch(
    p_run_ids uuid[], p_event_types text[], p_event_times timestamptz[], p_job_nss text[], p_job_names text[],
    p_key_teams text[], p_payloads jsonb[], p_dag_ids text[], p_owner_teams text[], p_parent_job_names text[],
    p_states text[], p_parents jsonb[]
) RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
    v_stored bigint[];
    v_runs int;
    v_expected int;
BEGIN
    -- 1. what the one-at-a-time path could refuse, or a job's events out of time order: NULL
    IF EXISTS (
        WITH ev AS (
            SELECT * FROM unnest(p_run_ids, p_job_nss, p_job_names, p_event_times, p_owner_teams, p_key_teams, p_parents)
                WITH ORDINALITY AS e(run_id, job_ns, job_name, t, owner_team, key_team, parents, n)
        ),
        par AS (
            SELECT ev.key_team, p.run_id, p.namespace, p.name FROM ev
            CROSS JOIN LATERAL jsonb_to_recordset(ev.parents) AS p(label text, run_id uuid, namespace text, name text)
        )
        SELECT 1 FROM ev JOIN lineage_run r ON r.run_id = ev.run_id
            WHERE (r.job_namespace, r.job_name) IS DISTINCT FROM (ev.job_ns, ev.job_name)
        UNION ALL
        -- an event older than its job's latest (every row a job's events write is at most as new)
        SELECT 1 FROM ev JOIN lineage_job j ON j.namespace = ev.job_ns AND j.name = ev.job_name
            WHERE ev.t < j.updated_at
        UNION ALL
        SELECT 1 FROM ev GROUP BY run_id HAVING count(DISTINCT (job_ns, job_name)) > 1
        UNION ALL
        SELECT 1 FROM (SELECT t < max(t) OVER (PARTITION BY job_ns, job_name ORDER BY n
                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS late FROM ev) x
            WHERE late
        UNION ALL
        SELECT 1 FROM par WHERE
            EXISTS (SELECT 1 FROM lineage_run r LEFT JOIN lineage_job j ON j.namespace = r.job_namespace AND j.name = r.job_name
                    WHERE r.run_id = par.run_id
                      AND ((r.job_namespace, r.job_name) IS DISTINCT FROM (par.namespace, par.name)
                           OR (par.key_team IS NOT NULL AND j.team IS DISTINCT FROM par.key_team)))
            OR EXISTS (SELECT 1 FROM ev WHERE ev.run_id = par.run_id
                       AND (ev.job_ns, ev.job_name) IS DISTINCT FROM (par.namespace, par.name))
            OR (par.key_team IS NOT NULL
                AND EXISTS (SELECT 1 FROM ev WHERE (ev.job_ns, ev.job_name) = (par.namespace, par.name)
                            AND ev.owner_team IS DISTINCT FROM par.key_team))
    ) THEN
        RETURN NULL;
    END IF;

    -- 2. the raw events, once each (the first of equal ones in the batch)
    WITH ins AS (
        INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name, team, payload)
        SELECT run_id, event_type, t, job_ns, job_name, key_team, payload
        FROM unnest(p_run_ids, p_event_types, p_event_times, p_job_nss, p_job_names, p_key_teams, p_payloads)
            WITH ORDINALITY AS e(run_id, event_type, t, job_ns, job_name, key_team, payload, n)
        ORDER BY n
        ON CONFLICT ON CONSTRAINT lineage_event_once DO NOTHING
        RETURNING run_id, event_type, event_time
    )
    SELECT array_agg(s.n) INTO v_stored FROM (
        SELECT min(e.n) AS n FROM unnest(p_run_ids, p_event_types, p_event_times) WITH ORDINALITY AS e(run_id, event_type, t, n)
        JOIN ins ON ins.run_id = e.run_id AND ins.event_type = e.event_type AND ins.event_time = e.t
        GROUP BY e.run_id, e.event_type, e.t
    ) s;
    IF v_stored IS NULL THEN
        RETURN array_fill(false, ARRAY[cardinality(p_run_ids)]);
    END IF;

    -- 3. the derived rows, one upsert per table for the stored events
    WITH se AS MATERIALIZED (
        SELECT e.*,
               lineage_job_version_of(e.job_ns, e.job_name, e.payload) AS job_version,
               CASE WHEN jsonb_typeof(e.payload #> '{job,facets}') = 'object' THEN e.payload #> '{job,facets}'
                    ELSE '{}' END AS job_facets,
               CASE WHEN jsonb_typeof(e.payload #> '{run,facets}') = 'object' THEN e.payload #> '{run,facets}'
                    ELSE '{}' END AS run_facets
        FROM unnest(p_run_ids, p_event_types, p_event_times, p_job_nss, p_job_names, p_payloads, p_dag_ids,
                    p_owner_teams, p_parent_job_names, p_states)
            WITH ORDINALITY AS e(run_id, event_type, t, job_ns, job_name, payload, dag_id, owner_team, parent_job_name,
                                 state, n)
        WHERE e.n = ANY(v_stored)
    ),
    io AS MATERIALIZED (
        SELECT se.n, se.t, se.run_id, se.job_ns, se.job_name, k.ord, x.i, k.direction,
               d->>'namespace' AS namespace, d->>'name' AS name,
               (CASE WHEN jsonb_typeof(d->'facets') = 'object' THEN d->'facets' ELSE '{}' END)
               || (CASE WHEN jsonb_typeof(d->k.io_facets) = 'object' THEN d->k.io_facets ELSE '{}' END) AS facets
        FROM se
        CROSS JOIN (VALUES (1, 'in', 'inputs', 'inputFacets'), (2, 'out', 'outputs', 'outputFacets'))
             AS k(ord, direction, list, io_facets)
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(se.payload->k.list) = 'array' THEN se.payload->k.list ELSE '[]' END)
            WITH ORDINALITY AS x(d, i)
    ),
    -- per event and dataset: the facets the event gives it (inputs before outputs, the last entry winning)
    ds AS MATERIALIZED (
        SELECT n, t, job_ns, job_name, namespace, name, lineage_jsonb_merge(facets ORDER BY ord, i) AS facets
        FROM io GROUP BY n, t, job_ns, job_name, namespace, name
    ),
    ver AS MATERIALIZED (
        SELECT se.n, se.t, se.run_id, se.job_ns, se.job_name, v.*
        FROM se CROSS JOIN LATERAL lineage_dataset_versions_of(se.job_ns, se.job_name, se.run_id, se.payload) v
    ),
    -- per event: the lists lineage_ingest_event() gives a new run
    io_list AS (
        SELECT n,
               coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name) ORDER BY i)
                        FILTER (WHERE direction = 'in'), '[]') AS inputs,
               coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name) ORDER BY i)
                        FILTER (WHERE direction = 'out'), '[]') AS outputs
        FROM io GROUP BY n
    ),
    ver_list AS (
        SELECT n,
               coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name, 'version', version)
                                  ORDER BY namespace, name) FILTER (WHERE direction = 'in'), '[]') AS inputs,
               coalesce(jsonb_agg(jsonb_build_object('namespace', namespace, 'name', name, 'version', version)
                                  ORDER BY namespace, name) FILTER (WHERE direction = 'out'), '[]') AS outputs
        FROM ver GROUP BY n
    ),
    run_agg AS (
        SELECT se.run_id, min(se.job_ns) AS job_ns, min(se.job_name) AS job_name, count(*) AS events,
               (array_agg(se.state ORDER BY se.n DESC) FILTER (WHERE se.state IS NOT NULL))[1] AS state,
               (array_agg(se.t ORDER BY se.n DESC) FILTER (WHERE se.state IS NOT NULL))[1] AS state_time,
               (array_agg(se.payload #>> '{run,facets,nominalTime,nominalStartTime}' ORDER BY se.n DESC)
                   FILTER (WHERE se.payload #>> '{run,facets,nominalTime,nominalStartTime}' IS NOT NULL))[1] AS nominal_start,
               (array_agg(se.payload #>> '{run,facets,nominalTime,nominalEndTime}' ORDER BY se.n DESC)
                   FILTER (WHERE se.payload #>> '{run,facets,nominalTime,nominalEndTime}' IS NOT NULL))[1] AS nominal_end,
               min(CASE WHEN se.event_type = 'START' THEN se.t END) AS started_at,
               max(CASE WHEN se.state IN ('COMPLETED', 'FAILED', 'ABORTED') THEN se.t END) AS ended_at,
               lineage_jsonb_merge(se.run_facets ORDER BY se.n) AS facets,
               (array_agg(se.job_version ORDER BY se.n DESC))[1] AS job_version,
               array_agg(coalesce(il.inputs, '[]') ORDER BY se.n) AS inputs,
               array_agg(coalesce(il.outputs, '[]') ORDER BY se.n) AS outputs,
               array_agg(coalesce(vl.inputs, '[]') ORDER BY se.n) AS input_versions,
               array_agg(coalesce(vl.outputs, '[]') ORDER BY se.n) AS output_versions,
               min(se.t) AS created_at, max(se.t) AS updated_at
        FROM se LEFT JOIN io_list il ON il.n = se.n LEFT JOIN ver_list vl ON vl.n = se.n
        GROUP BY se.run_id
    ),
    job AS (
        INSERT INTO lineage_job AS j (namespace, name, dag_id, team, parent_job_name, description, location, facets,
                                      current_version, created_at, updated_at)
        SELECT job_ns, job_name,
               (array_agg(dag_id ORDER BY n DESC) FILTER (WHERE dag_id IS NOT NULL))[1],
               (array_agg(owner_team ORDER BY n DESC) FILTER (WHERE owner_team IS NOT NULL))[1],
               (array_agg(parent_job_name ORDER BY n DESC) FILTER (WHERE parent_job_name IS NOT NULL))[1],
               (array_agg(job_facets #>> '{documentation,description}' ORDER BY n DESC)
                   FILTER (WHERE job_facets #>> '{documentation,description}' IS NOT NULL))[1],
               (array_agg(job_facets #>> '{sourceCodeLocation,url}' ORDER BY n DESC)
                   FILTER (WHERE job_facets #>> '{sourceCodeLocation,url}' IS NOT NULL))[1],
               lineage_jsonb_merge(job_facets ORDER BY n),
               (array_agg(job_version ORDER BY n DESC))[1],
               min(t), max(t)
        FROM se GROUP BY job_ns, job_name ORDER BY 1, 2
        ON CONFLICT (namespace, name) DO UPDATE SET
            dag_id = coalesce(excluded.dag_id, j.dag_id), team = coalesce(excluded.team, j.team),
            parent_job_name = coalesce(excluded.parent_job_name, j.parent_job_name),
            description = coalesce(excluded.description, j.description),
            location = coalesce(excluded.location, j.location),
            -- the batch's events (created_at: the earliest) all as late as the row or later, else LN410
            facets = CASE WHEN excluded.created_at >= j.updated_at THEN j.facets || excluded.facets
                          ELSE lineage_batch_fallback(j.facets) END,
            current_version = excluded.current_version,
            created_at = least(j.created_at, excluded.created_at),
            updated_at = greatest(j.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    run AS (
        INSERT INTO lineage_run AS r (run_id, job_namespace, job_name, state, state_time, nominal_start_time,
                                      nominal_end_time, started_at, ended_at, facets, inputs, outputs, job_version,
                                      input_versions, output_versions, created_at, updated_at)
        SELECT run_id, job_ns, job_name, coalesce(state, 'NEW'), coalesce(state_time, created_at),
               nominal_start::timestamptz, nominal_end::timestamptz, started_at, ended_at, facets,
               CASE WHEN events = 1 THEN inputs[1]
                    ELSE (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM unnest(inputs) l, jsonb_array_elements(l) x) END,
               CASE WHEN events = 1 THEN outputs[1]
                    ELSE (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM unnest(outputs) l, jsonb_array_elements(l) x) END,
               job_version,
               CASE WHEN events = 1 THEN input_versions[1]
                    ELSE (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                          FROM unnest(input_versions) l, jsonb_array_elements(l) x) END,
               CASE WHEN events = 1 THEN output_versions[1]
                    ELSE (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                          FROM unnest(output_versions) l, jsonb_array_elements(l) x) END,
               created_at, updated_at
        FROM run_agg ORDER BY run_id
        ON CONFLICT (run_id) DO UPDATE SET
            -- 'NEW': no event of the batch had a state (the events' states are never NEW)
            state = CASE WHEN excluded.state <> 'NEW' THEN excluded.state ELSE r.state END,
            state_time = CASE WHEN excluded.state <> 'NEW' THEN excluded.state_time ELSE r.state_time END,
            nominal_start_time = coalesce(excluded.nominal_start_time, r.nominal_start_time),
            nominal_end_time = coalesce(excluded.nominal_end_time, r.nominal_end_time),
            started_at = coalesce(least(r.started_at, excluded.started_at), r.started_at, excluded.started_at),
            ended_at = coalesce(greatest(r.ended_at, excluded.ended_at), r.ended_at, excluded.ended_at),
            facets = CASE WHEN excluded.created_at >= r.updated_at THEN r.facets || excluded.facets
                          ELSE lineage_batch_fallback(r.facets) END,
            inputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.inputs || excluded.inputs) x),
            outputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.outputs || excluded.outputs) x),
            job_version = excluded.job_version,
            input_versions = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                              FROM jsonb_array_elements(r.input_versions || excluded.input_versions) x),
            output_versions = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]')
                               FROM jsonb_array_elements(r.output_versions || excluded.output_versions) x),
            created_at = least(r.created_at, excluded.created_at),
            updated_at = greatest(r.updated_at, excluded.updated_at)
        -- a run of another job stored since the check above (a concurrent writer): LN409 below
        WHERE r.job_namespace = excluded.job_namespace AND r.job_name = excluded.job_name
        RETURNING 1
    ),
    jv AS (
        INSERT INTO lineage_job_version AS v (namespace, name, version, location, facets, created_at, updated_at)
        SELECT job_ns, job_name, job_version,
               (array_agg(job_facets #>> '{sourceCodeLocation,url}' ORDER BY n DESC)
                   FILTER (WHERE job_facets #>> '{sourceCodeLocation,url}' IS NOT NULL))[1],
               lineage_job_version_facets((array_agg(payload ORDER BY n))[1]),
               min(t), max(t)
        FROM se GROUP BY job_ns, job_name, job_version ORDER BY 1, 2, 3
        ON CONFLICT (namespace, name, version) DO UPDATE SET
            location = coalesce(excluded.location, v.location),
            created_at = least(v.created_at, excluded.created_at),
            updated_at = greatest(v.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    dataset AS (
        INSERT INTO lineage_dataset AS d (namespace, name, created_at, updated_at)
        SELECT namespace, name, min(t), max(t) FROM ds GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (namespace, name) DO UPDATE SET created_at = least(d.created_at, excluded.created_at),
            updated_at = greatest(d.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    facet AS (
        INSERT INTO lineage_dataset_facet AS f (dataset_namespace, dataset_name, job_namespace, job_name, facets,
                                                created_at, updated_at)
        SELECT namespace, name, job_ns, job_name, lineage_jsonb_merge(facets ORDER BY n), min(t), max(t)
        FROM ds GROUP BY namespace, name, job_ns, job_name ORDER BY 1, 2, 3, 4
        ON CONFLICT (dataset_namespace, dataset_name, job_namespace, job_name) DO UPDATE SET
            facets = CASE WHEN excluded.created_at >= f.updated_at THEN f.facets || excluded.facets
                          ELSE lineage_batch_fallback(f.facets) END,
            created_at = least(f.created_at, excluded.created_at),
            updated_at = greatest(f.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    edge AS (
        INSERT INTO lineage_edge AS e (job_namespace, job_name, direction, dataset_namespace, dataset_name, updated_at)
        SELECT job_ns, job_name, direction, namespace, name, max(t) FROM io GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (job_namespace, job_name, direction, dataset_namespace, dataset_name) DO UPDATE SET
            updated_at = greatest(e.updated_at, excluded.updated_at)
        RETURNING 1
    ),
    version AS (
        INSERT INTO lineage_dataset_version AS v (dataset_namespace, dataset_name, version, job_namespace, job_name,
                                                  run_id, direction, fields, facets, lifecycle_state,
                                                  created_at, updated_at)
        SELECT namespace, name, version, (array_agg(job_ns ORDER BY n))[1], (array_agg(job_name ORDER BY n))[1],
               (array_agg(CASE WHEN direction = 'out' THEN run_id END ORDER BY n))[1],
               (array_agg(direction ORDER BY n))[1], (array_agg(fields ORDER BY n))[1],
               lineage_jsonb_merge(facets ORDER BY n),
               (array_agg(lifecycle_state ORDER BY n DESC) FILTER (WHERE lifecycle_state IS NOT NULL))[1],
               min(t), max(t)
        FROM ver GROUP BY namespace, name, version ORDER BY 1, 2, 3
        ON CONFLICT (dataset_namespace, dataset_name, version) DO UPDATE SET
            facets = CASE WHEN excluded.created_at >= v.updated_at THEN v.facets || excluded.facets
                          ELSE lineage_batch_fallback(v.facets) END,
            lifecycle_state = coalesce(excluded.lifecycle_state, v.lifecycle_state),
            created_at = least(v.created_at, excluded.created_at),
            updated_at = greatest(v.updated_at, excluded.updated_at)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM run_agg) INTO v_runs, v_expected;
    IF v_runs <> v_expected THEN
        RAISE EXCEPTION 'a run of the batch was stored for another job meanwhile; a run belongs to one job'
            USING ERRCODE = 'LN409';
    END IF;
    RETURN ARRAY(SELECT n = ANY(v_stored) FROM generate_series(1, cardinality(p_run_ids)) n);
END
$$;
