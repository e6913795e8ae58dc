"""The ``Dockerfile``'s team lines, written from ``domains/``: after adding a domain,
``make dockerfile`` (``python -m devplatform dockerfile``) rewrites them in place.

Three ``ENV`` values name every team, and the image must name the same teams as the local
platform (``tests/test_astro_project.py`` fails until they do): the executors
(``AIRFLOW__CORE__EXECUTOR``: the refusing global one, then one CeleryExecutor per team),
the logins (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``: admin, then ``<team>_op`` and
``<team>_viewer``) and the bundles (``AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST``: one
LocalDagBundle per domain under ``/usr/local/airflow``, owned by its team). A fourth follows
from the teams' settings: ``AIRFLOW__CORE__PARALLELISM``, every team's pool slots together, and
``AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES``, a parse slot per team's bundle
(``platform_runtime.team_limits``). Nothing else in the file is touched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from devplatform.config import bundle_config, simple_auth_users
from devplatform.paths import ROOT, domain_names
from platform_runtime import GLOBAL_EXECUTOR
from platform_runtime.team_limits import parsing_processes, platform_parallelism

IMAGE_ROOT = Path("/usr/local/airflow")  # the Astro Runtime image's project folder


def team_values(domains: list[str]) -> dict[str, str]:
    """The team lines' values for ``domains``, as the image must set them (the scheduler's
    parallelism too: every team's pool slots together, ``platform_runtime.team_limits``)."""
    return {
        "AIRFLOW__CORE__PARALLELISM": str(platform_parallelism(domains)),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(parsing_processes(domains)),
        "AIRFLOW__CORE__EXECUTOR": ";".join([GLOBAL_EXECUTOR, *(f"{d}=CeleryExecutor" for d in domains)]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": simple_auth_users(domains),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle_config(root=IMAGE_ROOT, domains=domains)),
    }


def update(text: str, domains: list[str]) -> str:
    """``text`` (a Dockerfile) with its team lines set for ``domains``; each must be there once."""
    for key, value in team_values(domains).items():
        quoted = f"'{value}'" if '"' in value else f'"{value}"'
        pattern = re.compile(rf"^(\s*(?:ENV\s+)?){key}=(?:'[^']*'|\"[^\"]*\"|\S*)", re.M)
        text, n = pattern.subn(lambda m, k=key, q=quoted: f"{m.group(1)}{k}={q}", text)
        if n != 1:
            raise ValueError(f"Dockerfile: expected one {key}=... line, found {n}")
    return text


def write(path: Path = ROOT / "Dockerfile", domains: list[str] | None = None) -> bool:
    """Rewrite the team lines of ``path``; True if it changed."""
    old = path.read_text()
    new = update(old, domains if domains is not None else domain_names())
    if new != old:
        path.write_text(new)
    return new != old
