"""
### ecommerce_ml_reviews_nlp

Nightly at 01:00 UTC (data interval `[D-1 01:00, D 01:00)`): the day D-1's reviews drop (`raw/reviews/dt=<day>/reviews.csv`) →
`reviews`, sentiment per review, review embeddings for similarity search, per-article aggregates.

`load_reviews` → `score_reviews` (heavy environment, pool `ecommerce_ml_embeddings`) → `aggregate`

- The file is validated whole first: a bad header, a wrong type or a truncated line fails
  `load_reviews` with file, line and column, and nothing is written.
- Sentiment: vaderSentiment (rule-based, its lexicon ships in the package) → `review_sentiment`
  (compound, pos/neu/neg, label). Embeddings: all-MiniLM-L6-v2 (384 dims) → `review_embeddings`
  (HNSW cosine index). A review already scored by the same model from the same text is skipped.
- `article_review_aggregates`: per article, over every review created before the day's end.
- Idempotent per data interval: a rerun of a day changes nothing.

Connections: `ecommerce_ml_postgres`, `ecommerce_ml_lake`.
"""

from datetime import timedelta

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.config import DB_FIELDS_TEMPLATE, EMBED_POOL, embed_python
from domains.ecommerce_ml.reviews_nlp import record_score_lineage
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs


@dag(
    schedule=cron_intervals("0 1 * * *"),
    **dag_kwargs("ecommerce_ml", doc_md=__doc__, tags=["nlp", "reviews", "pgvector"],
                 description="Review sentiment, embeddings and per-article aggregates"),
)
def ecommerce_ml_reviews_nlp():
    @task(multiple_outputs=False, inlets=[assets.RAW_REVIEWS], outlets=[assets.table("reviews")])
    def load_reviews() -> dict:
        from domains.ecommerce_ml.common import Run
        from domains.ecommerce_ml.reviews_nlp import load_reviews as load

        return load(Run.from_context())

    @task.external_python(python=embed_python(), pool=EMBED_POOL, expect_airflow=False, multiple_outputs=False,
                          env_vars={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                          execution_timeout=timedelta(hours=1), post_execute=record_score_lineage)
    def score_reviews(db: dict, loaded: dict, run_id: str) -> dict:
        from domains.ecommerce_ml.heavy.jobs import score_reviews as run

        return {**run(db, {"source_file": loaded["file"], "run_id": run_id}), "file": loaded["file"]}

    @task(multiple_outputs=False, outlets=[assets.table(t) for t in ("review_sentiment", "review_embeddings",
                                                                       "article_review_aggregates")])
    def aggregate(scored: dict) -> dict:
        from domains.ecommerce_ml.common import Run
        from domains.ecommerce_ml.reviews_nlp import aggregate as agg

        return agg(Run.from_context(), scored)

    aggregate(score_reviews(db=DB_FIELDS_TEMPLATE, loaded=load_reviews(), run_id="{{ run_id }}"))


ecommerce_ml_reviews_nlp()
