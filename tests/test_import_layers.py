"""The layering: what ships in the image imports nothing of the local tooling, the shared
library and the runtime isolation import no domain, and no domain imports another.

Two checks, for what each can see:

- **import-linter** (the contracts in ``pyproject.toml`` ``[tool.importlinter]``) over the
  packages ``platform_runtime``, ``shared``, ``domains``, ``devplatform`` and ``lineage_explorer``:
  every static import, at any depth, and chains through other modules too.
- **this module's scan** (``ast``) of what import-linter does not see: the DAG files (bundle
  folders are no packages), the api-server's plugin modules and ``airflow_local_settings.py``
  (top-level modules), and ``importlib.import_module("x")``/``__import__("x")`` with a
  literal name anywhere. A domain's ``tests/`` and ``local/`` folders (stand-ins, generators,
  samples) are development tooling and may import ``devplatform``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> top-level packages it must never import
FORBIDDEN = {
    "platform_runtime": {"devplatform", "domains"},
    "shared": {"devplatform", "domains"},
    "domains": {"devplatform"},
    "plugins": {"devplatform"},
    "airflow_local_settings.py": {"devplatform"},
}
NOT_SHIPPED_DIRS = {"tests", "local", "__pycache__"}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, dotted module)`` for every absolute import in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path = ROOT) -> list[str]:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        where = root / package
        for path in [where] if where.is_file() else sorted(where.rglob("*.py")):
            rel = path.relative_to(root)
            if NOT_SHIPPED_DIRS & set(rel.parts[:-1]):
                continue
            for line, module in imported_modules(path.read_text()):
                if module.split(".")[0] in forbidden:
                    problems.append(f"{rel}:{line}: imports {module}")
    return problems


def test_shipped_code_imports_no_local_tooling():
    assert (ROOT / "platform_runtime" / "tenant_guard.py").is_file()  # the scan sees the packages
    assert not violations(), "\n".join(violations())


@pytest.mark.parametrize("source", [
    "import devplatform\n",
    "import devplatform.config as c\n",
    "from devplatform.paths import ROOT\n",
    "def f():\n    from devplatform import settings\n",
    "import importlib\nm = importlib.import_module('devplatform.config')\n",
    "m = __import__('devplatform')\n",
])
def test_the_scan_sees_every_form_of_import(source):
    assert [m.split(".")[0] for _, m in imported_modules(source)][-1] == "devplatform"


def test_a_planted_violation_fails_and_tooling_folders_may_import(tmp_path):
    for package in ("platform_runtime", "shared", "domains", "plugins"):
        (tmp_path / package).mkdir()
    (tmp_path / "airflow_local_settings.py").write_text("from devplatform.tenant_guard import task_policy\n")
    (tmp_path / "platform_runtime" / "fine.py").write_text("from airflow.executors.base_executor import BaseExecutor\n")
    (tmp_path / "platform_runtime" / "bad.py").write_text("import json\n\n\ndef f():\n    from domains.aurora import config\n")
    (tmp_path / "shared" / "bad.py").write_text("from devplatform.config import PlatformConfig\n")
    (tmp_path / "shared" / "fine.py").write_text("import shared.db\nimport pandas\n")
    dags = tmp_path / "domains" / "team" / "dags"
    dags.mkdir(parents=True)
    (dags / "dag.py").write_text("import devplatform.paths\n")
    tests = tmp_path / "domains" / "team" / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("from devplatform.pg import PgServer\n")
    assert violations(tmp_path) == [
        "platform_runtime/bad.py:5: imports domains.aurora",
        "shared/bad.py:1: imports devplatform.config",
        "domains/team/dags/dag.py:1: imports devplatform.paths",
        "airflow_local_settings.py:1: imports devplatform.tenant_guard",
    ]


CONTRACTS = ("What ships in the image never imports the local tooling",
             "The shared library and the runtime isolation import no domain",
             "A domain never imports another domain")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's ``lint-imports`` on the tree at ``root`` with its pyproject.toml contracts."""
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{root}:{root / 'plugins'}"},
                          capture_output=True, text=True, timeout=300)


def test_the_import_linter_contracts_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert all(f"{name} KEPT" in out.stdout for name in CONTRACTS), out.stdout[-2000:]


def test_each_contract_breaks_on_a_planted_violation(tmp_path):
    """A copy of the packages, one violation planted per contract: all three break, and a
    domain's tests and local code still may import the local tooling."""
    for package in ("platform_runtime", "shared", "domains", "devplatform", "plugins/lineage_explorer"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.csv"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0
    (tmp_path / "shared" / "planted.py").write_text("def f():\n    from devplatform.paths import ROOT\n    return ROOT\n")
    (tmp_path / "platform_runtime" / "planted.py").write_text("import domains.aurora.db\n")
    (tmp_path / "domains" / "aurora" / "planted.py").write_text("from domains.referral import sync\n")
    (tmp_path / "domains" / "aurora" / "local" / "fine.py").write_text("import devplatform.standin\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert all(f"{name} BROKEN" in out.stdout for name in CONTRACTS), out.stdout[-3000:]
    assert "shared.planted -> devplatform.paths" in out.stdout and "domains.aurora.planted -> domains.referral" in out.stdout
    assert "domains.aurora.local.fine" not in out.stdout
