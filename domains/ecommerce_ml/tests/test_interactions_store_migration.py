"""Migration 0006 drops PostgreSQL's ``interactions`` (the lake's registered artifacts are the
system of record) only when every day the table holds is a registered artifact in the lake."""

from __future__ import annotations

import shutil

import psycopg2
import pytest

from domains.ecommerce_ml.db import DATABASE
from shared.db import migrate

ROW = "('2024-06-01', 'c1', '0108775015', 2, 0.05, 1)"


def _connect(db):
    return psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                            password=db["password"])


def test_0006_refuses_while_a_day_is_only_in_the_table_then_drops_it(domain_db, tmp_path):
    db = domain_db("ecommerce_ml")
    folder = tmp_path / "migrations"
    shutil.copytree(DATABASE.migrations, folder)
    (folder / "0006_interactions_in_the_lake.sql").rename(tmp_path / "0006_interactions_in_the_lake.sql")
    conn = _connect(db)
    try:
        migrate(conn, folder, "ecommerce_ml")  # the schema before 0006, with a day in the table
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO interactions VALUES {ROW}")
            cur.execute("INSERT INTO dataset_registry (dataset, version, kind, path, row_count, schema, content_hash,"
                        " asset_uri, dag_id, run_id) VALUES ('interactions', '2024-06-01', 'table', 'interactions',"
                        " 1, '[]', 'rows:1:0', 'ecommerce-ml://table/interactions', 'd', 'r')")
        conn.commit()
        (tmp_path / "0006_interactions_in_the_lake.sql").rename(folder / "0006_interactions_in_the_lake.sql")
        with pytest.raises(psycopg2.Error, match=r"days 2024-06-01 have rows in the table but no registered lake"):
            migrate(conn, folder, "ecommerce_ml")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM interactions")  # nothing changed
            assert cur.fetchone() == (1,)
            cur.execute("INSERT INTO dataset_registry (dataset, version, kind, path, row_count, schema, content_hash,"
                        " asset_uri, dag_id, run_id) VALUES ('interactions', '2024-06-01', 'artifact',"
                        " 'file:///lake/curated/interactions/v=2024-06-01/part-0.parquet', 1, '[]', 'sha256:0',"
                        " 'ecommerce-ml://lake/interactions', 'd', 'r')")
        conn.commit()
        assert migrate(conn, folder, "ecommerce_ml") == ["0006_interactions_in_the_lake"]
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('interactions')")
            assert cur.fetchone() == (None,)
            cur.execute("SELECT kind FROM dataset_registry WHERE dataset = 'interactions'")
            assert cur.fetchall() == [("artifact",)]  # the day stays reachable in the lake
    finally:
        conn.close()
