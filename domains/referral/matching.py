"""find_matches: score changed candidates and positions, keep matches at or above the threshold.

Pairs are scored when either side got a new embedding since the last matching run:
changed candidates against every open position, every active candidate against changed
positions. Matches at or above the threshold are upserted (score, model version, run);
an active match whose new score falls below it, and matches of closed or deleted
positions and of deleted candidates, are retired.
"""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import UTC, datetime

from domains.referral.db import DATABASE
from domains.referral.ml import MATCH_BLOCK, MlServiceHook
from shared.db import bulk_upsert
from shared.lineage import record_http_io, record_postgres_io

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ACTIVE_CANDIDATES = ("SELECT c.id, e.vector, e.embedded_at FROM candidates c"
                     " JOIN candidate_embeddings e ON e.candidate_id = c.id WHERE NOT c.is_deleted")
OPEN_POSITIONS = ("SELECT p.id, e.vector, e.embedded_at FROM positions p"
                  " JOIN position_embeddings e ON e.position_id = p.id WHERE p.is_open IS TRUE AND NOT p.is_deleted")


def _blocks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def find_matches(run_id: str, threshold: float, ml: MlServiceHook | None = None) -> dict:
    ml = ml or MlServiceHook()
    pg = DATABASE.hook()
    with closing(DATABASE.connect(pg)) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT candidates_through, positions_through FROM matching_state")
            c_through, p_through = cur.fetchone() or (EPOCH, EPOCH)
            cur.execute(ACTIVE_CANDIDATES)
            candidates = cur.fetchall()
            cur.execute(OPEN_POSITIONS)
            positions = cur.fetchall()
        changed_c = [(i, v) for i, v, at in candidates if at > c_through]
        changed_p = [(i, v) for i, v, at in positions if at > p_through]
        all_c = [(i, v) for i, v, _ in candidates]
        all_p = [(i, v) for i, v, _ in positions]
        scores: dict[tuple[int, int], float] = {}
        model_version = None
        # changed candidates x all open positions, then unchanged candidates x changed positions
        changed_ids = {i for i, _ in changed_c}
        work = [(changed_c, all_p), ([c for c in all_c if c[0] not in changed_ids], changed_p)]
        for cs, ps in work:
            for cb in _blocks(cs, MATCH_BLOCK):
                for pb in _blocks(ps, MATCH_BLOCK):
                    resp = ml.match(cb, pb)
                    model_version = resp.model_version
                    scores.update({(s.candidate_id, s.position_id): s.score for s in resp.scores})
        keep = [(c, p, round(s, 2), model_version, run_id, "active", None, datetime.now(UTC))
                for (c, p), s in scores.items() if s >= threshold]
        below = [(c, p) for (c, p), s in scores.items() if s < threshold]
        result = bulk_upsert(
            conn, "matches",
            ["candidate_id", "position_id", "score", "model_version", "run_id", "status", "retired_reason", "updated_at"],
            keep, key=["candidate_id", "position_id"], commit=False,
            update=["score", "model_version", "run_id", "status", "retired_reason", "updated_at"])
        with conn.cursor() as cur:
            retired = 0
            if below:
                cur.execute(
                    "UPDATE matches m SET status = 'retired', retired_reason = 'score below threshold',"
                    " run_id = %s, updated_at = now() FROM unnest(%s::bigint[], %s::bigint[]) AS b(c, p)"
                    " WHERE m.candidate_id = b.c AND m.position_id = b.p AND m.status = 'active'",
                    (run_id, [c for c, _ in below], [p for _, p in below]))
                retired += cur.rowcount
            cur.execute(
                "UPDATE matches m SET status = 'retired', run_id = %s, updated_at = now(),"
                " retired_reason = CASE WHEN p.is_deleted THEN 'position deleted'"
                "   WHEN p.is_open IS NOT TRUE THEN 'position closed' ELSE 'candidate deleted' END"
                " FROM positions p, candidates c"
                " WHERE m.status = 'active' AND p.id = m.position_id AND c.id = m.candidate_id"
                "   AND (p.is_deleted OR p.is_open IS NOT TRUE OR c.is_deleted)", (run_id,))
            retired += cur.rowcount
            c_new = max((at for _, _, at in candidates), default=c_through)
            p_new = max((at for _, _, at in positions), default=p_through)
            cur.execute(
                "INSERT INTO matching_state (candidates_through, positions_through) VALUES (%s, %s)"
                " ON CONFLICT (id) DO UPDATE SET candidates_through = EXCLUDED.candidates_through,"
                " positions_through = EXCLUDED.positions_through", (max(c_new, c_through), max(p_new, p_through)))
            cur.execute(
                "SELECT c.first_name || ' ' || c.last_name, p.title, m.score FROM matches m"
                " JOIN candidates c ON c.id = m.candidate_id JOIN positions p ON p.id = m.position_id"
                " WHERE m.run_id = %s AND m.status = 'active' ORDER BY m.score DESC, m.candidate_id, m.position_id"
                " LIMIT 5", (run_id,))
            top = [{"candidate": n, "position": t, "score": float(s)} for n, t, s in cur.fetchall()]
        conn.commit()
    record_postgres_io(pg, inputs=["candidate_embeddings", "position_embeddings", "candidates", "positions"],
                       outputs=["matches"])
    if model_version is not None:  # the service was called
        record_http_io(ml, inputs=["/v1/match"])
    return {"pairs_scored": len(scores), "new_matches": result.inserted, "updated_matches": result.updated,
            "retired_matches": retired, "threshold": threshold, "model_version": model_version, "top": top}
