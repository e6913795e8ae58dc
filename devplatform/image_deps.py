"""Prove the Astro image's dependency set without building the image (no Docker here).

``python -m devplatform.image_deps`` (``make image-deps``, run by ``make test``):

1. creates a fresh virtual environment with uv from what the image has: Airflow as the
   runtime ships it (``apache-airflow==3.3.2``) and ``requirements.txt``, pinned by
   ``constraints.txt``; nothing from ``requirements-dev.txt``;
2. imports every runtime module of ``platform_runtime``, ``shared`` and ``domains`` (not tests,
   stand-ins, DAG files);
3. parses every bundle in its own process, like the dag-processor (``devplatform.parse``);
4. runs ``airflow dags list --local`` with a ``--bundle-name`` for every team (one call: each
   costs about 8 s of CPU to start), with a throwaway ``AIRFLOW_HOME`` and a SQLite metadata
   database made by ``airflow db migrate`` (the command looks each DAG up in the ``dag``
   table), and checks it lists, team by team, what the parse found.

Any import error, crash or difference exits non-zero. uv's cache (the one ``make install``
fills) makes the environment in seconds when warm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devplatform.config import bundle_config
from devplatform.parse import parse_env
from devplatform.paths import ROOT, bundle_dir, domain_names

AIRFLOW_REQUIREMENT = "apache-airflow==3.3.2"  # what Astro Runtime 3.3-2 ships
RUNTIME_PACKAGES = ("platform_runtime", "shared", "domains")
NOT_RUNTIME = {"tests", "local", "dags", "migrations"}  # local: stand-ins, generators, samples


class ImageDepsError(RuntimeError):
    pass


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def build_venv(dest: Path, python: str = f"python{sys.version_info.major}.{sys.version_info.minor}") -> Path:
    """A fresh environment with Airflow and requirements.txt only; returns its python."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise ImageDepsError("uv not found: run `make install`")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    steps = [
        [uv, "venv", "-q", "--python", python, dest],
        [uv, "pip", "install", "-q", "--python", dest / "bin" / "python", AIRFLOW_REQUIREMENT,
         "-r", ROOT / "requirements.txt", "-c", ROOT / "constraints.txt"],
    ]
    for cmd in steps:
        out = _run(cmd, env)
        if out.returncode != 0:
            raise ImageDepsError(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-4000:]}")
    return dest / "bin" / "python"


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without any Airflow setting (a test session's database,
    connections, variables) and without its virtualenv: only what the image would have."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "VIRTUAL_ENV"}
    env.update({"AIRFLOW_HOME": str(home), "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    return env


def runtime_modules(root: Path = ROOT) -> list[str]:
    """Every module the image runs: ``platform_runtime`` (the scheduler's global executor, the
    cluster policy, the api-server's guard), ``shared`` and ``domains``, without tests,
    stand-ins (development only), DAG files (parsed separately) and migrations."""
    mods = []
    for pkg in RUNTIME_PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).with_suffix("")
            if NOT_RUNTIME & set(rel.parts[:-1]):
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods.append(".".join(parts))
    return mods


def check_imports(python: Path, home: Path, modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys, traceback\n"
        "bad = {}\n"
        "for m in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception:\n"
        "        bad[m] = traceback.format_exc(limit=3)\n"
        "print(json.dumps(bad))\n"
    )
    out = _run([python, "-c", code, json.dumps(modules)], clean_env(home))
    if out.returncode != 0:
        return [f"importing the runtime modules crashed:\n{out.stderr[-4000:]}"]
    bad = json.loads(out.stdout.strip().splitlines()[-1])
    return [f"import {m} failed:\n{tb}" for m, tb in bad.items()]


def parse_bundles(python: Path, home: Path, bundles: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    dags, problems = {}, []
    for team, path in bundles.items():
        env = parse_env(team, path)
        env = {**clean_env(home), **{k: v for k, v in env.items() if k.startswith("AIRFLOW")}}
        out = _run([python, "-m", "devplatform.parse", team, path], env)
        if out.returncode != 0:
            problems.append(f"parsing bundle {team} crashed:\n{out.stderr[-4000:]}")
            continue
        report = json.loads(out.stdout.strip().splitlines()[-1])
        dags[team] = set(report["dags"])
        problems += [f"bundle {team}: import error in {f}:\n{e}" for f, e in report["import_errors"].items()]
    return dags, problems


def airflow_env(home: Path, bundles: dict[str, Path]) -> dict[str, str]:
    env = clean_env(home)
    env.update({
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            bundle_config(domains=list(bundles), paths=bundles)),
    })
    return env


def migrate_db(python: Path, home: Path, bundles: dict[str, Path]) -> list[str]:
    """The throwaway SQLite metadata database in ``home`` that ``dags list`` reads."""
    out = _run([python.parent / "airflow", "db", "migrate"], airflow_env(home, bundles))
    return [] if out.returncode == 0 else [f"airflow db migrate failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"]


def list_dags(python: Path, home: Path, bundles: dict[str, Path], parsed: dict[str, set[str]]) -> list[str]:
    env = airflow_env(home, bundles)
    cmd = [python.parent / "airflow", "dags", "list", "--local", "--output", "json"]
    for team in bundles:
        cmd += ["--bundle-name", team]
    out = _run(cmd, env)
    if out.returncode != 0 or "Failed to load all files" in out.stderr:
        return [f"airflow dags list failed (exit {out.returncode}):\n{out.stderr[-4000:]}"]
    listed: dict[str, set[str]] = {team: set() for team in bundles}
    problems = []
    for d in json.loads(out.stdout.strip().splitlines()[-1]):
        team = next((t for t, path in bundles.items() if Path(d["fileloc"]).is_relative_to(path)), None)
        if team is None:
            problems.append(f"airflow dags list shows {d['dag_id']} from {d['fileloc']}, outside every bundle")
        else:
            listed[team].add(d["dag_id"])
    for team, ids in listed.items():
        print(f"[image-deps] airflow dags list --bundle-name {team}: {sorted(ids)}", flush=True)
        if team in parsed and ids != parsed[team]:
            problems.append(f"airflow dags list for {team} lists {sorted(ids)}, the parse found {sorted(parsed[team])}")
    return problems


def check(python: Path, bundles: dict[str, Path], modules: list[str] | None = None) -> list[str]:
    """Every problem found with the environment of ``python``; empty when the image would work."""
    with tempfile.TemporaryDirectory(prefix="image-deps-home-") as home:
        home = Path(home)
        with ThreadPoolExecutor(1) as pool:  # the database migrates while the bundles parse
            migrated = pool.submit(migrate_db, python, home, bundles)
            problems = check_imports(python, home, runtime_modules() if modules is None else modules)
            parsed, parse_problems = parse_bundles(python, home, bundles)
            for team, ids in parsed.items():
                print(f"[image-deps] parsed bundle {team}: {sorted(ids)}", flush=True)
            problems += parse_problems
            migrate_problems = migrated.result()
        problems += migrate_problems or list_dags(python, home, bundles, parsed)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devplatform.image_deps", description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=f"python{sys.version_info.major}.{sys.version_info.minor}",
                    help="interpreter for the environment (the image's Python minor version)")
    ap.add_argument("--keep", type=Path, help="build the environment here and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    dest = args.keep or Path(tempfile.mkdtemp(prefix="image-deps-venv-"))
    shutil.rmtree(dest, ignore_errors=True)
    try:
        python = build_venv(dest, args.python)
        t1 = time.perf_counter()
        print(f"[image-deps] fresh environment ({AIRFLOW_REQUIREMENT} + requirements.txt, constraints.txt) "
              f"in {t1 - t0:.1f} s", flush=True)
        problems = check(python, {d: bundle_dir(d) for d in domain_names()})
    except ImageDepsError as e:
        problems = [str(e)]
    finally:
        if args.keep is None:
            shutil.rmtree(dest, ignore_errors=True)
    for p in problems:
        print(f"[image-deps] {p}", file=sys.stderr)
    print(f"[image-deps] {'FAILED' if problems else 'ok'} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
