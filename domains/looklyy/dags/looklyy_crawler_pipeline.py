"""
### looklyy_crawler_pipeline

Daily at 02:00: the 24-hour Looklyy training cycle.

`global_database_refresh` → `user_database_sync` → `surface_for_manual_review` →
`wait_for_manual_review` → `apply_model_learning` → `send_completion_notification`

1. Crawl Harper's Bazaar into the global image database.
2. Each user's database keeps only heart-marked images.
3. Open a review session for this run (Training Dashboard).
4. Wait for the admin's review, up to 6 hours (`looklyy_review_timeout_seconds`): the review
   status is polled every `looklyy_review_poll_seconds` from the looklyy team's triggerer, so no
   worker is held while waiting. A timeout does not stop the pipeline: the previous learning
   patterns are applied and the summary says so.
5. Apply the learning; 6. email the summary. Every step is recorded in `pipeline_logs`.

Connections: `looklyy_api`, `looklyy_postgres`. Variables: `looklyy_alert_emails`,
`looklyy_review_timeout_seconds`, `looklyy_review_poll_seconds`.
"""

from airflow.sdk import dag, task

from domains.looklyy.operators import WaitForReviewOperator
from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 2 * * *",
    **dag_kwargs("looklyy", doc_md=__doc__, description="24-hour crawler refresh, user sync, review and learning",
                 tags=["crawler", "training"]),
)
def looklyy_crawler_pipeline():
    @task(multiple_outputs=False)
    def global_database_refresh() -> dict:
        from domains.looklyy import pipeline

        return pipeline.global_database_refresh()

    @task(multiple_outputs=False)
    def user_database_sync() -> dict:
        from domains.looklyy import pipeline

        return pipeline.user_database_sync()

    @task(multiple_outputs=False)
    def surface_for_manual_review() -> dict:
        from domains.looklyy import pipeline

        return pipeline.surface_for_manual_review()

    wait_for_manual_review = WaitForReviewOperator(
        task_id="wait_for_manual_review",
        session_id="{{ ti.xcom_pull(task_ids='surface_for_manual_review')['session_id'] }}",
        opened_at="{{ ti.xcom_pull(task_ids='surface_for_manual_review')['opened_at'] }}",
    )

    @task(multiple_outputs=False)
    def apply_model_learning(review: dict) -> dict:
        from domains.looklyy import pipeline

        return pipeline.apply_model_learning(review)

    @task
    def send_completion_notification(crawl: dict, sync: dict, review: dict, learning: dict) -> list:
        from domains.looklyy import pipeline

        return pipeline.send_completion_notification(crawl, sync, review, learning)

    crawl = global_database_refresh()
    sync = user_database_sync()
    review_session = surface_for_manual_review()
    crawl >> sync >> review_session >> wait_for_manual_review
    learning = apply_model_learning(wait_for_manual_review.output)
    send_completion_notification(crawl, sync, wait_for_manual_review.output, learning)


looklyy_crawler_pipeline()
