"""
### data_quality_pipeline

Every 4 hours: the seed's data quality checks in four parallel groups, a stored report, and
a mail for critical findings only.

`check_life_events` | `check_users` | `check_integrations` | `check_gamification` →
`store_quality_report` → `send_critical_alerts`

- Checks (`domains/aurora/quality.py`, pandera schemas, one named check each with a severity
  critical / error / warning): life events (no duplicates, not in the future, duration over 0
  and under 24 h, energy/mood 1-10, required fields), users (email format, unique emails,
  subscription tiers, active status consistency), integrations (freshness under 48 h, known
  providers, sync success rate, completeness), gamification (no negative XP, level-XP
  consistency, valid achievement unlocks, no orphaned records).
- `store_quality_report`: `quality_runs` (one row per run: status and failed checks per
  severity) and `quality_results` (every check's rows checked and failing, failure rate and
  sample ids: the metrics for the monitoring dashboard). A rerun replaces its own rows.
- `send_critical_alerts`: one mail per run to `aurora_alert_emails` naming each critical
  check, its count and sample ids (SmtpNotifier, `smtp_default`); nothing for errors and
  warnings, nothing again on a rerun.

Connections: `aurora_postgres`, `smtp_default`. Access: domains/aurora/README.md.
"""

from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 */4 * * *",
    **dag_kwargs("aurora", doc_md=__doc__, description="Monitor data quality and detect issues",
                 tags=["data-quality"]),
)
def data_quality_pipeline():
    @task(multiple_outputs=False)
    def check_life_events(**context) -> list:
        from domains.aurora.quality import check_group
        from shared.runs import RunWindow

        return check_group("life_events", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def check_users(**context) -> list:
        from domains.aurora.quality import check_group
        from shared.runs import RunWindow

        return check_group("users", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def check_integrations(**context) -> list:
        from domains.aurora.quality import check_group
        from shared.runs import RunWindow

        return check_group("integrations", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def check_gamification(**context) -> list:
        from domains.aurora.quality import check_group
        from shared.runs import RunWindow

        return check_group("gamification", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def store_quality_report(groups: list, **context) -> dict:
        from domains.aurora.quality import store_quality_report
        from shared.runs import RunWindow, run_key

        return store_quality_report(run_key(context), RunWindow.from_context(context).as_of, groups)

    @task(multiple_outputs=False)
    def send_critical_alerts(report: dict, **context) -> dict:
        from domains.aurora.quality import send_critical_alerts
        from shared.runs import RunWindow

        return send_critical_alerts(report, RunWindow.from_context(context).as_of)

    report = store_quality_report([check_life_events(), check_users(), check_integrations(), check_gamification()])
    send_critical_alerts(report)


data_quality_pipeline()
