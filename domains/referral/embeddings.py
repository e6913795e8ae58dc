"""generate_*_embeddings: embed only rows whose content changed since their last embedding."""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import UTC, datetime

from domains.referral.db import DATABASE
from domains.referral.ml import EMBED_BATCH, MlServiceHook
from shared.db import bulk_upsert
from shared.lineage import record_http_io, record_postgres_io

log = logging.getLogger(__name__)

KINDS = {
    # kind: (source table, embeddings table, key column, text expression)
    "candidates": ("candidates", "candidate_embeddings", "candidate_id",
                   "btrim(coalesce(s.skill_set, '') || '. ' || coalesce(s.description, ''))"),
    "positions": ("positions", "position_embeddings", "position_id",
                  "btrim(coalesce(s.title, '') || '. ' || coalesce(s.skill_list, '') || '. ' || coalesce(s.description, ''))"),
}


def generate_embeddings(kind: str, batch_size: int = EMBED_BATCH, ml: MlServiceHook | None = None) -> dict:
    source, target, key, text = KINDS[kind]
    ml = ml or MlServiceHook()
    pg = DATABASE.hook()
    embedded, batches, model_version = 0, 0, None
    with closing(DATABASE.connect(pg)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT s.id, {text}, s.content_hash FROM {source} s LEFT JOIN {target} e ON e.{key} = s.id"
                f" WHERE NOT s.is_deleted AND (e.{key} IS NULL OR e.content_hash <> s.content_hash) ORDER BY s.id")
            todo = cur.fetchall()
        conn.commit()
        log.info("%d %s need an embedding", len(todo), kind)
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            resp = ml.embed([(rid, t) for rid, t, _ in batch])
            vectors = {e.id: e.vector for e in resp.embeddings}
            now = datetime.now(UTC)
            rows = [(rid, "{" + ",".join(map(repr, vectors[rid])) + "}", resp.model_version, h, now)
                    for rid, _, h in batch]
            bulk_upsert(conn, target, [key, "vector", "model_version", "content_hash", "embedded_at"], rows, key=[key])
            embedded += len(batch)
            batches += 1
            model_version = resp.model_version
    record_postgres_io(pg, inputs=[source], outputs=[target])
    if batches:
        record_http_io(ml, inputs=["/v1/embeddings"])
    return {"kind": kind, "embedded": embedded, "batches": batches, "model_version": model_version}
