"""Per-team limits: one team's flood does not stall another (issue 26, noisy neighbours).

All teams share one scheduler, one dag-processor and one metadata database. What keeps one
team's flood (hundreds of queued runs of a DAG with many tasks, DAG files that take seconds to
parse) from stalling the others is set here, with Airflow's public settings and cluster
policies only:

- **Task slots.** Every task of a team counts against its team's pools (``settings.yaml``
  ``airflow.pools``; the default one is ``shared.dag_defaults.team_pool``): a task left in
  Airflow's global ``default_pool`` is put into its team's default pool (``task_policy``).
  The scheduler counts a pool's queued and running tasks and skips a full pool's tasks
  without blocking the others (``SchedulerJobRunner._executable_task_instances_to_queued``,
  "starved pools"), so a team holds at most its pools' slots.
- **The scheduler's parallelism** (``[core] parallelism``, shared by every executor: a team's
  queued Celery tasks count against it) is the sum of every team's pool slots
  (:func:`platform_parallelism`): one team at its limit leaves every other team its slots.
- **Active runs.** ``[core] max_active_runs_per_dag`` (:data:`DEFAULT_MAX_ACTIVE_RUNS_PER_DAG`,
  for a DAG that sets none) and a team's ceiling (``limits.max_active_runs_per_dag``), applied by
  ``dag_policy``: a DAG with 500 queued runs keeps at most that many running, so the
  scheduler examines a bounded number of its runs and task instances per loop.
- **Parse time.** A DAG file of a team may parse for at most ``limits.parse_timeout_seconds``
  (``get_dagbag_import_timeout``, Airflow's per-file hook); a slower file is cut off with an
  import error, and the dag-processor's slot goes to the next file (new files first).
- **Parse slots.** The dag-processor has one parse slot per bundle (:func:`parsing_processes`,
  ``[dag_processor] parsing_processes``), and a bundle holds at most its share of them at once
  (``platform_runtime.airflow_internals`` ``FairDagFileProcessorManager``, the one place on
  Airflow internals; ``[platform] bundle_parse_share``): one team's slow files wait for that
  team's slot, never another team's, and a new file in a bundle is noticed within about a second
  (its folder's mtime) instead of at the bundle's ``refresh_interval``.

- **CPU.** All of a team's processes (its worker with its tasks, triggerer, Flower, parse zygote)
  may use ``limits.cpu_cores`` of CPU together: on the local platform one cgroup of the team's
  (``platform_runtime.autogroup``, created by ``devplatform``), which also makes the team one CPU
  share rather than one per process group; in a deployment the CPU limit of the team's worker pods.

Where a team's settings.yaml has no ``limits:``, :data:`PLATFORM_DEFAULTS` apply. The whole set
is switched off with ``[platform] team_limits = False`` (``PLATFORM_TEAM_LIMITS=0`` for the
local platform): the build the benchmark and the limits test compare against.

The policies run where a DAG file is parsed (the team's parse child), so they bound what a
team's DAG *asks* for; they are defaults a careless DAG cannot escape, not a defence against a
team that rewrites the policy from its own DAG file's top-level code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from platform_runtime.tenant_guard import team_of_file

DEFAULT_POOL = "default_pool"  # Airflow's global pool
# ``[core] max_active_runs_per_dag``, platform-wide: the active runs of a DAG that sets none
# (Airflow's default is 16). The Dockerfile sets the same (tests/test_team_limits.py).
DEFAULT_MAX_ACTIVE_RUNS_PER_DAG = 4
# A team's limits where its settings.yaml ``limits:`` declares none.
PLATFORM_DEFAULTS = {
    # a team's ceiling: a DAG may ask for more active runs than the default, up to this
    "max_active_runs_per_dag": 16,
    # the team's files' ``dagbag_import_timeout`` (Airflow's default, for every file, is 30 s)
    "parse_timeout_seconds": 15,
    # the CPU the team's processes (its worker with its tasks, triggerer, Flower, DAG files' parses)
    # may use together, in cores: a pod's CPU limit in production (the team's worker queue), a
    # cgroup of the team's on the local platform (platform_runtime.autogroup)
    "cpu_cores": 1.0,
}
DOMAINS_DIR = Path(__file__).resolve().parent.parent / "domains"


@cache
def team_settings(team: str) -> dict:
    """``domains/<team>/settings.yaml`` (its ``airflow.pools`` and ``limits``), {} if none."""
    path = DOMAINS_DIR / team / "settings.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def team_limits(team: str) -> dict:
    """The team's ``limits:`` over :data:`PLATFORM_DEFAULTS` (an unknown key is an error)."""
    own = team_settings(team).get("limits") or {}
    if unknown := set(own) - set(PLATFORM_DEFAULTS):
        raise ValueError(f"domains/{team}/settings.yaml limits: unknown {sorted(unknown)}; known: {sorted(PLATFORM_DEFAULTS)}")
    return {**PLATFORM_DEFAULTS, **own}


def team_pool_slots(team: str) -> dict[str, int]:
    """The team's pools: name -> slots."""
    pools = (team_settings(team).get("airflow") or {}).get("pools") or []
    return {p["pool_name"]: int(p["pool_slot"]) for p in pools}


def platform_parallelism(teams: list[str]) -> int:
    """``[core] parallelism``: every team's pool slots together."""
    return sum(sum(team_pool_slots(t).values()) for t in teams)


def parsing_processes(teams: list[str]) -> int:
    """``[dag_processor] parsing_processes``: a parse slot per team's bundle, so that with each
    bundle held to its share (one slot) every team always has one."""
    return max(1, len(teams))


def enabled() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("platform", "team_limits", fallback=True)


def limit_dag(dag) -> None:
    """Cluster policy (DAG): the team's ceiling on a DAG's active runs."""
    team = team_of_file(dag.fileloc) if enabled() else None
    if team is None:
        return
    ceiling = int(team_limits(team)["max_active_runs_per_dag"])
    if dag.max_active_runs > ceiling:
        dag.max_active_runs = ceiling


def limit_task(task) -> None:
    """Cluster policy (task): a team task in Airflow's global pool runs in its team's default pool."""
    if task.dag is None or not enabled() or task.pool != DEFAULT_POOL:
        return
    team = team_of_file(task.dag.fileloc)
    if team is None:
        return
    from shared.dag_defaults import team_pool

    task.pool = team_pool(team)


def parse_timeout(dag_file_path: str) -> float:
    """``get_dagbag_import_timeout``: the team's parse-time limit for its files, else Airflow's."""
    from airflow.configuration import conf

    default = conf.getfloat("core", "dagbag_import_timeout")
    team = team_of_file(dag_file_path) if enabled() else None
    return float(team_limits(team)["parse_timeout_seconds"]) if team else default
