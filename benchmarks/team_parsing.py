"""Benchmark (not a test): what parsing DAG files as their team costs.

Airflow's own dag-processor (each file parsed in a fork of itself, as root) against the
platform's (``python -m platform_runtime.airflow_internals dag-processor``: a zygote per team
as the team's OS user, Airflow's fork only relays), side by side, rounds interleaved, over
copies of all five domains' bundles on one real PostgreSQL metadata database. Per run:

- cold: start -> every DAG of every bundle serialized (the zygotes start within this);
- per file, warm: the "Last Duration" of each file in the manager's stats table once every
  file was parsed again (median over files);
- memory: resident memory of the dag-processor and every process under it, summed, once all
  DAGs are serialized (pages shared across forks counted per process).

``python -m benchmarks.team_parsing [ROUNDS]``
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from devplatform.config import bundle_config
from devplatform.paths import ROOT, bundle_dir, domain_names
from devplatform.pg import PgServer
from devplatform.ports import free_port
from devplatform.readiness import dag_files
from devplatform.users import team_user, tenant_python

AIRFLOW = str(Path(sys.executable).parent / "airflow")
VARIANTS = {"airflow": [AIRFLOW], "platform": [sys.executable, "-m", "platform_runtime.airflow_internals"]}
DAGS = 16  # every domain's DAGs (README, "Domains and their DAGs")
STATS_ROW = re.compile(r"^(\S+)\s+(\S+\.py)\s+.*?(\d+\.\d+)s\s+\S+\s*$", re.M)


def setup(base: Path) -> tuple[PgServer, dict[str, str], int]:
    pg = PgServer(base / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    password = secrets.token_urlsafe(16)
    pg.ensure_database("airflow", "airflow", password)
    teams = domain_names()
    paths = {}
    for team in teams:
        folder = base / "bundles" / team
        folder.mkdir(parents=True)
        for f in dag_files(bundle_dir(team)):
            shutil.copyfile(f, folder / f.name)
            os.chmod(folder / f.name, 0o644)
        user = team_user(team)
        if user:  # as the platform locks a bundle: root's, the team's group only
            os.chown(folder, 0, user.gid)
        os.chmod(folder, 0o750)
        paths[team] = folder
    os.chmod(base / "bundles", 0o755)
    files = sum(len(dag_files(p)) for p in paths.values())
    home = base / "airflow-home"
    home.mkdir()
    env = {
        **os.environ, "AIRFLOW_HOME": str(home), "PYTHONPATH": str(ROOT),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{pg.port}/airflow",
        "AIRFLOW__CORE__MULTI_TEAM": "True", "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle_config(domains=teams, paths=paths)),
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "2", "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",  # re-parse soon: the warm per-file time
        "AIRFLOW__PLATFORM__TEAM_PYTHON": tenant_python(base, create=True),
        "AIRFLOW__PLATFORM__TEAM_HOME": str(base / "parse-homes" / "{team}"),
    }
    (base / "parse-homes").mkdir(mode=0o711)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([AIRFLOW, "teams", "sync"], env=env, check=True, capture_output=True)
    return pg, env, files


def serialized(env: dict[str, str]) -> int:
    import psycopg2

    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(DISTINCT dag_id) FROM serialized_dag")
        return cur.fetchone()[0]


def reset(env: dict[str, str]) -> None:
    import psycopg2

    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dag")  # cascades to versions and serialized DAGs


def run(variant: str, env: dict[str, str], dags: int, log: Path) -> dict:
    reset(env)
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([*VARIANTS[variant], "dag-processor"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while serialized(env) < dags:
                if proc.poll() is not None or time.monotonic() - t0 > 300:
                    raise RuntimeError(f"{variant}: dag-processor ended or timed out; see {log}")
                time.sleep(0.2)
            cold = time.monotonic() - t0
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            rss = sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20
            time.sleep(15)  # files re-parsed (warm), then a stats table with every file's last duration
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{variant}: the dag-processor ignored SIGTERM for 30 s; killed. Log tail:\n"
                      + log.read_text()[-3000:], flush=True)
                proc.kill()
                proc.wait(30)
    durations = {f: float(s) for _, f, s in STATS_ROW.findall(log.read_text())}
    return {"cold": cold, "rss": rss, "per_file_ms": statistics.median(durations.values()) * 1000 if durations else
            float("nan"), "processes": len(tree)}


def main(rounds: int = 3) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-team-parsing-"))
    os.chmod(base, 0o711)
    pg, env, files = setup(base)
    try:
        results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for i in range(rounds):
            for variant in VARIANTS:
                results[variant].append(run(variant, env, DAGS, base / f"{variant}-{i}.log"))
        print(f"\n{files} DAG files in 5 bundles, {rounds} rounds (interleaved), medians:")
        print(f"{'dag-processor':10s} {'cold: all DAGs serialized s':>28s} {'warm per file ms':>17s} "
              f"{'RSS of the tree MiB':>20s} {'processes':>10s}")
        for variant, rs in results.items():
            print(f"{variant:10s} {statistics.median(r['cold'] for r in rs):28.2f} "
                  f"{statistics.median(r['per_file_ms'] for r in rs):17.1f} "
                  f"{statistics.median(r['rss'] for r in rs):20.0f} {statistics.median(r['processes'] for r in rs):10.0f}")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
