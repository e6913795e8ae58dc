"""``make dockerfile`` (devplatform/dockerfile.py): the Dockerfile's team lines from domains/."""

from __future__ import annotations

import json

import pytest

from devplatform.config import dockerfile_env
from devplatform.dockerfile import update
from devplatform.paths import ROOT, domain_names, platform_domains


def test_the_project_dockerfile_is_what_the_command_writes():
    text = (ROOT / "Dockerfile").read_text()
    assert update(text, domain_names()) == text


def test_a_new_domain_changes_the_four_team_lines_and_nothing_else():
    text = (ROOT / "Dockerfile").read_text()
    new = update(text, [*domain_names(), "toy"])
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 4
    env = dockerfile_env(new)
    assert env["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] == str(len(domain_names()) + 1)  # a parse slot per bundle
    assert env["AIRFLOW__CORE__EXECUTOR"].endswith(";toy=CeleryExecutor")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].endswith(",toy_op:op:toy,toy_viewer:viewer:toy")
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert bundles[-1] == {"name": "toy", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                           "kwargs": {"path": "/usr/local/airflow/domains/toy/dags"}, "team_name": "toy"}
    assert update(new, domain_names()) == text  # and back


def test_a_dockerfile_without_a_team_line_is_refused():
    text = (ROOT / "Dockerfile").read_text().replace("AIRFLOW__CORE__EXECUTOR=", "AIRFLOW__CORE__EXECUTOR_GONE=")
    with pytest.raises(ValueError, match="AIRFLOW__CORE__EXECUTOR"):
        update(text, domain_names())


def test_platform_domains_is_every_domain_or_the_named_ones(monkeypatch):
    monkeypatch.delenv("PLATFORM_DOMAINS", raising=False)
    assert platform_domains() == domain_names()
    monkeypatch.setenv("PLATFORM_DOMAINS", "referral, aurora")
    assert platform_domains() == ["aurora", "referral"]
    monkeypatch.setenv("PLATFORM_DOMAINS", "referral,nope")
    with pytest.raises(ValueError, match="nope"):
        platform_domains()
