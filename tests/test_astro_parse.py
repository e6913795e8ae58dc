"""The Astro CLI's own DAG integrity test (``.astro/test_dag_integrity_default.py``, run by
``astro dev parse`` and ``astro deploy``) works here, as the CLI runs it.

The CLI runs ``pytest .astro/test_dag_integrity_default.py`` in the project folder (its
AIRFLOW_HOME) in a container of the image. The scaffold patches ``os.getenv``,
``Variable.get`` and ``BaseHook.get_connection`` and initialises a metadata database when it
is imported, so it runs in a process of its own, never inside this test session
(pyproject.toml's testpaths leave ``.astro`` out). The platform's own checks of its bundles
are in tests/test_bundles.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from devplatform.paths import ROOT

FIXTURES = Path(__file__).parent / "fixtures"


def test_astro_dev_parse_passes_a_good_dag_and_fails_a_broken_one(tmp_path):
    project = tmp_path / "project"
    (project / "dags").mkdir(parents=True)
    shutil.copytree(ROOT / ".astro", project / ".astro")
    shutil.copy(FIXTURES / "good_bundle" / "follows_rules.py", project / "dags")
    shutil.copy(FIXTURES / "bad_bundle" / "broken.py", project / "dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update({
        "AIRFLOW_HOME": str(project),  # the image's AIRFLOW_HOME is the project folder
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "PYTHONPATH": str(ROOT),  # the image's PYTHONPATH is the project root (shared/ importable)
    })
    report = tmp_path / "report.xml"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}",
         ".astro/test_dag_integrity_default.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    failed = {n for n, c in cases.items() if c.find("failure") is not None or c.find("error") is not None}
    assert failed == {"test_file_imports[dags/broken.py]"}, out.stdout[-3000:]
    assert "dags/broken.py failed to import" in cases["test_file_imports[dags/broken.py]"].find("failure").get("message", "") \
        + cases["test_file_imports[dags/broken.py]"].find("failure").text
    assert "test_file_imports[platform_policy_example]" in cases  # the good file's DAG, passed
    assert out.returncode == 1
