"""The seed's access control on the platform's users: the ML team (``aurora_op``) triggers the
aurora DAGs and reads their logs; ops (``aurora_viewer``) only view; no other team sees them.
Checked with the simple auth manager's own authorization (the api-server's)."""

from __future__ import annotations

import pytest

from devplatform.config import simple_auth_users

DAGS = ("ml_training_pipeline", "data_quality_pipeline", "feature_engineering_pipeline", "prediction_pipeline")


def platform_user(name: str):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    users = dict(u.split(":", 1) for u in simple_auth_users(["aurora", "referral"]).split(","))
    role, _, team = users[name].partition(":")
    return SimpleAuthManagerUser(username=name, role=role, teams=[team] if team else [])


def allowed(user, method: str, entity, dag_id: str, team: str = "aurora") -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    return SimpleAuthManager().is_authorized_dag(method=method, user=user, access_entity=entity,
                                                 details=DagDetails(id=dag_id, team_name=team))


@pytest.mark.parametrize("dag_id", DAGS)
def test_ml_team_triggers_and_reads_logs_ops_view_only(dag_id):
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    ml, ops, other = platform_user("aurora_op"), platform_user("aurora_viewer"), platform_user("referral_op")
    assert allowed(ml, "POST", DagAccessEntity.RUN, dag_id)  # trigger
    assert allowed(ml, "GET", DagAccessEntity.TASK_LOGS, dag_id)
    assert allowed(ops, "GET", DagAccessEntity.RUN, dag_id) and allowed(ops, "GET", DagAccessEntity.TASK_LOGS, dag_id)
    assert not allowed(ops, "POST", DagAccessEntity.RUN, dag_id)  # no trigger
    assert not allowed(ops, "PUT", DagAccessEntity.TASK_INSTANCE, dag_id)  # no clear / mark
    assert not allowed(other, "GET", DagAccessEntity.RUN, dag_id) and not allowed(other, "POST", DagAccessEntity.RUN, dag_id)
