"""The HSS gateway's side of Airflow: start a workflow, follow it, read its result.

The seed's gateway POSTed to ``/api/v1/...`` with no credentials. Airflow 3 has the stable
REST API v2 behind a token: ``POST /auth/token`` with a team user's name and password (e.g.
``hss_workflow_op``) gives a JWT; the generated client ``apache-airflow-client`` sends it as
a bearer token. A conf that breaks the DAG's schema is refused with 400 before a run exists:
:class:`ConfRefused` carries Airflow's message, which names the field.

    from domains.hss_workflow.gateway import HssAirflowClient

    client = HssAirflowClient("http://127.0.0.1:8080", "hss_workflow_op", password)
    run_id = client.trigger("comprehensive_analysis",
                            {"song_id": "example_song_123", "song_path": "example.mp3"})
    state = client.wait(run_id, "comprehensive_analysis", timeout=600)   # "success" / "failed"
    result = client.result("comprehensive_analysis", run_id)             # aggregate_results' XCom

The user and password come from the gateway's own secret store, never from code.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.dag_run_api import DagRunApi
from airflow_client.client.api.x_com_api import XComApi
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import TriggerDAGRunPostBody

RESULT_TASK = {"comprehensive_analysis": "aggregate_results",
               "ml_training_smart_ensemble": "aggregate_training_results"}
FINISHED = ("success", "failed")


class ConfRefused(ValueError):
    """Airflow refused the conf (400/422): the message names the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HssAirflowClient:
    """A team user's session on Airflow's REST API v2 (see the module docstring)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        resp = requests.post(f"{self.base_url}/auth/token", json={"username": username, "password": password},
                             timeout=timeout)
        if resp.status_code >= 400:
            raise PermissionError(f"POST /auth/token for {username} answered {resp.status_code}")
        self.api = ApiClient(Configuration(host=self.base_url, access_token=resp.json()["access_token"]))
        self.runs, self.xcoms = DagRunApi(self.api), XComApi(self.api)

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        """Start a run now with ``conf``; its run_id. Raises ConfRefused for a bad conf."""
        body = TriggerDAGRunPostBody(conf=conf, logical_date=None, dag_run_id=run_id)
        try:
            return self.runs.trigger_dag_run(dag_id, body, _request_timeout=self.timeout).dag_run_id
        except ApiException as exc:
            if exc.status in (400, 422):
                raise ConfRefused(exc.status, _detail(exc)) from None
            raise

    def state(self, dag_id: str, run_id: str) -> str:
        return str(self.runs.get_dag_run(dag_id, run_id, _request_timeout=self.timeout).state.value)

    def wait(self, run_id: str, dag_id: str, timeout: float = 3600, poll: float = 5) -> str:
        """Poll the run until it has finished (or ``timeout``); its final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(dag_id, run_id)
            if state in FINISHED or time.monotonic() > deadline:
                return state
            time.sleep(poll)

    def result(self, dag_id: str, run_id: str) -> Any:
        """The aggregated result of a finished run (the last task's XCom)."""
        entry = self.xcoms.get_xcom_entry(dag_id, RESULT_TASK[dag_id], run_id, "return_value", deserialize=True,
                                          _request_timeout=self.timeout)
        value = entry.to_dict()["value"]  # the generated client's anyOf wrapper (native or string form)
        return json.loads(value) if isinstance(value, str) else value


def _detail(exc: ApiException) -> str:
    try:
        detail = json.loads(exc.body or "{}").get("detail")
    except ValueError:
        detail = None
    return str(detail or exc.reason or exc)
