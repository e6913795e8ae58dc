"""sync_candidates / sync_positions: Bullhorn -> the referral database, incrementally.

Pages stream from Bullhorn (keyset on the stored watermark); each page is upserted and the
watermark advanced in one transaction, so a killed or retried task resumes where the last
committed page ended and never duplicates. Records that break the contract are kept in
``rejected_records`` with the reason and do not stop the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from domains.referral.bullhorn import models
from domains.referral.bullhorn.hook import BullhornHook
from domains.referral.db import DATABASE
from shared.db import bulk_upsert
from shared.lineage import record_postgres_io, record_service_io

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntitySpec:
    entity: str
    table: str
    model: type[models._Record]
    columns: list[str]
    to_row: Any


SPECS = {
    "Candidate": EntitySpec("Candidate", "candidates", models.Candidate, models.CANDIDATE_COLUMNS, models.candidate_row),
    "JobOrder": EntitySpec("JobOrder", "positions", models.JobOrder, models.POSITION_COLUMNS, models.position_row),
}


@dataclass
class SyncResult:
    entity: str
    received: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    pages: int = 0
    logins: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


def _watermark(cur, entity: str) -> tuple[int, int]:
    cur.execute("SELECT last_modified_ms, last_id FROM sync_watermarks WHERE entity = %s", (entity,))
    row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def sync_entity(entity: str, run_id: str, page_size: int = 500, bullhorn: BullhornHook | None = None) -> dict:
    spec = SPECS[entity]
    bullhorn = bullhorn or BullhornHook()
    pg = DATABASE.hook()
    conn = DATABASE.connect(pg)
    result = SyncResult(entity)
    fields = list(spec.model.model_fields)
    try:
        with conn.cursor() as cur:
            since = _watermark(cur, entity)
        conn.commit()
        log.info("Syncing %s modified after %s", entity, since)
        for page in bullhorn.iter_modified(entity, fields, since, page_size=page_size):
            good, rejected = [], []
            for raw in page:
                try:
                    good.append(spec.model.model_validate(raw))
                except ValidationError as exc:
                    rejected.append((raw, models.problems(exc)))
            keys = [k for k in map(models.record_key, page) if k is not None]
            with conn.cursor() as cur:
                if good:
                    r = bulk_upsert(conn, spec.table, spec.columns, [spec.to_row(g) for g in good], key=["id"],
                                    commit=False)
                    result.inserted += r.inserted
                    result.updated += r.updated
                for raw, reason in rejected:
                    payload = json.dumps(raw, sort_keys=True, default=str)
                    cur.execute(
                        "INSERT INTO rejected_records (entity, record_id, reason, payload, payload_hash, run_id)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (entity, None if raw.get("id") is None else str(raw.get("id")), reason, payload,
                         hashlib.sha256(payload.encode()).hexdigest(), run_id))
                    log.warning("Rejected %s id=%s: %s", entity, raw.get("id"), reason)
                if keys:
                    last = max(keys)
                    cur.execute(
                        "INSERT INTO sync_watermarks (entity, last_modified_ms, last_id) VALUES (%s, %s, %s)"
                        " ON CONFLICT (entity) DO UPDATE SET last_modified_ms = EXCLUDED.last_modified_ms,"
                        " last_id = EXCLUDED.last_id, updated_at = now()", (entity, *last))
            conn.commit()  # the page and its watermark together
            result.pages += 1
            result.received += len(page)
            result.rejected += len(rejected)
            result.deleted += sum(1 for g in good if g.isDeleted)
    finally:
        conn.close()
    result.logins = bullhorn.logins
    record_service_io(bullhorn, "bullhorn", inputs=[entity])
    record_postgres_io(pg, outputs=[spec.table, "sync_watermarks"])
    log.info("Synced %s: %s", entity, result)
    return {**asdict(result), "changed": result.changed}
