"""Looklyy web API stand-in, backed by the looklyy database (the seed's tables).

- ``POST /api/setup-airflow-tables``: creates the tables (idempotent).
- ``POST /api/crawler/harper-bazaar``: adds new global images (Harper's Bazaar crawl).
- ``POST /api/user/sync-database``: each user's database keeps only heart-marked images.
- ``POST /api/training/setup-review`` ``{"run_id"}``: opens (or returns) that run's review session.
- ``GET /api/training/review-status?session_id=``: ``{"status": "open"|"completed", "decisions"}``.
- ``POST /api/training/apply-learning`` ``{"session_id", "review_completed"}``: writes
  ``learning_patterns`` from the review's decisions, or re-applies the previous patterns.
- Admin: ``POST /api/admin/review/{session_id}/complete`` completes a review (what the
  admin does in the Training Dashboard); ``POST /api/admin/favorites`` heart-marks images.

POSTs honour ``Idempotency-Key``: a repeated key answers the first response without
doing the work again. Auth: header ``X-API-Key``. Faults: the shared injection.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

import psycopg2
from fastapi import Header, HTTPException, Request
from pydantic import BaseModel

from devplatform.standin import create_app
from domains.looklyy.db import DATABASE

CRAWL_BATCH = 12
PATTERNS = ["silhouette", "palette", "texture", "layering", "accessories", "footwear"]


class ReviewIn(BaseModel):
    run_id: str


class LearningIn(BaseModel):
    session_id: str
    review_completed: bool


class FavoriteIn(BaseModel):
    user_id: str
    image_id: int
    hearted: bool = True


def seed_demo_users(dsn: str) -> None:
    """For people watching the local platform: a few images and users' heart marks (once)."""
    conn = psycopg2.connect(dsn)
    try:
        DATABASE.migrate(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM user_favorites")
            if cur.fetchone()[0]:
                return
            cur.execute("INSERT INTO global_images (source, url, title) SELECT 'seed', 'https://looklyy.app/seed/' || g,"
                        " 'Seed look ' || g FROM generate_series(1, 8) g ON CONFLICT (url) DO NOTHING")
            cur.execute("INSERT INTO user_favorites (user_id, image_id, hearted) SELECT u, i.id, (i.id + length(u)) % 3 <> 0"
                        " FROM global_images i, unnest(array['ana', 'ben', 'chloe']) u WHERE i.source = 'seed'")
            cur.execute("INSERT INTO user_database (user_id, image_id) SELECT user_id, image_id FROM user_favorites")
        conn.commit()
    finally:
        conn.close()


def create_looklyy_app(dsn: str | None = None, api_key: str = "looklyy-dev-key", seed_demo: bool = False):
    """``dsn``: libpq DSN of the looklyy database (default: the ``LOOKLYY_STANDIN_DSN`` env);
    ``seed_demo``: add demo users' heart marks on start (the local platform does)."""
    import os

    app = create_app("looklyy-api")
    dsn = dsn or os.environ["LOOKLYY_STANDIN_DSN"]
    lock = threading.Lock()
    app.state.dsn = dsn
    if seed_demo:
        seed_demo_users(dsn)

    def db():
        return psycopg2.connect(dsn)

    def check(key: str | None) -> None:
        if key != api_key:
            raise HTTPException(401, "missing or wrong X-API-Key")

    def idempotent(endpoint: str, key: str | None, work):
        """Run ``work(cur)`` once per idempotency key, in one transaction with the key."""
        with lock, db() as conn, conn.cursor() as cur:
            if key:
                cur.execute("SELECT response FROM api_idempotency WHERE key = %s AND endpoint = %s", (key, endpoint))
                if row := cur.fetchone():
                    return {**row[0], "replayed": True}
            response = work(cur)
            if key:
                cur.execute("INSERT INTO api_idempotency (key, endpoint, response) VALUES (%s, %s, %s)",
                            (key, endpoint, json.dumps(response)))
            return response

    @app.post("/api/setup-airflow-tables")
    def setup(x_api_key: str | None = Header(None)):
        check(x_api_key)
        conn = db()
        try:
            applied = DATABASE.migrate(conn)
        finally:
            conn.close()
        return {"ok": True, "applied": applied}

    @app.post("/api/crawler/harper-bazaar")
    def crawl(request: Request, x_api_key: str | None = Header(None), idempotency_key: str | None = Header(None)):
        check(x_api_key)

        def work(cur):
            cur.execute("SELECT count(*) FROM global_images")
            start = cur.fetchone()[0]
            urls = [f"https://www.harpersbazaar.com/fashion/look-{start + i:05d}.jpg" for i in range(CRAWL_BATCH)]
            cur.executemany("INSERT INTO global_images (source, url, title) VALUES ('harper-bazaar', %s, %s)"
                            " ON CONFLICT (url) DO NOTHING", [(u, f"Look {start + i}") for i, u in enumerate(urls)])
            return {"images_crawled": len(urls), "total_images": start + len(urls)}

        return idempotent("crawl", idempotency_key, work)

    @app.post("/api/user/sync-database")
    def sync_users(x_api_key: str | None = Header(None), idempotency_key: str | None = Header(None)):
        check(x_api_key)

        def work(cur):
            cur.execute("DELETE FROM user_database u WHERE NOT EXISTS (SELECT 1 FROM user_favorites f"
                        " WHERE f.user_id = u.user_id AND f.image_id = u.image_id AND f.hearted)")
            dropped = cur.rowcount
            cur.execute("INSERT INTO user_database (user_id, image_id) SELECT user_id, image_id FROM user_favorites"
                        " WHERE hearted ON CONFLICT DO NOTHING")
            added = cur.rowcount
            cur.execute("SELECT count(*) FROM user_database")
            return {"kept": cur.fetchone()[0], "added": added, "dropped": dropped}

        return idempotent("sync", idempotency_key, work)

    @app.post("/api/training/setup-review")
    def setup_review(body: ReviewIn, x_api_key: str | None = Header(None)):
        check(x_api_key)
        with lock, db() as conn, conn.cursor() as cur:
            cur.execute("SELECT id, images, status FROM review_sessions WHERE run_id = %s", (body.run_id,))
            if row := cur.fetchone():
                return {"session_id": row[0], "images": row[1], "status": row[2]}
            cur.execute("SELECT count(*) FROM user_database")
            images = max(1, cur.fetchone()[0])
            sid = "rs-" + uuid.uuid5(uuid.NAMESPACE_URL, body.run_id).hex[:12]
            cur.execute("INSERT INTO review_sessions (id, run_id, images) VALUES (%s, %s, %s)", (sid, body.run_id, images))
            return {"session_id": sid, "images": images, "status": "open"}

    @app.get("/api/training/review-status")
    def review_status(session_id: str, x_api_key: str | None = Header(None)):
        check(x_api_key)
        with db() as conn, conn.cursor() as cur:
            cur.execute("SELECT status, decisions, images FROM review_sessions WHERE id = %s", (session_id,))
            row = cur.fetchone()
        if not row:
            raise HTTPException(404, f"no review session {session_id}")
        return {"session_id": session_id, "status": row[0], "decisions": row[1], "images": row[2]}

    @app.post("/api/training/apply-learning")
    def apply_learning(body: LearningIn, x_api_key: str | None = Header(None),
                       idempotency_key: str | None = Header(None)):
        check(x_api_key)

        def work(cur):
            if body.review_completed:
                cur.execute("SELECT decisions FROM review_sessions WHERE id = %s AND status = 'completed'",
                            (body.session_id,))
                row = cur.fetchone()
                if not row:
                    raise HTTPException(409, f"review {body.session_id} is not completed")
                seed = int(hashlib.sha256(body.session_id.encode()).hexdigest()[:8], 16)
                n = max(1, min(len(PATTERNS), row[0] // 2))
                patterns = [(PATTERNS[(seed + i) % len(PATTERNS)], round(0.5 + ((seed >> i) % 50) / 100, 2))
                            for i in range(n)]
                cur.executemany("INSERT INTO learning_patterns (session_id, pattern, weight) VALUES (%s, %s, %s)"
                                " ON CONFLICT DO NOTHING", [(body.session_id, p, w) for p, w in patterns])
                return {"patterns_applied": len(patterns), "source": "review"}
            cur.execute("SELECT count(DISTINCT pattern) FROM learning_patterns")
            return {"patterns_applied": cur.fetchone()[0], "source": "previous"}

        return idempotent("learning", idempotency_key, work)

    @app.post("/api/admin/review/{session_id}/complete")
    def complete_review(session_id: str, decisions: int | None = None, x_api_key: str | None = Header(None)):
        check(x_api_key)
        with lock, db() as conn, conn.cursor() as cur:
            cur.execute("UPDATE review_sessions SET status = 'completed', completed_at = now(),"
                        " decisions = coalesce(%s, images) WHERE id = %s RETURNING decisions", (decisions, session_id))
            row = cur.fetchone()
        if not row:
            raise HTTPException(404, f"no review session {session_id}")
        return {"session_id": session_id, "status": "completed", "decisions": row[0]}

    @app.post("/api/admin/review/complete-open")
    def complete_open(x_api_key: str | None = Header(None)):
        """Complete every open review (the local platform's one-click admin action)."""
        check(x_api_key)
        with lock, db() as conn, conn.cursor() as cur:
            cur.execute("UPDATE review_sessions SET status = 'completed', completed_at = now(), decisions = images"
                        " WHERE status = 'open' RETURNING id")
            return {"completed": [r[0] for r in cur.fetchall()]}

    @app.post("/api/admin/favorites")
    def favorite(body: FavoriteIn, x_api_key: str | None = Header(None)):
        check(x_api_key)
        with lock, db() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO user_favorites (user_id, image_id, hearted) VALUES (%s, %s, %s)"
                        " ON CONFLICT (user_id, image_id) DO UPDATE SET hearted = EXCLUDED.hearted, marked_at = now()",
                        (body.user_id, body.image_id, body.hearted))
        return {"ok": True}

    return app
