"""The referral database: its connection and schema."""

from __future__ import annotations

from pathlib import Path

from shared.db import domain_hook, migrate

DOMAIN = "referral"
MIGRATIONS = Path(__file__).parent / "migrations"


def connect():
    """A psycopg connection to the referral database with the schema up to date."""
    hook = domain_hook(DOMAIN)
    conn = hook.get_conn()
    migrate(conn, MIGRATIONS, lock_name=f"{DOMAIN}-migrations")
    return hook, conn
