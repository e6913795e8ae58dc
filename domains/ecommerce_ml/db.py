"""The ecommerce_ml database: ``ecommerce_ml_postgres`` with the schema in ``migrations/``.

Open it with ``DATABASE.connect()`` (see :class:`shared.db.DomainDatabase`).
"""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase

DATABASE = DomainDatabase("ecommerce_ml", Path(__file__).parent / "migrations")
