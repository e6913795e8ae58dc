"""
### bullhorn_sync_optimized

Every 6 hours: Bullhorn candidates and job orders -> the referral database, embeddings for
what changed, matches from the ML service, and a summary email.

`sync_candidates` → `generate_candidate_embeddings` → `sync_positions` →
`generate_position_embeddings` → `find_matches` → `notify`

- Incremental on the stored `(dateLastModified, id)` watermark, 500 records a page;
  contract-breaking records go to `rejected_records` and are re-read by id every run until
  they load. The sync task fails (after storing the valid records) when more than
  `referral_max_rejected_share` (default 0.05) of an entity's records, or a whole page, are rejected.
- Matches at or above `referral_matching_score_threshold` (default 70) are kept; matches of
  closed/deleted positions and deleted candidates are retired.
- `notify` is skipped when the run changed nothing.
- The heavy tasks (both embedding tasks and `find_matches`: they call the ML service and
  hold the vectors in memory) run in the team's pool `referral_default` (settings.yaml),
  which caps how many of them the team runs at once across its DAGs and backfills.
- Differs from the platform defaults (`shared/dag_defaults.py`): 3 retries from a
  5-minute delay.

Connections: `referral_postgres`, `referral_bullhorn`, `referral_ml_service`.
Variables: `referral_matching_score_threshold`, `referral_max_rejected_share`, `referral_alert_emails`.
"""

from datetime import timedelta

from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 */6 * * *",
    **dag_kwargs(
        "referral",
        doc_md=__doc__,
        description="Sync Bullhorn data and run matching",
        tags=["etl", "bullhorn", "production"],
        default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
    ),
)
def bullhorn_sync_optimized():
    @task(multiple_outputs=False)
    def sync_candidates(run_id=None) -> dict:
        from airflow.sdk import Variable

        from domains.referral.sync import sync_entity

        limit = float(Variable.get("referral_max_rejected_share", default="0.05"))
        return sync_entity("Candidate", run_id, max_rejected_share=limit)

    @task(multiple_outputs=False)
    def generate_candidate_embeddings() -> dict:
        from domains.referral.embeddings import generate_embeddings

        return generate_embeddings("candidates")

    @task(multiple_outputs=False)
    def sync_positions(run_id=None) -> dict:
        from airflow.sdk import Variable

        from domains.referral.sync import sync_entity

        limit = float(Variable.get("referral_max_rejected_share", default="0.05"))
        return sync_entity("JobOrder", run_id, max_rejected_share=limit)

    @task(multiple_outputs=False)
    def generate_position_embeddings() -> dict:
        from domains.referral.embeddings import generate_embeddings

        return generate_embeddings("positions")

    @task(multiple_outputs=False)
    def find_matches(run_id=None) -> dict:
        from airflow.sdk import Variable

        from domains.referral.matching import find_matches as score_and_match

        threshold = float(Variable.get("referral_matching_score_threshold", default="70"))
        return score_and_match(run_id, threshold)

    @task
    def notify(candidates: dict, candidate_embeddings: dict, positions: dict, position_embeddings: dict,
               matches: dict, run_id=None) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        from domains.referral.report import changed_anything, send_run_summary

        results = {"candidates": candidates, "candidate_embeddings": candidate_embeddings, "positions": positions,
                   "position_embeddings": position_embeddings, "matches": matches}
        if not changed_anything(results):
            raise AirflowSkipException("nothing changed in this run: no summary sent")
        return send_run_summary(run_id, results)

    c = sync_candidates()
    ce = generate_candidate_embeddings()
    p = sync_positions()
    pe = generate_position_embeddings()
    m = find_matches()
    c >> ce >> p >> pe >> m
    notify(c, ce, p, pe, m)


bullhorn_sync_optimized()
