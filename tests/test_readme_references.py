"""The READMEs' references to code resolve: every ``module.path:name`` (as a settings file's
``app:`` names a factory) and every `` `path/to/file.py` `name` `` in a code span or code block of
README.md and domains/*/README.md names a module that imports and an attribute it defines (not one it
only imports: ``bullhorn:create_app`` is devplatform.standin's generic factory, not Bullhorn's)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("domains/*/README.md"))]
PACKAGES = r"(?:domains|shared|devplatform|platform_runtime|plugins|benchmarks|tests)"
MODULE_ATTR = re.compile(rf"(?<![\w.]){PACKAGES}(?:\.\w+)+:\w+(?:\.\w+)*")
FILE_ATTR = re.compile(rf"`({PACKAGES}(?:/\w+)+)\.py` `(\w+(?:\.\w+)*)`")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)


def code_references(text: str) -> set[str]:
    """``module:attr`` found in the code spans and fenced blocks of a Markdown text."""
    return {ref for block in CODE.findall(text) for ref in MODULE_ATTR.findall(block)}


def file_references(text: str) -> set[str]:
    """`` `a/b.py` `name` `` (a file, then what in it) as ``a.b:name``."""
    return {f"{path.replace('/', '.')}:{name}" for path, name in FILE_ATTR.findall(text)}


def references() -> list[tuple[str, str]]:
    found = set()
    for readme in READMES:
        text = readme.read_text()
        found |= {(str(readme.relative_to(ROOT)), ref) for ref in code_references(text) | file_references(text)}
    return sorted(found)


def test_the_references_are_found():
    refs = {ref for _, ref in references()}
    assert "domains.referral.local.bullhorn:create_bullhorn_app" in refs
    assert "devplatform.config:with_jwt_secret" in refs
    text = "```yaml\n  app: domains.referral.local.bullhorn:create_app   # x\n```\nsee `shared.db:copy_rows` and" \
           " shared.db:not_in_code, `devplatform/settings.py` `load`"
    assert code_references(text) == {"domains.referral.local.bullhorn:create_app", "shared.db:copy_rows"}
    assert file_references(text) == {"devplatform.settings:load"}


@pytest.mark.parametrize("readme, ref", references())
def test_every_code_reference_in_the_readmes_resolves(readme, ref):
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is None and "." not in attr:  # a method named in prose after its file: `config.py` `with_jwt_secret`
        obj = next((getattr(v, attr) for v in vars(module).values()
                    if isinstance(v, type) and v.__module__ == module_name and hasattr(v, attr)), None)
    assert obj is not None, f"{readme} names {ref}: {module_name} has no {attr!r}"
    defined_in = getattr(obj, "__module__", module_name)  # a function or class: the module that defines it
    assert defined_in == module_name, f"{readme} names {ref}, which {module_name} only imports from {defined_in}"
