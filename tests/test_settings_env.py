"""`make settings-env`: deploy mode takes every value from the environment and names all
missing ones at once; local mode fills the development defaults."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from devplatform import settings
from devplatform.paths import ROOT, domain_names

DEV_DEFAULTS = ("127.0.0.1", "api.password", "platform-secret", "looklyy-dev-key", "ml-dev-key", "54320")


def deployed_placeholders() -> dict[str, list[str]]:
    """NAME -> settings files, read straight from the files' ``airflow:`` sections."""
    out: dict[str, set[str]] = {}
    for d in domain_names():
        path = ROOT / "domains" / d / "settings.yaml"
        text = yaml.safe_dump(yaml.safe_load(path.read_text())["airflow"])
        for name in re.findall(r"\$\{([A-Z0-9_]+)", text):
            out.setdefault(name, set()).add(f"domains/{d}/settings.yaml")
    return {k: sorted(v) for k, v in out.items()}


def deploy_values() -> dict[str, str]:
    """A distinct, recognisable production value for every placeholder."""
    values = {name: f"prod-{name.lower()}" for name in deployed_placeholders()}
    values.update(PLATFORM_PG_HOST="db.prod.internal", PLATFORM_PG_PORT="6432", PLATFORM_REDIS_PORT="6380")
    return values


def clean_env(**extra: str) -> dict[str, str]:
    skip = {*deployed_placeholders(), "MODE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}  # e.g. `make pytest MODE=local`
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devplatform", "settings-env", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def no_placeholders_set(monkeypatch):
    for name in deployed_placeholders():
        monkeypatch.delenv(name, raising=False)


def test_deploy_mode_lists_every_missing_name_at_once_sorted_with_its_files(no_placeholders_set):
    expected = deployed_placeholders()
    assert {"PLATFORM_PG_HOST", "REFERRAL_BULLHORN_CLIENT_SECRET", "LOOKLYY_API_KEY"} <= set(expected)
    with pytest.raises(settings.MissingSettings) as e:
        settings.as_env(domain_names(), deploy=True)
    assert e.value.missing == expected
    assert expected["PLATFORM_PG_HOST"] == [f"domains/{d}/settings.yaml" for d in domain_names()]
    listed = [line.split()[0] for line in str(e.value).splitlines()[1:-1]]
    assert listed == sorted(expected)
    assert "domains/referral/settings.yaml" in next(
        line for line in str(e.value).splitlines() if line.split()[0] == "REFERRAL_BULLHORN_CLIENT_SECRET")


def test_deploy_mode_ignores_platform_values_and_treats_empty_as_missing(monkeypatch, no_placeholders_set):
    for name, value in deploy_values().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REFERRAL_BULLHORN_CLIENT_SECRET", "")
    monkeypatch.delenv("AURORA_DB_PASSWORD")
    platform_values = {"AURORA_DB_PASSWORD": "generated-locally", "PLATFORM_PG_HOST": "127.0.0.1"}
    with pytest.raises(settings.MissingSettings) as e:
        settings.as_env(domain_names(), platform_values, deploy=True)
    assert e.value.missing == {
        "AURORA_DB_PASSWORD": ["domains/aurora/settings.yaml"],
        "REFERRAL_BULLHORN_CLIENT_SECRET": ["domains/referral/settings.yaml"],
    }


def test_cli_deploy_is_the_default_and_stops_with_nothing_on_stdout(tmp_path):
    out = run_cli(env=clean_env(PLATFORM_STATE_DIR=str(tmp_path / "state")))
    assert out.returncode == 2
    assert out.stdout == ""
    for name in deployed_placeholders():
        assert re.search(rf"^\s+{name}\s", out.stderr, re.M), name
    assert not (tmp_path / "state").exists()  # deploy mode never touches the local platform's state


def test_cli_deploy_with_every_value_set_emits_them_and_no_development_default(tmp_path):
    values = deploy_values()
    out = run_cli("--deploy", env=clean_env(PLATFORM_STATE_DIR=str(tmp_path / "state"), **values))
    assert out.returncode == 0, out.stderr
    env = dict(line.split("=", 1) for line in shlex.split(out.stdout, posix=True) if "=" in line)
    for default in DEV_DEFAULTS:
        assert default not in out.stdout, default
    bullhorn = json.loads(env["AIRFLOW_CONN__REFERRAL___REFERRAL_BULLHORN"])
    assert bullhorn["extra"]["client_secret"] == values["REFERRAL_BULLHORN_CLIENT_SECRET"]
    assert bullhorn["host"] == values["REFERRAL_BULLHORN_URL"]
    for d in domain_names():
        pg = json.loads(env[f"AIRFLOW_CONN__{d.upper()}___{d.upper()}_POSTGRES"])
        assert (pg["host"], pg["port"], pg["password"]) == ("db.prod.internal", 6432, values[f"{d.upper()}_DB_PASSWORD"])


def test_cli_local_mode_fills_the_development_defaults_and_platform_values(tmp_path):
    out = run_cli("--local", env=clean_env(PLATFORM_STATE_DIR=str(tmp_path / "state"), PLATFORM_PG_PORT="45432"))
    assert out.returncode == 0, out.stderr
    env = dict(line.split("=", 1) for line in shlex.split(out.stdout, posix=True) if "=" in line)
    bullhorn = json.loads(env["AIRFLOW_CONN__REFERRAL___REFERRAL_BULLHORN"])
    assert (bullhorn["host"], bullhorn["password"]) == ("http://127.0.0.1:18101", "api.password")
    secrets = json.loads((tmp_path / "state" / "secrets.json").read_text())
    pg = json.loads(env["AIRFLOW_CONN__REFERRAL___REFERRAL_POSTGRES"])
    assert (pg["host"], pg["port"], pg["password"]) == ("127.0.0.1", 45432, secrets["domain_db_passwords"]["referral"])


def test_make_settings_env_defaults_to_deploy_mode(tmp_path):
    env = clean_env(PLATFORM_STATE_DIR=str(tmp_path / "state"))
    deploy = subprocess.run(["make", "-s", "settings-env"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert deploy.returncode != 0 and deploy.stdout == ""
    assert "REFERRAL_DB_PASSWORD" in deploy.stderr
    local = subprocess.run(["make", "-s", "settings-env", "MODE=local"], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert local.returncode == 0, local.stderr
    assert "AIRFLOW_CONN__REFERRAL___REFERRAL_POSTGRES=" in local.stdout
