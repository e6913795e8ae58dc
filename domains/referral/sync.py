"""sync_candidates / sync_positions: Bullhorn -> the referral database, incrementally.

Pages stream from Bullhorn (keyset on the stored watermark); each page is upserted and the
watermark advanced in one transaction, so a killed or retried task resumes where the last
committed page ended and never duplicates. Records that break the contract are kept in
``rejected_records`` with the reason and do not stop the others.

Rejections are never silent wholesale: when more than ``max_rejected_share`` of the records
read this run are rejected, or every record of a page is, the valid ones are stored and the
task then fails (:class:`RejectionLimitExceeded`, no retries) naming the entity, the count
and the top reasons. A handful of bad records only shows in the summary.

Rejected records are replayed: every run re-reads the still-open ones by id
(``entity/<Entity>/<id,id,...>``), loads those that now validate and marks their rows
resolved by this run; the rest keep their latest reason. The watermark never needs resetting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from pydantic import ValidationError

from domains.referral.bullhorn import models
from domains.referral.bullhorn.hook import BullhornHook
from domains.referral.db import DATABASE
from shared.db import bulk_upsert
from shared.lineage import record_http_io, record_postgres_io

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
    replayed: int = 0
    resolved: int = 0
    unresolved: int = 0
    logins: int = 0
    all_rejected_pages: list[int] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


class RejectionLimitExceeded(AirflowFailException):
    """Too many of an entity's records broke the contract in one run (the valid ones are stored)."""


DEFAULT_MAX_REJECTED_SHARE = 0.05


def _watermark(cur, entity: str) -> tuple[int, int]:
    cur.execute("SELECT last_modified_ms, last_id FROM sync_watermarks WHERE entity = %s", (entity,))
    row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _split(spec: EntitySpec, raws: list[dict]) -> tuple[list, list[tuple[dict, str]]]:
    good, rejected = [], []
    for raw in raws:
        try:
            good.append(spec.model.model_validate(raw))
        except ValidationError as exc:
            rejected.append((raw, models.problems(exc)))
    return good, rejected


def _store(conn, spec: EntitySpec, good: list, rejected: list[tuple[dict, str]], run_id: str,
           result: SyncResult) -> None:
    """Upsert the valid records, resolve their open rejections, keep the rejected ones (no commit)."""
    entity = spec.entity
    if good:
        r = bulk_upsert(conn, spec.table, spec.columns, [spec.to_row(g) for g in good], key=["id"], commit=False)
        result.inserted += r.inserted
        result.updated += r.updated
        result.deleted += sum(1 for g in good if g.isDeleted)
    with conn.cursor() as cur:
        if good:
            cur.execute(
                "UPDATE rejected_records SET resolved_at = now(), resolved_run_id = %s, resolution = 'loaded'"
                " WHERE entity = %s AND resolved_at IS NULL AND record_id = ANY(%s)",
                (run_id, entity, [str(g.id) for g in good]))
            result.resolved += cur.rowcount
        for raw, reason in rejected:
            payload = json.dumps(raw, sort_keys=True, default=str)
            rid = raw.get("id")
            args = (entity, None if rid is None else str(rid), reason, payload,
                    hashlib.sha256(payload.encode()).hexdigest(), run_id, run_id)
            if rid is None:
                cur.execute(
                    "INSERT INTO rejected_records (entity, record_id, reason, payload, payload_hash, run_id,"
                    " last_run_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (entity, run_id, payload_hash) WHERE record_id IS NULL DO NOTHING", args)
            else:  # one open row per record: a new rejection updates it
                cur.execute(
                    "INSERT INTO rejected_records (entity, record_id, reason, payload, payload_hash, run_id,"
                    " last_run_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (entity, record_id) WHERE resolved_at IS NULL AND record_id IS NOT NULL"
                    " DO UPDATE SET reason = EXCLUDED.reason, payload = EXCLUDED.payload,"
                    " payload_hash = EXCLUDED.payload_hash, last_run_id = EXCLUDED.last_run_id,"
                    " last_rejected_at = now(), attempts = rejected_records.attempts"
                    " + (rejected_records.last_run_id <> EXCLUDED.last_run_id)::int", args)
            log.warning("Rejected %s id=%s: %s", entity, rid, reason)


