"""How the local platform wires the lineage explorer: who holds which key, who the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

from devplatform.config import PlatformConfig
from devplatform.paths import ROOT
from devplatform.platform import LocalPlatform


def transport(env: dict) -> dict:
    return json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])


def test_each_process_reports_with_its_own_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PLATFORM_OPENLINEAGE", raising=False)
    cfg = PlatformConfig(state=tmp_path, api_port=41234)
    platform = LocalPlatform(cfg, quiet=True)
    s = cfg.secrets
    assert len({*s.lineage_ingest_keys.values(), s.lineage_platform_key}) == len(cfg.domains) + 1
    every_key = {*s.lineage_ingest_keys.values(), s.lineage_platform_key}
    for team in cfg.domains:
        for env in (platform.team_runtime(team).worker_env(), platform.component_env(f"triggerer-{team}")):
            t = transport(env)
            assert (t["type"], t["url"], t["endpoint"]) == ("http", "http://127.0.0.1:41234/", "lineage-explorer/api/v1/lineage")
            assert t["auth"] == {"type": "api_key", "apiKey": s.lineage_ingest_keys[team]}
            # no other key, no lineage database credentials
            text = json.dumps(env)
            assert [k for k in every_key - {s.lineage_ingest_keys[team]} if k in text] == []
            assert s.lineage_db_password not in text
    for name in ("scheduler", "dag-processor", "api-server"):
        assert transport(platform.component_env(name))["auth"]["apiKey"] == s.lineage_platform_key
    api = platform.component_env("api-server")
    assert api["AIRFLOW__LINEAGE_EXPLORER__SQL_ALCHEMY_CONN"] == cfg.lineage_dsn
    assert json.loads(api["AIRFLOW__LINEAGE_EXPLORER__INGEST_KEYS"]) == s.lineage_ingest_keys
    for name in ("scheduler", "dag-processor"):
        assert not any(k.startswith("AIRFLOW__LINEAGE_EXPLORER__") for k in platform.component_env(name))
    # keys are generated once and kept
    assert PlatformConfig(state=tmp_path).secrets.lineage_ingest_keys == s.lineage_ingest_keys


def test_every_emitting_process_reaches_the_explorer_without_a_proxy_lookup(tmp_path, monkeypatch):
    """NO_PROXY names the api-server's host in every process that emits events (the entries
    already set are kept): requests, under the provider's http transport, then takes its
    no-proxy branch for the explorer's URL and sends nothing through a proxy set for the rest."""
    import requests
    from requests.utils import should_bypass_proxies

    monkeypatch.delenv("PLATFORM_OPENLINEAGE", raising=False)
    for key in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "corp.example, .internal")
    monkeypatch.setenv("no_proxy", "10.0.0.0/8")
    cfg = PlatformConfig(state=tmp_path, api_port=41234)
    platform = LocalPlatform(cfg, quiet=True)
    envs = {name: platform.component_env(name) for name in ("scheduler", "dag-processor", "api-server")}
    for team in cfg.domains:
        envs[f"worker-{team}"] = platform.team_runtime(team).worker_env()
        envs[f"triggerer-{team}"] = platform.component_env(f"triggerer-{team}")
    url = "http://127.0.0.1:41234/lineage-explorer/api/v1/lineage"
    assert urljoin(transport(envs["scheduler"])["url"], transport(envs["scheduler"])["endpoint"]) == url
    for name, env in envs.items():
        assert env["NO_PROXY"] == env["no_proxy"] == "10.0.0.0/8,corp.example,.internal,127.0.0.1", name

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key)
    # without it, requests looks the proxy up for the explorer's URL and would use it
    assert not should_bypass_proxies(url, None)
    assert requests.Session().merge_environment_settings(url, {}, None, None, None)["proxies"]["http"] == (
        "http://proxy.invalid:3128")
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(key, envs["worker-referral"][key])
    assert should_bypass_proxies(url, None)
    assert "http" not in requests.Session().merge_environment_settings(url, {}, None, None, None)["proxies"]
    assert not should_bypass_proxies("http://198.51.100.7/", None)  # only the platform's hosts


def test_file_transport_stays_available_for_debugging(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_OPENLINEAGE", "file")
    cfg = PlatformConfig(state=tmp_path)
    assert transport(cfg.airflow_env()) == {"type": "file", "log_file_path": str(cfg.lineage_file), "append": True}


def test_airflow_loads_the_plugin(tmp_path):
    """``airflow plugins`` with the project's plugins folder: the explorer's app is mounted
    at its prefix and the package next to it is not loaded as plugins (``.airflowignore``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__PLUGINS")}
    env.update(AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"), AIRFLOW_HOME=str(tmp_path))
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), "plugins", "--output", "json"],
                         env=env, capture_output=True, text=True, check=True)
    plugins = {p["name"]: p for p in json.loads(out.stdout[out.stdout.index("["):])}
    assert plugins["lineage_explorer"]["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/lineage-explorer", "name": "Lineage explorer"}]
    assert {p["source"] for p in plugins.values() if p["source"].startswith("$PLUGINS_FOLDER")} == {
        "$PLUGINS_FOLDER/lineage_explorer_plugin.py", "$PLUGINS_FOLDER/lineage_explorer_page.py",
        "$PLUGINS_FOLDER/tenant_guard.py"}
    # the Lineage page: its static app, the navigation entry and the DAG tab
    page = plugins["lineage_explorer_page"]
    assert page["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/lineage-explorer-page", "name": "Lineage page"}]
    assert sorted((v["destination"], v["url_route"], v["href"]) for v in page["external_views"]) == [
        ("dag", "lineage_dag", "/lineage-explorer-page/?dag_id={DAG_ID}"), ("nav", "lineage", "/lineage-explorer-page/")]
