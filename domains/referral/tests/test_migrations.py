"""Migration 0002 on a database that 0001 built and the old sync filled."""

from __future__ import annotations

import shutil

import psycopg2
import pytest

from domains.referral.db import DATABASE
from shared.db import migrate


@pytest.fixture
def conn(domain_db):
    db = domain_db("referral")
    c = psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"], password=db["password"])
    yield c
    c.close()


def test_0002_converts_is_public_and_keeps_one_open_rejection_per_record(conn, tmp_path):
    shutil.copy(DATABASE.migrations / "0001_bullhorn_sync.sql", tmp_path)
    assert migrate(conn, tmp_path) == ["0001_bullhorn_sync"]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO positions (id, is_public, date_last_modified, content_hash) VALUES"
                    " (1, true, now(), 'h'), (2, false, now(), 'h'), (3, NULL, now(), 'h')")
        cur.execute("INSERT INTO rejected_records (entity, record_id, reason, payload, payload_hash, run_id) VALUES"
                    " ('JobOrder', '7', 'isPublic: Input should be a valid boolean', '{}', 'a', 'run-1'),"
                    " ('JobOrder', '7', 'isPublic: Input should be a valid boolean', '{}', 'b', 'run-2'),"
                    " ('JobOrder', '8', 'isPublic: Input should be a valid boolean', '{}', 'c', 'run-2'),"
                    " ('Candidate', NULL, 'id: Input should be a valid integer', '{}', 'd', 'run-2')")
    conn.commit()

    assert migrate(conn, DATABASE.migrations) == ["0002_bullhorn_documented_types"]
    with conn.cursor() as cur:
        cur.execute("SELECT id, is_public, publishing_status, is_open FROM positions ORDER BY id")
        assert cur.fetchall() == [(1, 1, "published-approved", True), (2, 0, "not published", True), (3, None, None, True)]
        cur.execute("SELECT record_id, run_id, last_run_id, resolution, resolved_run_id FROM rejected_records ORDER BY id")
        assert cur.fetchall() == [("7", "run-1", "run-1", "superseded", "run-2"), ("7", "run-2", "run-2", None, None),
                                  ("8", "run-2", "run-2", None, None), (None, "run-2", "run-2", None, None)]
        for bad in ("UPDATE positions SET is_public = 2 WHERE id = 1",
                    "INSERT INTO positions (id, date_last_modified, content_hash) VALUES (9, now(), 'h')",
                    "INSERT INTO rejected_records (entity, record_id, reason, payload, payload_hash, run_id, last_run_id)"
                    " VALUES ('JobOrder', '8', 'x', '{}', 'e', 'run-3', 'run-3')"):
            cur.execute("SAVEPOINT s")
            with pytest.raises(psycopg2.IntegrityError):
                cur.execute(bad)
            cur.execute("ROLLBACK TO SAVEPOINT s")
    conn.rollback()
