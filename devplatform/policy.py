"""Platform policy for every DAG, as code (checked by tests/test_bundles.py).

Each rule reads a parse report (``devplatform.parse``) and returns violations as text.
"""

from __future__ import annotations

from collections import Counter

import yaml

from devplatform.settings import settings_file
from shared.dag_defaults import team_pool

MIN_RETRIES = 2
# The global pool every Airflow deployment has; a team may use it, or its own pools.
DEFAULT_POOL = "default_pool"
# Seeds may fix a different number of retries for a DAG: dag_id -> minimum.
RETRY_EXCEPTIONS: dict[str, int] = {}


def team_pools(domain: str) -> dict[str, int | str]:
    """The pools a team declares in ``domains/<domain>/settings.yaml``: name -> slots."""
    path = settings_file(domain)
    if not path.exists():
        return {}
    pools = ((yaml.safe_load(path.read_text()) or {}).get("airflow") or {}).get("pools") or []
    return {p["pool_name"]: p.get("pool_slot") for p in pools}


def violations(report: dict[str, dict]) -> list[str]:
    """All violations across bundles: ``{domain: parse report}``."""
    out: list[str] = []
    ids = Counter(dag_id for r in report.values() for dag_id in r["dags"])
    for domain, r in report.items():
        for f, err in r["import_errors"].items():
            out.append(f"{domain}/{f}: import error: {err.strip().splitlines()[-1]}")
        for w in r["warnings"]:
            out.append(f"{domain}: warning at parse time: {w}")
        for m in r["heavy_modules"]:
            out.append(f"{domain}: parsing imported heavy module {m!r}")
        pools = {team_pool(domain): None, **team_pools(domain)}  # the platform names the default one
        for dag_id, d in r["dags"].items():
            where = f"{domain}/{d['file']}:{dag_id}"
            if ids[dag_id] > 1:
                out.append(f"{where}: dag_id is not unique across the deployment")
            if domain not in d["tags"]:
                out.append(f"{where}: tags {d['tags']} do not name the domain {domain!r}")
            if not d["owner"] or d["owner"] == "airflow":
                out.append(f"{where}: no owner")
            if not d["doc_md"]:
                out.append(f"{where}: no doc_md")
            floor = RETRY_EXCEPTIONS.get(dag_id, MIN_RETRIES)
            for t in d["tasks"]:
                if (t["retries"] or 0) < floor:
                    out.append(f"{where}.{t['task_id']}: retries {t['retries']} < {floor}")
                if not t["failure_callback"]:
                    out.append(f"{where}.{t['task_id']}: no failure notification")
                if t["owner"] != domain:
                    out.append(f"{where}.{t['task_id']}: owner {t['owner']!r} is not the team {domain!r}")
                pool = t.get("pool") or DEFAULT_POOL
                if pool != DEFAULT_POOL and pool not in pools:
                    out.append(f"{where}.{t['task_id']}: pool {pool!r} is not a pool of team {domain!r}"
                               f" (its settings.yaml declares {sorted(pools)})")
                elif pool in pools and str(pools[pool]).isdigit() and (t.get("pool_slots") or 1) > int(pools[pool]):
                    out.append(f"{where}.{t['task_id']}: needs {t['pool_slots']} slots of pool {pool!r},"
                               f" which has {pools[pool]}")
    return out


# Lineage coverage (issue 23, checked over a full run of every DAG by tests/test_first_day.py):
# every task reports the datasets it reads or writes (shared/lineage.py), a sensor what it waited
# for, a task that triggers a DAG the parent/child run relation. Only a task that truly touches
# nothing outside its own run (no table, file, lake object, service, topic or key space) is
# named here, "<dag_id>.<task_id>" -> why.
LINEAGE_TOUCHES_NOTHING: dict[str, str] = {}
