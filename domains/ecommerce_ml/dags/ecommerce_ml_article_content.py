"""
### ecommerce_ml_article_content

Daily at 03:00 (the day before): the day's H&M `articles.csv` → `article_features`
(structured features, canonical category spellings, the text assembled for embeddings,
content and text hashes), `article_content_history` and `article_changes` (new / changed /
removed articles), and the features as a Parquet artifact in the lake
(`curated/article_content/v=<day>/`). `ecommerce_ml_article_embeddings` reads
`article_features` and recomputes only articles whose hash changed.

`validate_articles` → `build_article_features` → `load_article_features`

A corrupt `articles.csv` fails `validate_articles` naming file, line and column; nothing is written.
Connections: `ecommerce_ml_lake`, `ecommerce_ml_postgres`. Details: domains/ecommerce_ml/README.md.
"""

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs


@dag(schedule=cron_intervals("0 3 * * *"),
     **dag_kwargs("ecommerce_ml", doc_md=__doc__, description="articles -> features, embedding text, changes",
                  tags=["ml-dataset"]))
def ecommerce_ml_article_content():
    @task(multiple_outputs=False, inlets=[assets.RAW_ARTICLES])
    def validate_articles() -> dict:
        from domains.ecommerce_ml import article_content
        from domains.ecommerce_ml.common import Run

        return article_content.validate_articles(Run.from_context())

    @task(multiple_outputs=False, inlets=[assets.RAW_ARTICLES, assets.RAW_IMAGES])
    def build_article_features() -> dict:
        from domains.ecommerce_ml import article_content
        from domains.ecommerce_ml.common import Run

        return article_content.build_article_features(Run.from_context())

    @task(multiple_outputs=False, outlets=[assets.artifact("article_content"), assets.table("article_features"),
                   assets.table("article_changes")])
    def load_article_features(artifact: dict) -> dict:
        from domains.ecommerce_ml import article_content
        from domains.ecommerce_ml.common import Run

        return article_content.load_article_features(Run.from_context(), artifact)

    validated = validate_articles()
    built = build_article_features()
    validated >> built
    load_article_features(built)


ecommerce_ml_article_content()
