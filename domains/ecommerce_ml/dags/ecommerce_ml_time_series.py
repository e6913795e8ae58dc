"""
### ecommerce_ml_time_series

Daily at 05:00 (the day before): the interactions of the last 28 days (DAG 1's artifacts)
and the day's article features (DAG 2's artifact) → `sales_daily_article` and
`sales_daily_group`: units and revenue of the day, rolling 7- and 28-day units, weekly
seasonality (weekday index per product group) and a trending score; also Parquet
artifacts under `curated/sales_daily_article/` and `curated/sales_daily_group/`.

`build_time_series`

Details: domains/ecommerce_ml/README.md.
"""

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs


@dag(schedule=cron_intervals("0 5 * * *"),
     **dag_kwargs("ecommerce_ml", doc_md=__doc__, description="interactions -> daily sales series and trends",
                  tags=["ml-dataset"]))
def ecommerce_ml_time_series():
    @task(multiple_outputs=False, inlets=[assets.artifact("interactions"), assets.artifact("article_content")],
          outlets=[assets.artifact("sales_daily_article"), assets.artifact("sales_daily_group"),
                   assets.table("sales_daily_article"), assets.table("sales_daily_group")])
    def build_time_series() -> dict:
        from domains.ecommerce_ml import features
        from domains.ecommerce_ml.common import Run

        return features.build_time_series(Run.from_context())

    build_time_series()


ecommerce_ml_time_series()
