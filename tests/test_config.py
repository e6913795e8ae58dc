"""PlatformConfig reads its environment when an instance is made; the Dockerfile's ENV is read as Docker reads it."""

from __future__ import annotations

from pathlib import Path

from devplatform.config import PlatformConfig, dockerfile_env

PORT_VARS = {
    "pg_port": "PLATFORM_PG_PORT",
    "api_port": "PLATFORM_API_PORT",
    "smtp_port": "PLATFORM_SMTP_PORT",
    "trigger_log_port": "PLATFORM_TRIGGER_LOG_PORT",
    "worker_log_port": "PLATFORM_WORKER_LOG_PORT",
}


def test_configs_built_with_different_environments_in_one_process_differ(monkeypatch, tmp_path):
    for i, var in enumerate(PORT_VARS.values()):
        monkeypatch.setenv(var, str(41000 + i))
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "first"))
    first = PlatformConfig()
    for i, var in enumerate(PORT_VARS.values()):
        monkeypatch.setenv(var, str(42000 + i))
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "second"))
    second = PlatformConfig()

    assert [getattr(first, f) for f in PORT_VARS] == [41000, 41001, 41002, 41003, 41004]
    assert [getattr(second, f) for f in PORT_VARS] == [42000, 42001, 42002, 42003, 42004]
    assert (first.state, second.state) == ((tmp_path / "first").resolve(), (tmp_path / "second").resolve())
    assert first.airflow_env()["AIRFLOW__API__PORT"] == "41001"
    assert second.airflow_env()["AIRFLOW__API__PORT"] == "42001"
    assert second.airflow_env()["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "42004"


def test_explicit_fields_win_over_the_environment_and_defaults_apply_without_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PLATFORM_PG_PORT", "41000")
    assert PlatformConfig(state=tmp_path, pg_port=43000).pg_port == 43000
    for var in PORT_VARS.values():
        monkeypatch.delenv(var, raising=False)
    cfg = PlatformConfig(state=tmp_path)
    assert (cfg.pg_port, cfg.api_port, cfg.smtp_port, cfg.trigger_log_port, cfg.worker_log_port) == (
        54320, 8080, 1025, 8794, 8793)


def test_dockerfile_env_reads_docker_syntax():
    text = (
        "# ENV COMMENTED=out\n"
        "FROM image:1\n"
        "ENV A=1 \\\n"
        "    B=\"two words\" \\\n"
        "# a comment inside the continuation\n"
        "    C='[{\"k\": \"v\"}]'\n"
        "RUN echo 'ENV D=no'\n"
        "env E=5\n"
    )
    assert dockerfile_env(text) == {"A": "1", "B": "two words", "C": '[{"k": "v"}]', "E": "5"}


def test_dockerfile_env_reads_the_project_dockerfile():
    env = dockerfile_env()
    assert env["PYTHONPATH"] == "/usr/local/airflow"
    assert Path(env["PYTHONPATH"]).is_absolute()


def test_shared_assets_reach_airflow_and_a_malformed_value_is_refused(monkeypatch, tmp_path):
    import pytest

    monkeypatch.delenv("PLATFORM_SHARED_ASSETS", raising=False)
    assert "AIRFLOW__PLATFORM__SHARED_ASSETS" not in PlatformConfig(state=tmp_path).airflow_env()
    monkeypatch.setenv("PLATFORM_SHARED_ASSETS", '{"ecommerce_ml.table.customer_features": ["aurora"]}')
    env = PlatformConfig(state=tmp_path).airflow_env()
    assert env["AIRFLOW__PLATFORM__SHARED_ASSETS"] == '{"ecommerce_ml.table.customer_features": ["aurora"]}'
    monkeypatch.setenv("PLATFORM_SHARED_ASSETS", '["aurora"]')
    with pytest.raises(ValueError, match="PLATFORM_SHARED_ASSETS must be a JSON object"):
        PlatformConfig(state=tmp_path).airflow_env()


AIRFLOW_DEFAULTS = {  # Airflow 3.3's own values of the heartbeat settings (config.yml)
    "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "5",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "1.0",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "90.0",
    "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "3",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "300",
}


def test_the_heartbeat_timeout_outlasts_every_execution_api_retry_and_airflows_defaults_do_not(tmp_path):
    """Issue 26, the api-server row: a try the scheduler fails while the task still runs finishes
    and writes its output, and so does its retry. The image's settings keep the scheduler's
    heartbeat timeout above the longest a task can go on without reaching the api-server; the
    scheduler and every team's worker get them."""
    import pytest

    from devplatform.config import HEARTBEAT_KEYS, heartbeat_budget, heartbeat_settings
    from devplatform.tenants import TeamRuntime

    image = heartbeat_settings()
    assert image == {k: dockerfile_env()[k] for k in HEARTBEAT_KEYS}
    budget = heartbeat_budget(image)
    assert budget.outage_tolerance >= 180, "an api-server restart took up to 3 min on a loaded 2-core machine"
    assert budget.heartbeat_timeout > budget.give_up_after + 5
    cfg = PlatformConfig(state=tmp_path, domains=["referral"])
    assert {k: cfg.airflow_env()[k] for k in HEARTBEAT_KEYS} == image
    assert {k: TeamRuntime(cfg, "referral").worker_env()[k] for k in HEARTBEAT_KEYS} == image

    # Airflow's defaults never fail a running try (a call gives up within 40 s), but a task
    # outlives only a 4-s outage; the platform's earlier settings (12 tries, waits from 3 s to
    # 90 s, Airflow's 300 s heartbeat timeout) rode out 33 s at least, and a call could go on for 550 s
    defaults = heartbeat_budget(AIRFLOW_DEFAULTS)
    assert (defaults.outage_tolerance, defaults.give_up_after) == (4, 40)
    earlier = heartbeat_budget({**AIRFLOW_DEFAULTS, "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "12",
                                "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "3"})
    assert (earlier.outage_tolerance, earlier.give_up_after) == (33, 550)
    assert any("is not above" in problem for problem in earlier.problems())
    with pytest.raises(ValueError, match="task_instance_heartbeat_timeout 20 s"):
        heartbeat_settings({**image, "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20"})
    with pytest.raises(ValueError, match="max_failed_heartbeats is 3"):
        heartbeat_settings({**image, "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "3"})


def test_the_heartbeat_budget_is_what_the_task_sdk_really_does_with_these_settings():
    """The budget's arithmetic against the task SDK's own client and supervisor, imported in a
    process with the image's settings: its retry policy's waits and attempts, its heartbeat limits."""
    import json
    import os
    import subprocess
    import sys

    from devplatform.config import heartbeat_budget, heartbeat_settings

    image = heartbeat_settings()
    code = """
import json
from unittest import mock
from airflow.sdk.api.client import Client
from airflow.sdk.execution_time import supervisor
policy = Client.request.retry  # tenacity's Retrying of the client's request method
waits, stops = [], []
for n in range(1, 40):
    state = mock.Mock(attempt_number=n, seconds_since_start=0.0)
    waits.append([policy.wait(state) for _ in range(20)])
    stops.append(policy.stop(state))
print(json.dumps({"waits": waits, "attempts": stops.index(True) + 1, "max_failed": supervisor.MAX_FAILED_HEARTBEATS,
                  "timeout": supervisor.HEARTBEAT_TIMEOUT, "interval": supervisor.MIN_HEARTBEAT_INTERVAL}))
"""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **image}, capture_output=True, text=True,
                         check=True).stdout
    sdk = json.loads(out.strip().splitlines()[-1])
    budget = heartbeat_budget(image)
    assert sdk["attempts"] == budget.retries
    waits = sdk["waits"][:budget.retries - 1]  # the sleeps between the attempts
    assert sum(min(w) for w in waits) >= budget.outage_tolerance
    assert sum(max(w) for w in waits) + budget.retries * 5 <= budget.give_up_after
    assert (sdk["max_failed"], sdk["timeout"], sdk["interval"]) == (1, budget.heartbeat_timeout, 5)
def test_worker_settings_switch_between_tuned_and_previous(monkeypatch, tmp_path):
    """The benchmark's before/after switch (PLATFORM_WORKER_SETTINGS): "tuned" by default, and
    the workers' command and environment follow it; anything else is refused."""
    import json

    import pytest

    from devplatform.tenants import WORKER_TUNING, TeamRuntime, worker_concurrency

    monkeypatch.delenv("PLATFORM_WORKER_SETTINGS", raising=False)
    tuned = TeamRuntime(PlatformConfig(state=tmp_path), "referral")
    monkeypatch.setenv("PLATFORM_WORKER_SETTINGS", "previous")
    previous = TeamRuntime(PlatformConfig(state=tmp_path), "referral")
    n = worker_concurrency("referral")
    cmd = tuned.worker_command()
    assert cmd[cmd.index("--autoscale") + 1] == f"{n},0" and cmd[cmd.index("--concurrency") + 1] == str(n)
    assert "--autoscale" not in previous.worker_command()
    env, old = tuned.worker_env(), previous.worker_env()
    assert {k: env[k] for k in WORKER_TUNING} == WORKER_TUNING and not set(WORKER_TUNING) & set(old)
    assert json.loads(env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"]) == {"imports": ["platform_runtime.celery_preload"]}
    monkeypatch.setenv("PLATFORM_WORKER_SETTINGS", "fast")
    with pytest.raises(ValueError, match="PLATFORM_WORKER_SETTINGS"):
        PlatformConfig(state=tmp_path)


def test_idle_settings_lean_starts_no_teamless_triggerer_and_flower_on_demand(monkeypatch, tmp_path):
    """PLATFORM_IDLE_SETTINGS (issue 25's idle memory): "lean" by default, no team-less triggerer
    (only the team ones) and each team's Flower not started by make start but on demand (still a
    program of supervisord's: make flower starts it); "previous" as before; anything else refused."""
    import pytest

    from devplatform.platform import LocalPlatform

    monkeypatch.delenv("PLATFORM_IDLE_SETTINGS", raising=False)
    monkeypatch.delenv("PLATFORM_EXECUTOR", raising=False)
    lean = LocalPlatform(PlatformConfig(state=tmp_path), quiet=True)
    monkeypatch.setenv("PLATFORM_IDLE_SETTINGS", "previous")
    previous = LocalPlatform(PlatformConfig(state=tmp_path), quiet=True)
    teams = lean.config.domains
    assert [c for c in lean.airflow_components() if c.startswith("triggerer")] == [f"triggerer-{d}" for d in teams]
    assert [c for c in previous.airflow_components() if c.startswith("triggerer")] == [
        "triggerer", *(f"triggerer-{d}" for d in teams)]
    for d in teams:
        assert lean.on_demand(f"flower-{d}") and not previous.on_demand(f"flower-{d}")
        assert f"flower-{d}" in lean.process_names()  # supervisord's program, started by make flower
        assert not lean.on_demand(f"worker-{d}") and not lean.on_demand(f"triggerer-{d}")
    monkeypatch.setenv("PLATFORM_IDLE_SETTINGS", "none")
    with pytest.raises(ValueError, match="PLATFORM_IDLE_SETTINGS"):
        PlatformConfig(state=tmp_path)


def test_a_stand_in_of_a_platform_on_its_own_state_reads_that_platforms_config(monkeypatch, tmp_path):
    """`serve-standin` builds its PlatformConfig from its environment: it must be its platform's
    (a test's or a benchmark's state folder and ports), not make start's defaults."""
    from devplatform.platform import LocalPlatform

    for var in ("PLATFORM_STATE_DIR", "PLATFORM_PG_PORT", "PLATFORM_DOMAIN_REDIS_PORT"):
        monkeypatch.delenv(var, raising=False)
    p = LocalPlatform(PlatformConfig(state=tmp_path / "bench", pg_port=45001, domain_redis_port=45002), quiet=True)
    env = p.standin_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen = PlatformConfig()
    assert (seen.state, seen.pg_port, seen.domain_redis_port) == ((tmp_path / "bench").resolve(), 45001, 45002)
    assert seen.settings_vars()["PLATFORM_PG_PORT"] == "45001"
