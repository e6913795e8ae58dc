"""The embedded PostgreSQL: one database and one login role per domain, each role confined."""

from __future__ import annotations

import time

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


def admin_execute(pg, statement, db="postgres"):
    conn = psycopg2.connect(pg.admin_dsn(db))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_a_domain_role_cannot_open_the_maintenance_databases_or_another_domains(pg):
    # an existing cluster made before the lock-down: PUBLIC may connect to postgres and template1
    admin_execute(pg, "GRANT CONNECT ON DATABASE postgres TO PUBLIC")
    admin_execute(pg, "GRANT CONNECT ON DATABASE template1 TO PUBLIC")
    pg.ensure_database("iso_c", "iso_c", "pw-c")
    pg.ensure_database("iso_d", "iso_d", "pw-d")
    try:
        for db in ("postgres", "template1", "iso_d"):
            with pytest.raises(psycopg2.OperationalError, match=f'permission denied for database "{db}"'):
                connect(pg, db, "iso_c", "pw-c")
        connect(pg, "iso_c", "iso_c", "pw-c").close()
        connect(pg, "iso_d", "iso_d", "pw-d").close()
        for db in ("postgres", "template1", "iso_c", "iso_d"):  # the platform's superuser still can
            psycopg2.connect(pg.admin_dsn(db)).close()
        pg.ensure_database("iso_c", "iso_c", "pw-c")  # idempotent on a locked cluster
        with pytest.raises(psycopg2.OperationalError, match='permission denied for database "postgres"'):
            connect(pg, "postgres", "iso_c", "pw-c")
        connect(pg, "iso_c", "iso_c", "pw-c").close()
    finally:
        pg.drop_database("iso_c")
        pg.drop_database("iso_d")


def test_the_superuser_logs_in_over_the_socket_only_as_a_mapped_os_user(pg):
    """``peer map=platform_admin``: the superuser is for the OS users in pg_ident.conf (whoever
    started the server, and the server's own), not for any OS user who reaches the socket."""
    import getpass

    from devplatform.pg import ADMIN_MAP

    ident = pg.datadir / "pg_ident.conf"
    before = ident.read_text()
    me = getpass.getuser()
    assert f"{ADMIN_MAP}   {me}   postgres" in before.splitlines()
    psycopg2.connect(pg.admin_dsn()).close()
    try:  # the same connection once this OS user is no longer in the map
        ident.write_text("".join(line + "\n" for line in before.splitlines() if f"   {me}   " not in line))
        pg.reload()
        time.sleep(0.5)
        with pytest.raises(psycopg2.OperationalError, match="Peer authentication failed"):
            psycopg2.connect(pg.admin_dsn()).close()
    finally:
        ident.write_text(before)
        pg.reload()
        time.sleep(0.5)
    psycopg2.connect(pg.admin_dsn()).close()


def test_the_sessions_database_skips_fsync_and_the_platforms_settings_keep_it(pg):
    """The session's throw-away PostgreSQL runs with ``fsync = off`` (conftest.py ``no_fsync``,
    PostgreSQL's ``ALTER SYSTEM``, i.e. postgresql.auto.conf); the settings file the platform
    writes for every server it starts (``make start``, the live tests' platforms) still says on."""
    conn = psycopg2.connect(pg.admin_dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW fsync")
            assert cur.fetchone()[0] == "off"
    finally:
        conn.close()
    assert "fsync = on" in (pg.datadir / "postgresql.conf").read_text().splitlines()
    assert "fsync = 'off'" in (pg.datadir / "postgresql.auto.conf").read_text()
