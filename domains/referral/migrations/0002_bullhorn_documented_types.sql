-- Bullhorn's documented field types (entityref.html, Candidate and JobOrder) and replayable
-- rejected records. See domains/referral/tests/contract/README.md for the audit.

-- JobOrder.isPublic is an Integer with three allowed values, not a boolean.
ALTER TABLE positions ALTER COLUMN is_public TYPE smallint
    USING CASE WHEN is_public THEN 1 WHEN NOT is_public THEN 0 END;
ALTER TABLE positions ADD CONSTRAINT positions_is_public_documented CHECK (is_public IN (-1, 0, 1));
ALTER TABLE positions ADD COLUMN publishing_status text GENERATED ALWAYS AS (
    CASE is_public WHEN 1 THEN 'published-approved' WHEN -1 THEN 'published-submitted'
                   WHEN 0 THEN 'not published' END) STORED;
COMMENT ON COLUMN positions.is_public IS
    'Bullhorn JobOrder.isPublic: 1 published-approved (on the job board), -1 published-submitted (awaiting approval), 0 not published; NULL when Bullhorn sends null';

-- JobOrder.isOpen may be null (documented without "Not null"): unknown, not open.
ALTER TABLE positions ALTER COLUMN is_open DROP NOT NULL;
ALTER TABLE positions ALTER COLUMN is_open DROP DEFAULT;
COMMENT ON COLUMN positions.is_open IS 'Bullhorn JobOrder.isOpen; NULL when Bullhorn sends null (matched as not open)';
COMMENT ON COLUMN positions.is_deleted IS 'Bullhorn JobOrder.isDeleted; a null from Bullhorn is stored as false (not marked deleted)';

-- Fields documented "Not null": enforced for every new write; NOT VALID leaves rows written
-- before this migration unchecked rather than failing the migration on them.
ALTER TABLE candidates ADD CONSTRAINT candidates_documented_not_null CHECK (
    first_name IS NOT NULL AND last_name IS NOT NULL AND status IS NOT NULL AND date_added IS NOT NULL) NOT VALID;
ALTER TABLE positions ADD CONSTRAINT positions_documented_not_null CHECK (date_added IS NOT NULL) NOT VALID;

-- Rejected records are replayed by id until they load; one open row per record.
ALTER TABLE rejected_records
    ADD COLUMN last_run_id      text,
    ADD COLUMN last_rejected_at timestamptz,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 1,
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN resolved_run_id  text,
    ADD COLUMN resolution       text CHECK (resolution IN ('loaded', 'superseded'));
UPDATE rejected_records SET last_run_id = run_id, last_rejected_at = rejected_at;
ALTER TABLE rejected_records ALTER COLUMN last_run_id SET NOT NULL,
                             ALTER COLUMN last_rejected_at SET NOT NULL,
                             ALTER COLUMN last_rejected_at SET DEFAULT now();
-- earlier runs may have rejected the same record more than once: the newest row stays open
UPDATE rejected_records r SET resolved_at = now(), resolution = 'superseded', resolved_run_id = newer.run_id
  FROM rejected_records newer
 WHERE r.record_id IS NOT NULL AND newer.entity = r.entity AND newer.record_id = r.record_id AND newer.id > r.id
   AND NOT EXISTS (SELECT 1 FROM rejected_records n2 WHERE n2.entity = r.entity AND n2.record_id = r.record_id
                   AND n2.id > newer.id);
ALTER TABLE rejected_records DROP CONSTRAINT rejected_records_entity_run_id_payload_hash_key;
CREATE UNIQUE INDEX rejected_records_open ON rejected_records (entity, record_id)
    WHERE resolved_at IS NULL AND record_id IS NOT NULL;
CREATE UNIQUE INDEX rejected_records_without_id ON rejected_records (entity, run_id, payload_hash)
    WHERE record_id IS NULL;
