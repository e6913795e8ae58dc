"""The Astro project files stay in the Astro CLI's formats and in step with the local platform."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from devplatform import settings
from devplatform.config import PlatformConfig, bundle_config, simple_auth_users
from devplatform.paths import ROOT, domain_names
from platform_runtime import AUTH_MANAGER


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return {m.group(1): m.group(2) or m.group(3) for m in re.finditer(r"(\w+)=(?:'([^']*)'|\"?([^\"\s\\]*)\"?)", text)}


def test_dockerfile_is_on_astro_runtime_for_airflow_3_3():
    assert re.search(r"^FROM astrocrpublic\.azurecr\.io/runtime:3\.3-\d+$", (ROOT / "Dockerfile").read_text(), re.M)


def test_image_configures_what_the_local_platform_configures():
    env = dockerfile_env()
    assert env["AIRFLOW__CORE__MULTI_TEAM"] == "True"
    assert env["PYTHONPATH"] == "/usr/local/airflow"
    assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]) == bundle_config(root=Path("/usr/local/airflow"))
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == simple_auth_users()
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER
    assert env["AIRFLOW__CORE__EXECUTOR"] == PlatformConfig(executor="celery", domains=domain_names()).executor_setting()


def test_image_and_local_platform_run_the_team_scoped_auth_manager(tmp_path):
    import importlib

    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    assert PlatformConfig(state=tmp_path).airflow_env()["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER
    assert dockerfile_env()["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER
    module, _, name = AUTH_MANAGER.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), name), SimpleAuthManager)


def test_image_local_platform_and_tests_share_one_openlineage_namespace(tmp_path):
    from airflow.providers.openlineage import conf as openlineage_conf

    image = dockerfile_env()["AIRFLOW__OPENLINEAGE__NAMESPACE"]
    local = PlatformConfig(state=tmp_path).airflow_env()["AIRFLOW__OPENLINEAGE__NAMESPACE"]
    assert image
    assert local == image
    # what the OpenLineage provider of this test session puts on every event it emits
    assert openlineage_conf.namespace() == image


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert "==" in line, line


def test_airflow_settings_uses_the_astro_schema():
    data = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    assert set(data) == {"airflow"} and set(data["airflow"]) == {"connections", "pools", "variables"}


def test_each_domain_declares_prefixed_settings_and_they_emit_team_scoped_env():
    values = {f"{d.upper()}_{k}": "pw" for d in domain_names() for k in ("DB_PASSWORD", "DATA_DIR", "REDIS_PASSWORD", "LAKE_URL")}
    values["PLATFORM_EMBED_PYTHON"] = "/opt/embed/bin/python"
    env = settings.as_env(domain_names(), values)
    for d in domain_names():
        s = settings.load(d, values)
        assert any(c["conn_id"] == f"{d}_postgres" for c in s["connections"])
        key = f"AIRFLOW_CONN__{d.upper()}___{d.upper()}_POSTGRES"
        assert json.loads(env[key])["schema"] == d
    assert all("___" in k for k in env)


def test_missing_secret_placeholder_is_a_clear_error(tmp_path, monkeypatch):
    import pytest

    monkeypatch.delenv("REFERRAL_DB_PASSWORD", raising=False)
    with pytest.raises(settings.SettingsError, match=r"not set in the environment or by the platform:\n"
                       r"  REFERRAL_DB_PASSWORD  domains/referral/settings.yaml"):
        settings.load("referral", {})


def test_the_image_ships_the_runtime_isolation():
    """Astro's image build copies the project (ONBUILD) minus .dockerignore: no pattern there
    may drop what enforces isolation at run time, and the image's global executor is it."""
    from fnmatch import fnmatch

    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    shipped = ["platform_runtime/__init__.py", "platform_runtime/tenant_guard.py", "platform_runtime/executors.py",
               "platform_runtime/auth.py", "platform_runtime/asset_scope.py", "platform_runtime/ownership.py",
               "platform_runtime/execution_guard.py",
               "plugins/tenant_guard.py", "airflow_local_settings.py"]
    for path in shipped:
        assert (ROOT / path).is_file(), path
        prefixes = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
        dropped = [p for p in patterns for prefix in prefixes
                   if fnmatch(prefix, p) or fnmatch(prefix, p.removeprefix("**/"))]
        assert not dropped, f"{path} is dropped by .dockerignore {dropped}"
    assert dockerfile_env()["AIRFLOW__CORE__EXECUTOR"].split(";")[0] == "platform_runtime.executors.RefusingExecutor"


def test_image_sets_the_team_workers_settings_the_local_platform_sets(tmp_path):
    """issue 25: the workers' settings (devplatform/tenants.py WORKER_TUNING) are the image's too."""
    from devplatform.config import dockerfile_env as docker_env
    from devplatform.tenants import WORKER_TUNING, TeamRuntime

    image = docker_env()
    assert {k: image.get(k) for k in WORKER_TUNING} == WORKER_TUNING
    worker = TeamRuntime(PlatformConfig(state=tmp_path, domains=domain_names()), "referral").worker_env()
    assert {k: worker[k] for k in WORKER_TUNING} == WORKER_TUNING
