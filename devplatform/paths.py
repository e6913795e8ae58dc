"""Where things live in the project and in its ignored local state folder."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAINS_DIR = ROOT / "domains"


def state_dir() -> Path:
    """The ignored folder holding the local platform's data (PLATFORM_STATE_DIR overrides)."""
    return Path(os.environ.get("PLATFORM_STATE_DIR", ROOT / ".local")).resolve()


def domain_names() -> list[str]:
    """Every domain: a package folder under ``domains/`` with a ``settings.yaml``."""
    return sorted(
        p.name
        for p in DOMAINS_DIR.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and (p / "settings.yaml").exists()
    )


def bundle_dir(domain: str, root: Path = ROOT) -> Path:
    """A domain's DAG bundle folder: the only folder its team's dag-processor parses."""
    return root / "domains" / domain / "dags"
