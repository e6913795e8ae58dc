"""
### ecommerce_ml_customer_features

Daily at 04:00 (the day before): the day's H&M `customers.csv` plus the interactions of the
last 365 days (DAG 1's artifacts) and the day's article features (DAG 2's artifact) →
`customer_features`: RFM (recency, frequency, monetary and their quintile scores),
preferred product group and colour, online share, age band, club status, news frequency;
also a Parquet artifact under `curated/customer_features/`.

`validate_customers` → `build_customer_features`

A corrupt `customers.csv` fails `validate_customers` naming file, line and column; nothing
is written. Details: domains/ecommerce_ml/README.md.
"""

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs


@dag(schedule=cron_intervals("0 4 * * *"),
     **dag_kwargs("ecommerce_ml", doc_md=__doc__, description="customers + interactions -> customer features",
                  tags=["ml-dataset"]))
def ecommerce_ml_customer_features():
    @task(multiple_outputs=False, inlets=[assets.RAW_CUSTOMERS])
    def validate_customers() -> dict:
        from domains.ecommerce_ml import features
        from domains.ecommerce_ml.common import Run

        return features.validate_customers(Run.from_context())

    @task(multiple_outputs=False,
          inlets=[assets.RAW_CUSTOMERS, assets.artifact("interactions"), assets.artifact("article_content")],
          outlets=[assets.artifact("customer_features"), assets.table("customer_features")])
    def build_customer_features() -> dict:
        from domains.ecommerce_ml import features
        from domains.ecommerce_ml.common import Run

        return features.build_customer_features(Run.from_context())

    validate_customers() >> build_customer_features()


ecommerce_ml_customer_features()
