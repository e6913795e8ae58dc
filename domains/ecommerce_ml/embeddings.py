"""Article embeddings (DAG ``ecommerce_ml_article_embeddings``): the light side.

The vectors themselves are computed in the heavy environment
(:func:`domains.ecommerce_ml.heavy.jobs.embed_articles`); this module prepares its job (schema
migrated, inputs present, lake paths resolved), and afterwards checks what was stored, reports
lineage and answers similarity queries.

Tables (migration 0050): ``article_sentence_embeddings`` (vector(384), HNSW cosine index),
``article_tfidf_vectors`` (sparsevec), ``article_image_embeddings`` (vector of the encoder's
dims); each row carries ``model_name``, ``model_version`` and the ``content_hash`` it was
computed from.
"""

from __future__ import annotations

import logging
from contextlib import closing

from domains.ecommerce_ml.db import DATABASE

log = logging.getLogger(__name__)

# The article content DAG's output (migration 0002): one row per current article with the text
# assembled for embeddings, its hash, and its image's lake-relative path (NULL: no image).
SOURCE_TABLE = "article_features"
SOURCE_SQL = f"SELECT article_id, embedding_text, text_hash, image_path FROM {SOURCE_TABLE} ORDER BY article_id"
IMAGE_ENCODER_VARIABLE = "ecommerce_ml_image_encoder"

OUTPUT_TABLES = {"sentence": "article_sentence_embeddings", "tfidf": "article_tfidf_vectors", "image": "article_image_embeddings"}
VECTOR_TABLES = {"sentence": "article_sentence_embeddings", "image": "article_image_embeddings", "tfidf": "article_tfidf_vectors"}


def prepare(run_id: str, full_rebuild: bool) -> dict:
    """The heavy task's job: no secrets (the task renders the connection itself)."""
    from airflow.sdk import Variable

    from domains.ecommerce_ml import lake
    from shared.lineage import record_postgres_io

    pg = DATABASE.hook()
    with closing(DATABASE.connect(pg)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {SOURCE_TABLE}")
        n = cur.fetchone()[0]
    record_postgres_io(pg, inputs=[SOURCE_TABLE])
    if not n:
        raise RuntimeError(f"{SOURCE_TABLE} is empty: run ecommerce_ml_article_content first")
    root = lake.lake_root()
    encoder = Variable.get(IMAGE_ENCODER_VARIABLE, default="") or ""
    job = {
        "run_id": run_id,
        "full_rebuild": bool(full_rebuild),
        "source_sql": SOURCE_SQL,
        "lake_base": _heavy_url(root),
        "image_encoder_url": _heavy_url(root / encoder.lstrip("/")) if encoder else "",
    }
    log.info("%d articles in %s; job %s", n, SOURCE_TABLE, job)
    return job


def record_embed_lineage(context, result=None) -> None:
    """``post_execute`` of the heavy ``embed_articles`` task: its job runs in another interpreter,
    without Airflow, so the worker reports what the job read (the source table, the frozen TF-IDF
    model, the article images in the lake) and wrote (the three vector tables, a newly fitted
    model), through the same hook lineage as every task."""
    from domains.ecommerce_ml import lake
    from shared.lineage import record_postgres_io

    record_postgres_io(DATABASE.hook(), inputs=[SOURCE_TABLE, "embedding_models"],
                       outputs=[*OUTPUT_TABLES.values(), "embedding_models"])
    lake.record_reads(lake.images_dir(lake.lake_root()))


def _heavy_url(path) -> str:
    """A lake path as the heavy environment opens it: an OS path for a local lake, else its URL."""
    from domains.ecommerce_ml import lake

    return lake.local_path(path) or str(path)


def check_and_record(stats: dict, dag_id: str, run_id: str) -> dict:
    """Every article of the source has a current vector of each kind it could have; then one
    registry row per table (version: its model's version) and its Asset event, and lineage."""
    from domains.ecommerce_ml import assets, registry
    from shared.lineage import record_postgres_io

    pg = DATABASE.hook()
    outputs, registered = [], {}
    with closing(DATABASE.connect(pg)) as conn, conn.cursor() as cur:
        rows = {}
        for kind, table in OUTPUT_TABLES.items():
            s = stats[kind]
            cur.execute(f"SELECT count(*), count(*) FILTER (WHERE model_name = %s AND model_version = %s) FROM {table}",
                        (s["model_name"], s["model_version"]))
            total, current = cur.fetchone()
            if total != current:
                raise RuntimeError(f"{table}: {total - current} of {total} rows are not from {s['model_name']} {s['model_version']}")
            rows[kind] = total
        expected_images = stats["articles"] - stats["image"]["missing_image"]
        if rows["sentence"] != stats["articles"] or rows["tfidf"] != stats["articles"] or rows["image"] != expected_images:
            raise RuntimeError(f"stored vectors {rows} do not cover the {stats['articles']} articles"
                               f" ({stats['image']['missing_image']} without an image)")
        for kind, table in OUTPUT_TABLES.items():
            out = registry.table_output(cur, table, table, assets.table(table))
            version = f"{stats[kind]['model_name']}@{stats[kind]['model_version']}"
            registered[table] = registry.register(cur, out, version, dag_id, run_id)
            outputs.append((out, version))
        conn.commit()
    for out, version in outputs:
        registry.emit_asset_events([out], version)
    record_postgres_io(pg, inputs=[SOURCE_TABLE], outputs=list(OUTPUT_TABLES.values()))
    return {"rows": rows, "registry_changed": registered, **{k: stats[k] for k in OUTPUT_TABLES}}


def similar_articles(conn, article_id: str, kind: str = "sentence", k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` articles nearest to ``article_id`` by cosine distance of their ``kind`` vectors
    (pgvector's ``<=>``; the sentence table's HNSW index serves it), with the distance."""
    table = VECTOR_TABLES[kind]
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT e.article_id, (e.embedding <=> q.embedding)::float8 AS distance FROM {table} e,"
            f" (SELECT embedding, model_name, model_version FROM {table} WHERE article_id = %s) q"
            f" WHERE e.article_id <> %s AND e.model_name = q.model_name AND e.model_version = q.model_version"
            f" ORDER BY e.embedding <=> q.embedding LIMIT %s", (article_id, article_id, k))
        return [(a, float(d)) for a, d in cur.fetchall()]


def similar_reviews(conn, text_vector: list[float], k: int = 10) -> list[tuple[str, float]]:
    """Reviews nearest to a 384-dim sentence vector (e.g. of a query text encoded by the same model)."""
    literal = "[" + ",".join(repr(float(x)) for x in text_vector) + "]"
    with conn.cursor() as cur:
        cur.execute("SELECT review_id, (embedding <=> %s::vector)::float8 FROM review_embeddings"
                    " ORDER BY embedding <=> %s::vector LIMIT %s", (literal, literal, k))
        return [(r, float(d)) for r, d in cur.fetchall()]
