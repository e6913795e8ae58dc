"""
### ecommerce_ml_user_item_interactions

Daily at 02:00 (the day before): the day's H&M `transactions_train.csv` → `interactions`
(day-partitioned Parquet in the lake, registered in `dataset_registry`, read with DuckDB;
cleaned: one row per customer, article, channel and price with the quantity bought),
`interaction_rejections` (line and reason: missing value, another day's row, unknown article
or customer, invalid price or channel), and the implicit-feedback matrix artifact (customer ×
article: purchase days, items, recency, a decayed weight) over the last 90 days, in the lake
under `curated/interactions/` and `curated/user_item_matrix/` (combined from each day's
partial aggregate, `curated/user_item_day/`, built once per day).

`validate_transactions` → `build_interactions` → `load_interactions` → `build_user_item_matrix` →
`expire_raw_drops` (the raw H&M files of days processed by every DAG reading them, 7 days after the day:
`ECOMMERCE_ML_RAW_KEEP_DAYS`)

A corrupt file fails `validate_transactions` naming file, line and column; nothing is written.
Details: domains/ecommerce_ml/README.md.
"""

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs


@dag(schedule=cron_intervals("0 2 * * *"),
     **dag_kwargs("ecommerce_ml", doc_md=__doc__, description="transactions -> interactions + implicit-feedback matrix",
                  tags=["ml-dataset"]))
def ecommerce_ml_user_item_interactions():
    @task(multiple_outputs=False, inlets=[assets.RAW_TRANSACTIONS, assets.RAW_ARTICLES, assets.RAW_CUSTOMERS])
    def validate_transactions() -> dict:
        from domains.ecommerce_ml import interactions
        from domains.ecommerce_ml.common import Run

        return interactions.validate_transactions(Run.from_context())

    @task(multiple_outputs=False, inlets=[assets.RAW_TRANSACTIONS, assets.RAW_ARTICLES, assets.RAW_CUSTOMERS])
    def build_interactions() -> dict:
        from domains.ecommerce_ml import interactions
        from domains.ecommerce_ml.common import Run

        return interactions.build_interactions(Run.from_context())

    @task(multiple_outputs=False, outlets=[assets.artifact("interactions"), assets.table("interaction_rejections")])
    def load_interactions(built: dict) -> dict:
        from domains.ecommerce_ml import interactions
        from domains.ecommerce_ml.common import Run

        return interactions.load_interactions(Run.from_context(), built)

    @task(multiple_outputs=False, inlets=[assets.artifact("interactions")],
          outlets=[assets.artifact("user_item_matrix")])
    def build_user_item_matrix() -> dict:
        from domains.ecommerce_ml import interactions
        from domains.ecommerce_ml.common import Run

        return interactions.build_matrix(Run.from_context())

    @task(multiple_outputs=False)
    def expire_raw_drops() -> dict:
        from domains.ecommerce_ml import interactions
        from domains.ecommerce_ml.common import Run

        return interactions.expire_raw_drops(Run.from_context())

    built = build_interactions()
    validate_transactions() >> built
    load_interactions(built) >> build_user_item_matrix() >> expire_raw_drops()


ecommerce_ml_user_item_interactions()
