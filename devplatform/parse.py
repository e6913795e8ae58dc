"""Parse a DAG bundle the way the dag-processor does, in a process of its own.

``python -m devplatform.parse DOMAIN PATH`` prints a JSON report: DAGs with the
attributes the policy tests check, import errors, warnings raised while parsing, heavy
modules the parse imported, and each file's parse time: first in a fresh process (which
also pays for loading Airflow's DAG-authoring machinery once), and again once loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from devplatform.paths import ROOT, bundle_dir, domain_names

HEAVY_MODULES = (
    "pandas", "numpy", "scipy", "sklearn", "torch", "tensorflow", "transformers",
    "sentence_transformers", "polars", "pyarrow", "matplotlib", "xgboost", "lightgbm",
)


def _dag_report(dag, bundle_path: Path) -> dict:
    return {
        "dag_id": dag.dag_id,
        "file": str(Path(dag.fileloc).relative_to(bundle_path)),
        "tags": sorted(dag.tags or []),
        "owner": dag.owner,
        "doc_md": bool((dag.doc_md or "").strip()),
        "schedule": str(getattr(dag, "timetable_summary", None) or dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "tasks": [
            {
                "task_id": t.task_id,
                "owner": t.owner,
                "retries": t.retries,
                "pool": t.pool,
                "pool_slots": t.pool_slots,
                "failure_callback": bool(t.on_failure_callback),
                "execution_timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
            }
            for t in dag.tasks
        ],
    }


def _counts(w: warnings.WarningMessage, path: Path) -> bool:
    """A warning the parse report keeps: any warning our code raises (the bundle, ``domains/``,
    ``shared/``), and any deprecation raised while parsing, whoever raises it (a library's
    deprecation in the dag-processor's parse loop is as much a parse-time warning as ours)."""
    ours = str(path) in str(w.filename) or "/domains/" in str(w.filename) or "/shared/" in str(w.filename)
    return ours or issubclass(w.category, DeprecationWarning | PendingDeprecationWarning | FutureWarning)


def parse_bundle(domain: str, path: Path) -> dict:
    import airflow.sdk  # noqa: F401  (the dag-processor has Airflow imported before parsing)
    from airflow.dag_processing.dagbag import BundleDagBag

    heavy_before = {m for m in HEAVY_MODULES if m in sys.modules}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        bag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name=domain)
        total = time.perf_counter() - t0
    heavy_after = {m for m in HEAVY_MODULES if m in sys.modules}
    reparse = {}
    for f in sorted({Path(d.fileloc) for d in bag.dags.values()}):
        t0 = time.perf_counter()
        spec = importlib.util.spec_from_file_location(f"_reparse_{f.stem}", f)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        reparse[f.name] = time.perf_counter() - t0
    return {
        "domain": domain,
        "dags": {d.dag_id: _dag_report(d, path) for d in bag.dags.values()},
        "import_errors": bag.import_errors,
        "warnings": [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
                     if _counts(w, path)],
        "heavy_modules": sorted(heavy_after - heavy_before),
        "file_parse_seconds": {str(Path(s.file).name): s.duration.total_seconds() if hasattr(s.duration, "total_seconds")
                               else float(s.duration) for s in bag.dagbag_stats},
        "file_reparse_seconds": reparse,
        "total_seconds": total,
    }


def parse_env(domain: str, path: Path) -> dict[str, str]:
    """The dag-processor's view: multi-team on, this bundle configured and owned by its team."""
    env = dict(os.environ)
    home = Path(tempfile.gettempdir()) / "platform-parse-home"
    home.mkdir(exist_ok=True)
    env.update({
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([{
            "name": domain, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)}, "team_name": domain}]),
    })
    return env


def parse_in_subprocess(domain: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "devplatform.parse", domain, str(path)],
        env=parse_env(domain, path), cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"parsing bundle {domain} at {path} crashed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_all_bundles(bundles: dict[str, Path] | None = None) -> dict[str, dict]:
    bundles = bundles or {d: bundle_dir(d) for d in domain_names()}
    return {d: parse_in_subprocess(d, p) for d, p in bundles.items()}


if __name__ == "__main__":
    report = parse_bundle(sys.argv[1], Path(sys.argv[2]).resolve())
    print(json.dumps(report))
