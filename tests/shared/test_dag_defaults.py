"""The module's documentation states the defaults the code sets."""

from __future__ import annotations

import shared.dag_defaults as dag_defaults


def test_docstring_states_the_timeouts_the_code_sets():
    doc = " ".join(dag_defaults.__doc__.split())
    kwargs = dag_defaults.dag_kwargs("referral", doc_md=None)
    run_hours = kwargs["dagrun_timeout"].total_seconds() / 3600
    task_minutes = kwargs["default_args"]["execution_timeout"].total_seconds() / 60
    assert f"run timeout of {run_hours:g} hours" in doc
    assert f"{task_minutes:g}-minute execution timeout" in doc
    assert f"retries {kwargs['default_args']['retries']}" in doc
    assert kwargs["catchup"] is False and "catchup off" in doc
    assert kwargs["max_active_runs"] == 1 and "one active run at a time" in doc


def test_every_task_runs_in_its_teams_pool_and_every_domain_declares_it():
    """The platform names each team's default pool (``team_pool``); every domain's settings
    declare it (with its slots), so no DAG file names a pool that may not exist."""
    from devplatform.paths import domain_names
    from devplatform.policy import team_pools

    assert dag_defaults.dag_kwargs("aurora", doc_md=None)["default_args"]["pool"] == "aurora_default"
    assert dag_defaults.dag_kwargs("aurora", doc_md=None, default_args={"pool": "aurora_x"})["default_args"]["pool"] == "aurora_x"
    for domain in domain_names():
        assert dag_defaults.team_pool(domain) in team_pools(domain), domain
