"""Fixtures of the lineage explorer's tests: a fresh ``lineage`` database on the session's
embedded PostgreSQL, DAGs and teams in the (real, migrated) metadata database, and the
plugin's app mounted in a FastAPI app together with Airflow's real simple auth manager
(tokens from its own ``POST /auth/token``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.lineage_explorer.events import NAMESPACE, three_teams

TEAM_KEYS = {"referral": "key-referral-" + secrets.token_hex(8), "looklyy": "key-looklyy-" + secrets.token_hex(8),
             "aurora": "key-aurora-" + secrets.token_hex(8)}
PLATFORM_KEY = "key-platform-" + secrets.token_hex(8)
USERS = "admin:admin,referral_op:op:referral,looklyy_op:op:looklyy,aurora_op:op:aurora"


@pytest.fixture
def lineage_dsn(pg) -> Iterator[str]:
    dbname = f"lineage_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    pg.ensure_database(dbname, "lineage", password)
    yield f"postgresql://lineage:{password}@127.0.0.1:{pg.port}/{dbname}"
    pg.drop_database(dbname)


@pytest.fixture
def store(lineage_dsn):
    from lineage_explorer.store import LineageStore

    s = LineageStore(lineage_dsn)
    yield s
    s.close()


def seed_metadata(dags, claim: bool = False) -> dict[str, str]:
    """Teams, one bundle per team and the DAGs, as the dag-processor records them.

    ``claim``: a DAG already recorded (by an earlier test of the session, under another bundle)
    is moved into its team's bundle here; returns {dag_id: its previous bundle} for
    :func:`restore_bundles`."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        for team in sorted({d.team for d in dags}):
            t = session.get(Team, team) or Team(name=team)
            session.add(t)
            bundle = session.get(DagBundleModel, f"lineage_tests_{team}") or DagBundleModel(name=f"lineage_tests_{team}")
            if t not in bundle.teams:
                bundle.teams.append(t)
            session.add(bundle)
        session.flush()
        moved = {}
        for d in dags:
            existing = session.get(DagModel, d.dag_id)
            if existing is None:
                session.add(DagModel(dag_id=d.dag_id, bundle_name=f"lineage_tests_{d.team}", fileloc=f"/dags/{d.dag_id}.py"))
            elif claim and existing.bundle_name != f"lineage_tests_{d.team}":
                moved[d.dag_id] = existing.bundle_name
                existing.bundle_name = f"lineage_tests_{d.team}"
    return moved


def restore_bundles(moved: dict[str, str]) -> None:
    """Give the DAGs :func:`seed_metadata` claimed their previous bundles back."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        for dag_id, bundle in moved.items():
            session.get(DagModel, dag_id).bundle_name = bundle


@pytest.fixture
def explorer(lineage_dsn, monkeypatch) -> Iterator:
    """``explorer.client`` (a TestClient on the api-server-like app), ``explorer.token(user)``."""
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from lineage_explorer_plugin import URL_PREFIX

    from lineage_explorer.api import create_app
    from lineage_explorer.config import Settings

    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    seed_metadata(three_teams())
    settings = Settings(dsn=lineage_dsn, ingest_keys=TEAM_KEYS, platform_key=PLATFORM_KEY, retention_days=90,
                        namespace=NAMESPACE)
    purge_cached_app()
    app = FastAPI()
    sub = create_app(settings_factory=lambda: settings)
    app.mount(URL_PREFIX, sub)  # as airflow.api_fastapi.app.init_plugins does
    init_auth_manager(app)
    client = TestClient(app)

    class Explorer:
        prefix = URL_PREFIX

        def __init__(self) -> None:
            self.client = client
            self.app = app
            self.sub = sub
            self._tokens: dict[str, str] = {}

        def token(self, user: str) -> str:
            if user not in self._tokens:
                from airflow.configuration import AIRFLOW_HOME

                passwords = json.loads(open(f"{AIRFLOW_HOME}/simple_auth_manager_passwords.json.generated").read())
                r = client.post("/auth/token", json={"username": user, "password": passwords[user]})
                assert r.status_code == 201, r.text
                self._tokens[user] = r.json()["access_token"]
            return self._tokens[user]

        def get(self, path: str, user: str | None, **params):
            headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
            return client.get(self.prefix + path, params=params, headers=headers)

        def post_event(self, event: dict, key: str | None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return client.post(self.prefix + "/api/v1/lineage", json=event, headers=headers)

        def load(self, events: list[dict], key: Callable[[dict], str]) -> None:
            for e in events:
                r = self.post_event(e, key(e))
                assert r.status_code == 201, r.text

    yield Explorer()
    sub.state.services()[1].close()
    purge_cached_app()


def team_key_for(event: dict) -> str:
    """The ingest key the job's team's worker holds (DAG-level events: the platform key)."""
    name = event["job"]["name"]
    if "." not in name:
        return PLATFORM_KEY
    team = {d.dag_id: d.team for d in three_teams()}[name.split(".")[0]]
    return TEAM_KEYS[team]
