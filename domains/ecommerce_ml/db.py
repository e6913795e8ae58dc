"""The ecommerce_ml database: ``ecommerce_ml_postgres`` with the schema in ``migrations/``.

Open it with ``DATABASE.connect()`` (see :class:`shared.db.DomainDatabase`). Migrations
``0001``-``0049`` are the datasets of DAGs 1, 2, 4, 5 and 7 and the registry; ``0050``-
belong to the embeddings and reviews DAGs (3 and 6).
"""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase


def move_tables_to_lake(conn) -> dict:
    """Before the migrations, on a database the previous release wrote: the rows of the tables
    that later migrations drop move into the lake first (``event_sessions`` before 0007), so an
    upgrade needs no manual step. One query and nothing else when there is nothing to move."""
    from domains.ecommerce_ml.events import move_table_sessions_to_lake

    return move_table_sessions_to_lake(conn)


DATABASE = DomainDatabase("ecommerce_ml", Path(__file__).parent / "migrations", before_migrate=move_tables_to_lake)
