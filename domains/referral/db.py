"""The referral database: ``referral_postgres`` with the schema in ``migrations/``.

Open it with ``DATABASE.connect()`` (see :class:`shared.db.DomainDatabase`).
"""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase

DATABASE = DomainDatabase("referral", Path(__file__).parent / "migrations")
