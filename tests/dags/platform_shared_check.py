"""Fixture DAG of the platform tests: one run through every shared module.

Reads a paginated JSON service (``shared.http``), bulk-upserts into Postgres
(``shared.db``), derives a summary table with a common-sql operator, records lineage
(``shared.lineage``) and mails a summary (``shared.notifications``).
"""

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs

DOMAIN = "platform_tests"


@dag(schedule=None, **dag_kwargs(DOMAIN, doc_md=__doc__, default_args={"retries": 0}))
def platform_shared_check():
    @task
    def load_items() -> int:
        from tests.dags_support import load_items_from_catalog

        return load_items_from_catalog(DOMAIN)

    summarize = SQLExecuteQueryOperator(
        task_id="summarize",
        conn_id=f"{DOMAIN}_postgres",
        sql="DELETE FROM item_summary; INSERT INTO item_summary (n_items, total_price) SELECT count(*), sum(price) FROM items",
    )

    @task
    def mail_summary(loaded: int) -> None:
        from shared.notifications import send_summary

        send_summary(DOMAIN, "catalog loaded", {"items loaded": loaded})

    loaded = load_items()
    loaded >> summarize >> mail_summary(loaded)


platform_shared_check()
