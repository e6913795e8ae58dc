"""The aurora database (``aurora_postgres``; schema in ``migrations/``).

Open it with ``closing(DATABASE.connect())`` (see :class:`shared.db.DomainDatabase`)."""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase

DATABASE = DomainDatabase("aurora", Path(__file__).parent / "migrations")
