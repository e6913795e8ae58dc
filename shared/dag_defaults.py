"""Platform defaults for every DAG, set once here; a DAG file states only what differs.

    from shared.dag_defaults import dag_kwargs

    @dag(schedule="0 */6 * * *", **dag_kwargs("referral", doc_md=__doc__, default_args={"retries": 3}))
    def bullhorn_sync_optimized(): ...

Defaults: owner ``<domain>``, the team's pool ``<domain>_default`` (:func:`team_pool`: every
task of a team counts against its team's slots, declared in its settings.yaml), retries 2 with exponential backoff from 1 minute (capped at
15), 30-minute execution timeout, the failure notification to the domain's recipients,
catchup off, one active run at a time, tags that include the domain, and a run timeout
of 12 hours (longer than the longest wait a pipeline has: looklyy's 6-hour review).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

PLATFORM_DEFAULT_ARGS: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(minutes=30),
}


def team_pool(domain: str) -> str:
    """The pool every task of the team runs in unless it names another of its team's pools."""
    return f"{domain}_default"


def task_defaults(domain: str, **overrides: Any) -> dict[str, Any]:
    from shared.notifications import OnFailure

    args = {**PLATFORM_DEFAULT_ARGS, "owner": domain, "pool": team_pool(domain), "on_failure_callback": OnFailure(domain)}
    args.update(overrides)
    return args


def dag_kwargs(
    domain: str,
    *,
    doc_md: str | None,
    tags: list[str] | tuple[str, ...] = (),
    default_args: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``@dag``/``DAG`` with the platform defaults filled in."""
    import pendulum

    out: dict[str, Any] = {
        "start_date": pendulum.datetime(2024, 1, 1, tz="UTC"),
        "catchup": False,
        "dagrun_timeout": timedelta(hours=12),
        "max_active_runs": 1,
    }
    out.update(kwargs)
    out["doc_md"] = doc_md
    out["tags"] = sorted({domain, *tags})
    out["default_args"] = task_defaults(domain, **(default_args or {}))
    return out
