"""
### ecommerce_ml_events_funnels

Every 15 minutes: the quarter hour that just closed, exactly (events whose `ts` is in the
run's data interval). Sessionises clickstream events by `session_key` (30 minutes of
inactivity end a session), counts the view → add_to_cart → purchase funnel per interval
(`funnel_interval`) and per article (`funnel_article`, also a Parquet artifact), keeps each
session's slice in the lake (`event_sessions`: day-partitioned Parquet, one registered file per
slot) and rejects bad events with reasons (`event_rejections`).

`validate_events` → `sessionise_and_funnel` → `reprocess_late_slots`

Late events land in later part files of their own slot; each run processes again the slots
of the last 2 hours that received such files. Details: domains/ecommerce_ml/README.md.
"""

from datetime import timedelta

from airflow.sdk import dag, task

from domains.ecommerce_ml import assets
from domains.ecommerce_ml.timetables import cron_intervals
from shared.dag_defaults import dag_kwargs

OUTPUTS = [assets.artifact("funnel_article"), assets.artifact("event_sessions"), assets.table("funnel_interval"),
           assets.table("funnel_article"), assets.table("event_rejections")]


@dag(schedule=cron_intervals("*/15 * * * *"),
     **dag_kwargs("ecommerce_ml", doc_md=__doc__, description="clickstream -> sessions and funnels per 15 minutes",
                  tags=["ml-dataset"], dagrun_timeout=timedelta(minutes=30),
                  default_args={"execution_timeout": timedelta(minutes=10)}))
def ecommerce_ml_events_funnels():
    @task(multiple_outputs=False, inlets=[assets.RAW_EVENTS, assets.RAW_ARTICLES])
    def validate_events() -> dict:
        from domains.ecommerce_ml import events
        from domains.ecommerce_ml.common import Run

        return events.validate_events(Run.from_context())

    @task(multiple_outputs=False, inlets=[assets.RAW_EVENTS, assets.RAW_ARTICLES], outlets=OUTPUTS)
    def sessionise_and_funnel() -> dict:
        from domains.ecommerce_ml import events
        from domains.ecommerce_ml.common import Run

        return events.process_interval(Run.from_context())

    @task(multiple_outputs=False, inlets=[assets.RAW_EVENTS], outlets=OUTPUTS)
    def reprocess_late_slots() -> dict:
        from domains.ecommerce_ml import events
        from domains.ecommerce_ml.common import Run

        return events.reprocess_late_slots(Run.from_context())

    validate_events() >> sessionise_and_funnel() >> reprocess_late_slots()


ecommerce_ml_events_funnels()
