"""A newcomer's first day on a running platform (``make start``'s processes, or a test's own):
every DAG of every team triggered through REST as its team's op user, exactly as the README's
"Trigger a DAG as a team user" shows (``{"logical_date": null}``; the seed's example conf for
the two triggered hss_workflow DAGs), looklyy's review completed through its stand-in, and
hss_workflow's daily DAG handed a new training CSV.

Used by ``tests/test_first_day.py``; also runs against ``make start``:

    .venv/bin/python -m tests.newcomer            # prints one line per DAG, exits 1 unless all succeed
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from devplatform.platform import LocalPlatform

# every DAG of every team: dag_id -> team (the README's table)
DAGS: dict[str, str] = {
    "looklyy_crawler_pipeline": "looklyy",
    "ecommerce_ml_user_item_interactions": "ecommerce_ml",
    "ecommerce_ml_article_content": "ecommerce_ml",
    "ecommerce_ml_article_embeddings": "ecommerce_ml",
    "ecommerce_ml_customer_features": "ecommerce_ml",
    "ecommerce_ml_time_series": "ecommerce_ml",
    "ecommerce_ml_reviews_nlp": "ecommerce_ml",
    "ecommerce_ml_events_funnels": "ecommerce_ml",
    "comprehensive_analysis": "hss_workflow",
    "ml_training_smart_ensemble": "hss_workflow",
    "daily_model_training": "hss_workflow",
    "ml_training_pipeline": "aurora",
    "feature_engineering_pipeline": "aurora",
    "prediction_pipeline": "aurora",
    "data_quality_pipeline": "aurora",
    "bullhorn_sync_optimized": "referral",
}
FINISHED = {"success", "failed"}
# DAGs that work on what another DAG wrote (their first task says so and fails until it is
# there): on a fresh platform a newcomer starts them once that DAG has run (the README's table).
PREREQUISITES: dict[str, list[str]] = {
    "prediction_pipeline": ["ml_training_pipeline"],  # a current model of each target
    "ecommerce_ml_article_embeddings": ["ecommerce_ml_article_content"],  # article_features
    # the day's interactions and article_content
    "ecommerce_ml_customer_features": ["ecommerce_ml_user_item_interactions", "ecommerce_ml_article_content"],
    "ecommerce_ml_time_series": ["ecommerce_ml_user_item_interactions", "ecommerce_ml_article_content"],
}


@dataclass
class Run:
    dag_id: str
    team: str
    run_id: str
    triggered_at: datetime
    conf: dict = field(default_factory=dict)
    state: str = "queued"
    detail: dict = field(default_factory=dict)  # the run as the API returns it, once finished
    tasks: dict[str, str] = field(default_factory=dict)


class Newcomer:
    """What a new user does with the README in hand, against one running platform."""

    def __init__(self, platform: LocalPlatform, standin_urls: dict[str, str] | None = None) -> None:
        self.platform = platform
        self.api = platform.config.api_url
        self.logins = platform.logins()
        self.tokens: dict[str, str] = {}
        # looklyy's stand-in (its admin completes the open review); `make start` serves it on the settings' port
        self.standin_urls = standin_urls or {}

    # -- the README's commands ------------------------------------------------------------------
    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = requests.post(f"{self.api}/auth/token", json={"username": user, "password": self.logins[user]}, timeout=30)
            r.raise_for_status()
            self.tokens[user] = r.json()["access_token"]
        return self.tokens[user]

    def call(self, team: str, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(f'{team}_op')}"}
        return requests.request(method, f"{self.api}/api/v2{path}", headers=headers, timeout=60, **kw)

    def trigger(self, dag_id: str, conf: dict | None = None) -> Run:
        team = DAGS[dag_id]
        r = self.call(team, "PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert r.status_code == 200, (dag_id, r.status_code, r.text)
        body = {"logical_date": None, **({"conf": conf} if conf else {})}
        r = self.call(team, "POST", f"/dags/{dag_id}/dagRuns", json=body)
        assert r.status_code == 200, (dag_id, r.status_code, r.text)
        run = r.json()
        assert run["logical_date"] is None and run["data_interval_start"] is None, run  # what the README's trigger makes
        return Run(dag_id, team, run["dag_run_id"], datetime.fromisoformat(run["run_after"]), conf or {})

    def refresh(self, run: Run) -> Run:
        r = self.call(run.team, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}")
        r.raise_for_status()
        run.detail = r.json()
        run.state = run.detail["state"]
        tis = self.call(run.team, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances", params={"limit": 200})
        tis.raise_for_status()
        run.tasks = {ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
                     for ti in tis.json()["task_instances"]}
        return run

    def wait(self, run: Run, timeout: float = 600) -> Run:
        deadline = time.monotonic() + timeout
        while self.refresh(run).state not in FINISHED and time.monotonic() < deadline:
            time.sleep(3)
        return run

    # -- what the domains need from a person ----------------------------------------------------
    def hss_roots(self) -> tuple[Path, Path]:
        env = self.platform.team_runtime("hss_workflow").local_env()
        return Path(env["HSS_WORKFLOW_SONGS_ROOT"]), Path(env["HSS_WORKFLOW_TRAINING_ROOT"])

    def seed_confs(self) -> dict[str, dict]:
        """The seed's example confs, their paths under the roots the local platform sets."""
        from domains.hss_workflow.local.samples import SAMPLE_CSV

        songs, training = self.hss_roots()
        return {
            "comprehensive_analysis": {"song_id": "example_song_123", "song_path": str(songs / "example.mp3")},
            "ml_training_smart_ensemble": {"dataset_path": str(training / SAMPLE_CSV), "training_id": "airflow_smart_training_1",
                                           "batch_size": 400, "max_concurrent_requests": 50},
        }

    def drop_new_training_csv(self) -> Path:
        """A training file the daily DAG has never seen (new content), written as the team's
        user would: into the drop folder, owned by the team."""
        from domains.hss_workflow.local.samples import write_dataset

        _, training = self.hss_roots()
        path = training / "incoming" / f"songs_{time.time_ns()}.csv"
        tmp = path.with_suffix(".part")
        write_dataset(tmp, 600, seed=time.time_ns() % 1_000_003)
        user = self.platform.team_runtime("hss_workflow").user
        if user:
            shutil.chown(tmp, user.uid, user.gid)
        os.chmod(tmp, 0o600)
        tmp.rename(path)  # the sensor's glob never sees a half-written CSV
        return path

    def complete_looklyy_review(self) -> bool:
        """The looklyy admin completes the open review (the stand-in's admin call, README)."""
        url = self.standin_urls.get("looklyy_api", "http://127.0.0.1:18201")
        r = requests.post(f"{url}/api/admin/review/complete-open", headers={"X-API-Key": "looklyy-dev-key"}, timeout=30)
        return r.status_code == 200 and bool(r.json()["completed"])

    # -- the whole day ----------------------------------------------------------------------------
    def run_all(self, timeout: float = 1500, dag_ids: list[str] | None = None, confs: dict[str, dict] | None = None,
                after_prerequisites: bool = True) -> dict[str, Run]:
        """Trigger every DAG (each once its prerequisites' runs succeeded, unless
        ``after_prerequisites`` is False) and wait until every run has finished."""
        dag_ids = dag_ids or list(DAGS)
        confs = self.seed_confs() if confs is None else confs
        if "daily_model_training" in dag_ids:
            self.drop_new_training_csv()
        runs: dict[str, Run] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for dag_id in dag_ids:
                needs = PREREQUISITES.get(dag_id, []) if after_prerequisites else []
                if dag_id not in runs and all(n in runs and runs[n].state == "success" for n in needs if n in dag_ids):
                    runs[dag_id] = self.trigger(dag_id, confs.get(dag_id))
            for run in runs.values():
                if run.state not in FINISHED:
                    self.refresh(run)
            looklyy = runs.get("looklyy_crawler_pipeline")
            if looklyy and looklyy.state not in FINISHED:
                # the person reviewing: whatever review is open (unpausing also starts the DAG's
                # latest scheduled run, which may wait for its review before ours can run)
                self.complete_looklyy_review()
            if len(runs) == len(dag_ids) and all(r.state in FINISHED for r in runs.values()):
                break
            blocked = [d for d in dag_ids if d not in runs
                       and any(runs.get(n) and runs[n].state == "failed" for n in PREREQUISITES.get(d, []))]
            if blocked and all(r.state in FINISHED for r in runs.values()):
                break  # a prerequisite failed: its dependents are never started
            time.sleep(3)
        for run in runs.values():
            self.refresh(run)
        return runs


def report(runs: dict[str, Run]) -> str:
    lines = [f"{'DAG':40} {'team':13} {'state':8} {'minutes':>7} tasks not successful"]
    for run in runs.values():
        minutes = ""
        if run.detail.get("start_date") and run.detail.get("end_date"):
            took = datetime.fromisoformat(run.detail["end_date"]) - datetime.fromisoformat(run.detail["start_date"])
            minutes = f"{took.total_seconds() / 60:.1f}"
        bad = {t: s for t, s in run.tasks.items() if s not in ("success", "skipped")}
        lines.append(f"{run.dag_id:40} {run.team:13} {run.state:8} {minutes:>7} {bad or ''}")
    ok = sum(r.state == "success" for r in runs.values())
    lines.append(f"{ok} of {len(runs)} DAG runs succeeded")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    newcomer = Newcomer(LocalPlatform(quiet=True))
    result = newcomer.run_all()
    print(report(result))
    sys.exit(0 if all(r.state == "success" for r in result.values()) else 1)
