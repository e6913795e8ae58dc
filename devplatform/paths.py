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


def platform_domains() -> list[str]:
    """The domains a local platform starts: every domain, or those named in
    ``PLATFORM_DOMAINS`` (comma-separated), e.g. ``PLATFORM_DOMAINS=referral make start`` for a
    platform of one team while working on it. An unknown name is refused."""
    every = domain_names()
    chosen = [d.strip() for d in os.environ.get("PLATFORM_DOMAINS", "").split(",") if d.strip()]
    if unknown := sorted(set(chosen) - set(every)):
        raise ValueError(f"PLATFORM_DOMAINS names no domain folder: {', '.join(unknown)} (domains: {', '.join(every)})")
    return [d for d in every if d in chosen] if chosen else every


def bundle_dir(domain: str, root: Path = ROOT) -> Path:
    """A domain's DAG bundle folder: the only folder its team's dag-processor parses."""
    return root / "domains" / domain / "dags"
