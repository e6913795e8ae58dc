"""The ecommerce_ml database: ``ecommerce_ml_postgres`` with the schema in ``migrations/``.

Open it with ``DATABASE.connect()`` (see :class:`shared.db.DomainDatabase`). Migrations
``0001``-``0049`` are the datasets of DAGs 1, 2, 4, 5 and 7 and the registry; ``0050``-
belong to the embeddings and reviews DAGs (3 and 6).
"""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase

DATABASE = DomainDatabase("ecommerce_ml", Path(__file__).parent / "migrations")