def _replay(conn, bullhorn: BullhornHook, spec: EntitySpec, fields: list[str], run_id: str,
            result: SyncResult) -> None:
    """Re-read the still-open rejected records by id; load those that validate now."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT record_id FROM rejected_records WHERE entity = %s AND resolved_at IS NULL"
            " AND record_id ~ '^[0-9]{1,18}$' AND last_run_id <> %s ORDER BY record_id::bigint",
            (spec.entity, run_id))
        ids = [int(r[0]) for r in cur.fetchall()]
    conn.commit()
    if not ids:
        return
    log.info("Replaying %d rejected %s records by id", len(ids), spec.entity)
    for batch in bullhorn.get_by_ids(spec.entity, ids, fields):
        batch = [raw for raw in batch if isinstance(raw.get("id"), int)]
        good, rejected = _split(spec, batch)
        _store(conn, spec, good, rejected, run_id, result)
        conn.commit()
        result.replayed += len(batch)


def _check_rejections(result: SyncResult, max_share: float) -> None:
    share = result.rejected / result.received if result.received else 0.0
    if share <= max_share and not result.all_rejected_pages:
        return
    top = "; ".join(f"{reason} ({n})" for reason, n in result.reasons.most_common(3))
    why = (f"{share:.1%} > the {max_share:.1%} limit (variable referral_max_rejected_share)" if share > max_share
           else f"every record of page(s) {', '.join(map(str, result.all_rejected_pages))} rejected")
    raise RejectionLimitExceeded(
        f"Bullhorn {result.entity}: {result.rejected} of {result.received} records rejected this run ({why}); "
        f"{result.changed} valid records stored, the rejected ones are in rejected_records and are replayed "
        f"every run. Top reasons: {top}")


def sync_entity(entity: str, run_id: str, page_size: int = 500, bullhorn: BullhornHook | None = None,
                max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE) -> dict:
    spec = SPECS[entity]
    bullhorn = bullhorn or BullhornHook()
    pg = DATABASE.hook()
    result = SyncResult(entity)
    fields = list(spec.model.model_fields)
    with closing(DATABASE.connect(pg)) as conn:
        with conn.cursor() as cur:
            since = _watermark(cur, entity)
        conn.commit()
        log.info("Syncing %s modified after %s", entity, since)
        for page in bullhorn.iter_modified(entity, fields, since, page_size=page_size):
            good, rejected = _split(spec, page)
            _store(conn, spec, good, rejected, run_id, result)
            keys = [k for k in map(models.record_key, page) if k is not None]
            if keys:
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO sync_watermarks (entity, last_modified_ms, last_id) VALUES (%s, %s, %s)"
                        " ON CONFLICT (entity) DO UPDATE SET last_modified_ms = EXCLUDED.last_modified_ms,"
                        " last_id = EXCLUDED.last_id, updated_at = now()", (entity, *max(keys)))
            conn.commit()  # the page and its watermark together
            result.pages += 1
            result.received += len(page)
            result.rejected += len(rejected)
            result.reasons.update(p for _, reason in rejected for p in reason.split("; "))
            if rejected and not good:
                result.all_rejected_pages.append(result.pages)
        _replay(conn, bullhorn, spec, fields, run_id, result)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM rejected_records WHERE entity = %s AND resolved_at IS NULL", (entity,))
            result.unresolved = cur.fetchone()[0]
        conn.commit()
    result.logins = bullhorn.logins
    if bullhorn.rest_url:
        record_http_io(bullhorn, inputs=[f"{bullhorn.rest_url}query/{entity}"])
    record_postgres_io(pg, outputs=[spec.table, "sync_watermarks", "rejected_records"])
    log.info("Synced %s: %s", entity, result)
    _check_rejections(result, max_rejected_share)
    out = asdict(result)
    out["reasons"] = dict(result.reasons.most_common(5))
    return {**out, "changed": result.changed}
