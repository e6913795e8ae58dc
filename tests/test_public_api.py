"""Libraries are used through their public API only.

Every ``.py`` file of the repository is read with ``ast`` and each access to a private
member (``x._name``, dunders excepted) is judged:

- ``self._x`` / ``cls._x`` inside one of our classes is ours, unless ``_x`` is a private
  member of a library class the class inherits from (that is a library's private member,
  used or clobbered);
- ``def _x`` in one of our classes that overrides a library base class's private member;
- ``super()._x`` reaching a library class;
- ``Name._x`` where ``Name`` is a class of the same module or something imported from this
  repository is ours, and so is ``obj._x`` when ``_x`` is a private member that a class of
  the same module defines (``obj`` is one of the module's own objects);
- anything else (``hook._x``, ``SomeLibClass._x``, ``module._x``) is a library's private member.

A library's private members are its classes' private attributes (class dict) and the
``self._x`` attributes their source assigns or reads.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", ".venv-embed", ".local", ".git", "__pycache__", ".ruff_cache", ".pytest_cache", "node_modules"}
# Public API that the language or a library spells with a leading underscore.
PUBLIC_UNDERSCORE = {
    "_replace", "_asdict", "_fields", "_make", "_field_defaults",  # collections.namedtuple / typing.NamedTuple
    "_exit",  # os._exit
}
# The one module allowed to build on Airflow's private members: where Airflow 3.3 has no public
# extension point (the dag-processor's child processes). It lists every private member it
# relies on in PRIVATE_MEMBERS, and tests/test_airflow_internals.py pins them.
PRIVATE_ALLOWED = {"platform_runtime/airflow_internals.py"}


def repo_files() -> list[Path]:
    return sorted(
        p for p in ROOT.rglob("*.py")
        if not any(part in SKIP_DIRS for part in p.relative_to(ROOT).parts)
    )


def first_party_names() -> set[str]:
    """Top-level modules and packages of this repository."""
    names = {p.stem for p in ROOT.glob("*.py")}
    names |= {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and any(p.rglob("*.py"))}
    return names


FIRST_PARTY = first_party_names()


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in PUBLIC_UNDERSCORE


def is_first_party(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in FIRST_PARTY


@cache
def library_private_members(cls: type) -> frozenset[str]:
    """Private attributes of one library class: its class dict and the ``self._x`` in its source."""
    names = {n for n in vars(cls) if is_private(n)}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return frozenset(names)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            if is_private(node.attr):
                names.add(node.attr)
    return frozenset(names)


def private_members_of_libraries(bases: list[type]) -> dict[str, str]:
    """``{private name: 'module.Class'}`` over every library class the bases inherit from."""
    found: dict[str, str] = {}
    for base in bases:
        for klass in inspect.getmro(base):
            if klass is object or is_first_party(klass.__module__):
                continue
            for name in library_private_members(klass):
                found.setdefault(name, f"{klass.__module__}.{klass.__qualname__}")
    return found


def own_private_members(node: ast.ClassDef) -> set[str]:
    """Private members a class of ours defines: methods, class attributes, ``self._x = ...``."""
    names: set[str] = set()
    for stmt in node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and is_private(stmt.name):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name) and is_private(t.id)}
    for sub in ast.walk(node):
        targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(sub, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" and is_private(t.attr):
                names.add(t.attr)
    return names


@dataclass
class ClassInfo:
    name: str
    bases: list[type] = field(default_factory=list)  # resolved runtime classes (ours and libraries')
    local_bases: list[ClassInfo] = field(default_factory=list)  # classes of the same module
    unresolved: list[str] = field(default_factory=list)

    def library_private(self) -> dict[str, str]:
        found = private_members_of_libraries(self.bases)
        for local in self.local_bases:
            for k, v in local.library_private().items():
                found.setdefault(k, v)
        return found


class Checker(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, where: str) -> None:
        self.where = where
        self.problems: list[str] = []
        self.imports: dict[str, str] = {}  # local name -> dotted path of what it names
        self.module_classes: dict[str, ClassInfo] = {}
        self.own_members: set[str] = set()  # private members the module's own classes define
        self.class_stack: list[ClassInfo] = []
        self.self_names: list[set[str]] = [set()]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.imports[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.imports[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.imports[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: inside this repository
                package = ".".join(Path(where).with_suffix("").parts[: -node.level])
                for a in node.names:
                    self.imports[a.asname or a.name] = ".".join(filter(None, (package, node.module, a.name)))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                self.module_classes[node.name] = ClassInfo(node.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                self.own_members |= own_private_members(node)

    # -- resolution ---------------------------------------------------------------------
    def dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        if isinstance(node, ast.Attribute):
            head = self.dotted(node.value)
            return f"{head}.{node.attr}" if head else None
        return None

    @staticmethod
    def load(dotted: str) -> object:
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj: object = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            return obj
        raise ImportError(dotted)

    def resolve_class(self, node: ast.ClassDef) -> ClassInfo:
        info = self.module_classes.get(node.name) if not self.class_stack else None
        info = info or ClassInfo(node.name)
        for base in node.bases:
            expr = base.value if isinstance(base, ast.Subscript) else base
            if isinstance(expr, ast.Name) and expr.id in self.module_classes:
                info.local_bases.append(self.module_classes[expr.id])
                continue
            dotted = self.dotted(expr)
            if dotted is None:
                info.unresolved.append(ast.unparse(base))
                continue
            try:
                obj = self.load(dotted)
            except (ImportError, AttributeError) as exc:
                info.unresolved.append(f"{ast.unparse(base)} ({exc})")
                continue
            if isinstance(obj, type):
                info.bases.append(obj)
        return info

    def is_ours(self, node: ast.expr) -> bool:
        """A class of this module, or a module/class/function imported from this repository."""
        if isinstance(node, ast.Name):
            if node.id in self.module_classes:
                return True
            return is_first_party(self.imports.get(node.id))
        if isinstance(node, ast.Attribute):
            return is_first_party(self.dotted(node))
        return False

    def report(self, node: ast.AST, message: str) -> None:
        self.problems.append(f"{self.where}:{node.lineno}: {message}")

    # -- visiting -----------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:  # noqa: N802
        info = self.resolve_class(node)
        if info.unresolved and any(is_private(stmt.name) for stmt in node.body
                                   if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))):
            self.report(node, f"class {node.name}: cannot resolve base(s) {info.unresolved} to check its private methods")
        library = info.library_private()
        # A private method a library declares abstract is its required interface for subclasses
        # (e.g. the OpenLineage provider's BaseExtractor._execute_extraction, which its "Custom
        # Extractors" guide asks for): implementing it is not using a private API.
        required = {m for b in info.bases for m in getattr(b, "__abstractmethods__", ())}
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in library \
                    and stmt.name not in required:
                self.report(stmt, f"{node.name}.{stmt.name} overrides the private member of {library[stmt.name]}")
        self.class_stack.append(info)
        self.generic_visit(node)
        self.class_stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:  # noqa: N802
        names = set(self.self_names[-1])
        if self.class_stack and node.args.args and self._is_method(node):
            names.add(node.args.args[0].arg)
        self.self_names.append(names)
        self.generic_visit(node)
        self.self_names.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def _is_method(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        return not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)

    def visit_Attribute(self, node: ast.Attribute) -> None:  # noqa: N802
        if is_private(node.attr):
            self.judge(node)
        self.generic_visit(node)

    def judge(self, node: ast.Attribute) -> None:
        value, attr = node.value, node.attr
        expr = ast.unparse(node)
        cls = self.class_stack[-1] if self.class_stack else None
        if isinstance(value, ast.Name) and value.id in self.self_names[-1] and cls is not None:
            library = cls.library_private()
            if attr in library:
                self.report(node, f"{expr}: private member of {library[attr]}")
            return
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            library = cls.library_private() if cls is not None else {}
            if cls is None or attr in library or cls.unresolved:
                self.report(node, f"{expr}: private member of {library.get(attr, 'a base class')}")
            return
        if self.is_ours(value):
            return
        if attr in self.own_members and attr not in (cls.library_private() if cls is not None else {}):
            return  # one of this module's own objects
        self.report(node, f"{expr}: private member of an object that is not ours")


def check_source(source: str, where: str = "<string>") -> list[str]:
    tree = ast.parse(source)
    checker = Checker(tree, where)
    checker.visit(tree)
    return checker.problems


def test_no_private_member_of_a_library_is_used_anywhere():
    problems: list[str] = []
    files = repo_files()
    assert any(p.name == "http.py" and p.parent.name == "shared" for p in files)  # the scan sees the repo
    allowed: list[str] = []
    for path in files:
        where = str(path.relative_to(ROOT))
        (allowed if where in PRIVATE_ALLOWED else problems).extend(check_source(path.read_text(), where))
    assert not problems, "private members of libraries used:\n" + "\n".join(problems)
    assert allowed, "the allow-listed module uses no private member any more: drop it from PRIVATE_ALLOWED"


def test_the_allow_listed_module_declares_every_private_member_it_uses():
    """Each private name flagged in the allow-listed module is one of its PRIVATE_MEMBERS."""
    from platform_runtime.airflow_internals import PRIVATE_MEMBERS

    declared = {m.rsplit(".", 1)[-1] for m in PRIVATE_MEMBERS}
    for where in PRIVATE_ALLOWED:
        for problem in check_source((ROOT / where).read_text(), where):
            name = re.search(r"\.(_[A-Za-z0-9_]+)", problem.split(":")[1] + problem.split(":")[2]).group(1)
            assert name in declared, problem


# -- the checker catches what it must, and only that ------------------------------------
@pytest.mark.parametrize(
    "source, expected",
    [
        ("from airflow.providers.smtp.hooks.smtp import SmtpHook\n"
         "def f():\n    with SmtpHook() as hook:\n        hook._smtp_client.sendmail()\n",
         "hook._smtp_client: private member of an object that is not ours"),
        ("from airflow.providers.http.hooks.http import HttpHook\n"
         "class H(HttpHook):\n    def get(self, c):\n        return super()._extract_auth(c)\n",
         "super()._extract_auth: private member of airflow.providers.http.hooks.http.HttpHook"),
        ("from airflow.providers.http.hooks.http import HttpHook\n"
         "class H(HttpHook):\n    def _configure_session_from_extra(self, s, c, e):\n        return s\n",
         "H._configure_session_from_extra overrides the private member of airflow.providers.http.hooks.http.HttpHook"),
        ("from airflow.providers.http.hooks.http import HttpHook\n"
         "class H(HttpHook):\n    def f(self):\n        return self._auth_type\n",
         "self._auth_type: private member of airflow.providers.http.hooks.http.HttpHook"),
        ("from airflow.providers.http.hooks.http import HttpHook\n"
         "class H(HttpHook):\n    pass\nclass I(H):\n    def f(self):\n        return self._base_url_initialized\n",
         "self._base_url_initialized: private member of airflow.providers.http.hooks.http.HttpHook"),
        ("from shared.http import JsonApiHook\n"
         "class B(JsonApiHook):\n    def f(self):\n        return self._srv_name\n",
         "self._srv_name: private member of airflow.providers.http.hooks.http.HttpHook"),
        ("from airflow.providers.http.hooks import http\nx = http.HttpHook._set_base_url\n",
         "http.HttpHook._set_base_url: private member of an object that is not ours"),
        ("import sys\nf = sys._getframe()\n", "sys._getframe: private member of an object that is not ours"),
    ],
)
def test_checker_flags(source, expected):
    assert [p.split(": ", 1)[1] for p in check_source(source)] == [expected]


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n        return self._x + A._y\n    _y = 2\n",
        "from shared.http import JsonApiHook\nclass B(JsonApiHook):\n    def f(self):\n        return self._session\n",
        "from shared import http\nx = http._excerpt('a')\n",
        "class Box:\n    def __init__(self):\n        self._items = []\ndef f(box):\n    return box._items\n",
        "from collections import namedtuple\nP = namedtuple('P', 'a')\nq = P(1)._replace(a=2)\n",
        "class A:\n    def __repr__(self):\n        return super().__repr__()\n",
        ("from airflow.providers.openlineage.extractors import BaseExtractor\n"
         "class E(BaseExtractor):\n    def _execute_extraction(self):\n        return None\n"),
    ],
)
def test_checker_accepts_our_own_private_members(source):
    assert check_source(source) == []
