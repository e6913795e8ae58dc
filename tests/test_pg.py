"""The embedded PostgreSQL: one database and one login role per domain, each role confined."""

from __future__ import annotations

import psycopg2
import pytest


def connect(pg, db, user, password):
    return psycopg2.connect(host="127.0.0.1", port=pg.port, dbname=db, user=user, password=password)


def test_a_domain_role_reaches_only_its_own_database(pg):
    pg.ensure_database("iso_a", "iso_a", "pw-a")
    pg.ensure_database("iso_b", "iso_b", "pw-b")
    try:
        connect(pg, "iso_a", "iso_a", "pw-a").close()
        with pytest.raises(psycopg2.OperationalError, match='permission denied for database "iso_b"'):
            connect(pg, "iso_b", "iso_a", "pw-a")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            connect(pg, "iso_a", "iso_a", "wrong")
        pg.ensure_database("iso_a", "iso_a", "pw-a2")  # idempotent; rotates the password
        connect(pg, "iso_a", "iso_a", "pw-a2").close()
    finally:
        pg.drop_database("iso_a")
        pg.drop_database("iso_b")
