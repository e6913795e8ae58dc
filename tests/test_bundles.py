"""Every bundle parses like the dag-processor parses it, and every DAG follows policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devplatform.config import bundle_config
from devplatform.parse import parse_all_bundles, parse_in_subprocess
from devplatform.paths import ROOT, bundle_dir, domain_names
from devplatform.policy import violations

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def report() -> dict[str, dict]:
    return parse_all_bundles()


def test_five_domains_each_own_a_bundle():
    assert domain_names() == ["aurora", "ecommerce_ml", "hss_workflow", "looklyy", "referral"]
    for d in domain_names():
        assert bundle_dir(d).is_dir()
        assert (ROOT / "domains" / d / "tests").is_dir()


def test_every_bundle_parses_with_zero_import_errors(report):
    assert {d: r["import_errors"] for d, r in report.items() if r["import_errors"]} == {}


def test_the_parsed_bundles_are_the_configured_bundles(report):
    """What the dag-processors are configured with (the Dockerfile's list, see test_astro_project)."""
    configured = {b["name"]: Path(b["kwargs"]["path"]) for b in bundle_config()}
    assert configured == {d: bundle_dir(d) for d in report}
    assert all(b["team_name"] == b["name"] for b in bundle_config())


def test_every_dag_file_yields_dags_or_an_import_error(report):
    """No DAG file is skipped without a word (e.g. by the dag-processor's safe-mode heuristic)."""
    silent = {}
    for d, r in report.items():
        files = {p.name for p in bundle_dir(d).glob("*.py")}
        seen = {Path(dag["file"]).name for dag in r["dags"].values()} | {Path(f).name for f in r["import_errors"]}
        if files - seen:
            silent[d] = sorted(files - seen)
    assert silent == {}
    assert sum(len(r["dags"]) for r in report.values()) >= 2  # the referral and looklyy DAGs at least


def test_a_file_without_a_dag_is_reported_by_that_check(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "follows_rules.py").write_text((FIXTURES / "good_bundle" / "follows_rules.py").read_text())
    parsed = parse_in_subprocess("platform_tests", tmp_path)
    assert [Path(dag["file"]).name for dag in parsed["dags"].values()] == ["follows_rules.py"]
    assert parsed["import_errors"] == {}  # helper.py yields neither: the check above would name it


def test_every_dag_follows_platform_policy(report):
    assert violations(report) == []


def test_policy_catches_a_dag_that_breaks_the_rules(report):
    bad = parse_in_subprocess("referral", FIXTURES / "bad_bundle")
    problems = violations({"referral": report["referral"], "platform_fixture": bad})
    text = "\n".join(problems)
    assert "broken.py: import error" in text
    assert "bullhorn_sync_optimized: tags ['misc'] do not name the domain 'platform_fixture'" in text
    assert "bullhorn_sync_optimized: no doc_md" in text
    assert "bullhorn_sync_optimized: no owner" in text
    assert "bullhorn_sync_optimized.work: retries 0 < 2" in text
    assert "bullhorn_sync_optimized.work: no failure notification" in text
    assert "parsing imported heavy module 'pandas'" in text
    assert "foreign_owner_and_pools.undeclared_pool: owner 'referral-system' is not the team 'platform_fixture'" in text
    assert "foreign_owner_and_pools.undeclared_pool: pool 'platform_fixture_heavy' is not a pool of team" in text
    assert "foreign_owner_and_pools.another_teams_pool: pool 'referral_default' is not a pool of team" in text


def test_policy_checks_owner_and_pools_against_the_team():
    from devplatform.policy import team_pools

    assert team_pools("referral") == {"referral_default": 4}
    task = {"task_id": "t", "owner": "referral", "retries": 2, "failure_callback": True, "pool_slots": 1}
    dag = {"file": "d.py", "tags": ["referral"], "owner": "referral", "doc_md": True}
    report = {"referral": {"import_errors": {}, "warnings": [], "heavy_modules": [], "dags": {"d": {**dag, "tasks": [
        {**task, "pool": "default_pool"},
        {**task, "task_id": "heavy", "pool": "referral_default"},
        {**task, "task_id": "greedy", "pool": "referral_default", "pool_slots": 5},
        {**task, "task_id": "foreign", "owner": "referral-system", "pool": "looklyy_default"},
    ]}}}}
    assert violations(report) == [
        "referral/d.py:d.greedy: needs 5 slots of pool 'referral_default', which has 4",
        "referral/d.py:d.foreign: owner 'referral-system' is not the team 'referral'",
        "referral/d.py:d.foreign: pool 'looklyy_default' is not a pool of team 'referral'"
        " (its settings.yaml declares ['referral_default'])",
    ]


def test_policy_flags_a_dag_id_used_twice():
    good = parse_in_subprocess("platform_tests", FIXTURES / "good_bundle")
    assert violations({"platform_tests": good}) == []
    assert any("not unique" in v for v in violations({"platform_tests": good, "other": good}))


def test_ruff_with_airflow_rules_is_clean():
    out = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--select", "AIR", str(ROOT)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
