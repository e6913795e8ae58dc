"""Every third-party module the project imports comes from a pinned distribution.

- ``make install`` resolves ``requirements-dev.txt`` with ``constraints.txt``: every module
  imported anywhere in the repository maps to a distribution pinned (``==``) there, at the
  version installed here, and constraints.txt leaves no installed distribution open.
- The image installs ``requirements.txt`` on top of the Astro Runtime (which brings Airflow
  itself): what the code that runs in it imports (``platform_runtime/``, ``shared/``,
  ``domains/`` less tests and local-only code, ``plugins/``, ``airflow_local_settings.py``) is
  pinned in requirements.txt at the constraints' version, so the image and a fresh
  ``make install`` resolve the same versions.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata as md
import importlib.util
import os
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# plugins/ holds the project's own plugin modules and packages (on sys.path in every Airflow process)
FIRST_PARTY = {"platform_runtime", "shared", "domains", "devplatform", "benchmarks", "tests", "conftest", "plugins",
               "airflow_local_settings",
               *(p.stem for p in (ROOT / "plugins").iterdir()
                 if p.suffix == ".py" or (p / "__init__.py").exists())}
SKIP_DIRS = {".venv", ".local", ".git", "__pycache__"}
# The Astro Runtime image is Airflow: these distributions are the image's, fixed by its FROM line.
RUNTIME_IMAGE_DISTS = {"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"}
# Installed by the Makefile itself (pinned there), not by the requirements.
TOOLING = {"uv", "pip"}
# Code that runs only in ecommerce_ml's heavy environment (requirements-embed.txt, its own
# virtualenv); domains/ecommerce_ml/tests/test_heavy_env.py checks its imports against that file.
HEAVY_ENV_CODE = ROOT / "domains" / "ecommerce_ml" / "heavy"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(*files: str) -> dict[str, str]:
    """``{distribution: version}`` for every ``name==version`` line of the files (following ``-r``)."""
    found: dict[str, str] = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                found.update(pins(line[3:].strip()))
            elif line:
                m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
                assert m, f"{name}: {line!r} is not pinned with =="
                found[normalize(m.group(1))] = m.group(3)
    return found


def imports(path: Path, *, runtime_only: bool) -> set[str]:
    """Absolute third-party module names imported by a file; ``runtime_only`` skips TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {
        n for n in names
        if n.split(".")[0] not in FIRST_PARTY and n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"
    }


@cache
def file_owners() -> dict[str, str]:
    owners: dict[str, str] = {}
    for dist in md.distributions():
        base = str(dist.locate_file(""))
        for f in dist.files or ():
            owners[os.path.normpath(os.path.join(base, str(f)))] = normalize(dist.metadata["Name"])
    return owners


def spec_of(module: str) -> importlib.machinery.ModuleSpec | None:
    """``module``'s spec, found on the path when an earlier import left ``__spec__`` None in sys.modules.

    ``importlib.util.find_spec`` returns ``sys.modules[module].__spec__`` for an imported module and
    raises ValueError when that is None (some libraries install modules built by hand, and which ones
    are imported depends on the tests run before): then the path finder locates it from its parent.
    """
    try:
        return importlib.util.find_spec(module)
    except ValueError:
        parent, _, _ = module.rpartition(".")
        parent_spec = spec_of(parent) if parent else None
        locations = parent_spec.submodule_search_locations if parent_spec else None
        return importlib.machinery.PathFinder.find_spec(module, locations)


def distribution_of(module: str) -> str:
    """The installed distribution whose files hold ``module`` (namespace packages included)."""
    spec = spec_of(module)
    assert spec is not None, f"{module} is imported but not installed"
    candidates = [spec.origin] if spec.origin and spec.origin not in ("built-in", "frozen") else []
    if not candidates:  # a namespace package: any file below it names its owner
        for location in spec.submodule_search_locations or ():
            candidates += [str(p) for p in sorted(Path(location).rglob("*.py"))[:1]]
    for c in candidates:
        owner = file_owners().get(os.path.normpath(c))
        if owner:
            return owner
    raise AssertionError(f"no installed distribution owns {module} ({candidates})")


def files_under(*tops: str) -> list[Path]:
    out: list[Path] = []
    for top in tops:
        p = ROOT / top
        out += [p] if p.is_file() else [f for f in p.rglob("*.py")
                                        if not SKIP_DIRS & set(f.parts) and not f.is_relative_to(HEAVY_ENV_CODE)]
    return out


def image_files() -> list[Path]:
    """Code that runs in the image: platform_runtime/, shared/, the domains, plugins/ and the
    cluster policies' module, less tests and local-only code (stand-ins, generators)."""
    return [f for f in files_under("platform_runtime", "shared", "domains", "plugins", "airflow_local_settings.py")
            if not {"tests", "local"} & set(f.relative_to(ROOT).parts)]


def test_every_imported_distribution_is_pinned_at_the_installed_version():
    pinned = pins("constraints.txt", "requirements.txt", "requirements-dev.txt")
    problems = []
    for path in files_under("platform_runtime", "shared", "domains", "plugins", "airflow_local_settings.py",
                            "devplatform", "benchmarks", "tests", "conftest.py", ".astro"):
        for module in sorted(imports(path, runtime_only=False)):
            dist = distribution_of(module)
            where = f"{path.relative_to(ROOT)}: import {module} ({dist})"
            if dist not in pinned:
                problems.append(f"{where} is not pinned")
            elif pinned[dist] != md.version(dist):
                problems.append(f"{where} is pinned at {pinned[dist]} but {md.version(dist)} is installed")
    assert not problems, "\n".join(problems)


def test_constraints_leave_no_installed_distribution_open():
    pinned = pins("constraints.txt")
    installed = {normalize(d.metadata["Name"]): d.version for d in md.distributions()}
    open_ = {d: v for d, v in installed.items() if d not in pinned and d not in TOOLING}
    drift = {d: (pinned[d], v) for d, v in installed.items() if d in pinned and pinned[d] != v}
    assert not open_, f"installed but not in constraints.txt: {open_}"
    assert not drift, f"constraints.txt pin != installed (pin, installed): {drift}"


def test_requirements_pin_everything_the_image_code_imports_at_the_constraints_version():
    image = pins("requirements.txt")
    constraints = pins("constraints.txt")
    problems = []
    for path in image_files():
        for module in sorted(imports(path, runtime_only=True)):
            dist = distribution_of(module)
            where = f"{path.relative_to(ROOT)}: import {module} ({dist})"
            if dist in RUNTIME_IMAGE_DISTS:
                continue
            if dist not in image:
                problems.append(f"{where} is not pinned in requirements.txt")
            elif image[dist] != constraints.get(dist):
                problems.append(f"{where}: requirements.txt pins {image[dist]}, constraints.txt {constraints.get(dist)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, dist",
    [("airflow.providers.http.hooks.http", "apache-airflow-providers-http"), ("airflow.sdk", "apache-airflow-task-sdk"),
     ("yaml", "pyyaml"), ("psycopg2", "psycopg2-binary")],
)
def test_modules_map_to_their_own_distribution(module, dist):
    assert distribution_of(module) == dist
