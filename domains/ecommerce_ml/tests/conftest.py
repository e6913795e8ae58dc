"""ecommerce_ml test wiring: a fresh ecommerce_ml database on the embedded PostgreSQL, a lake
in a temporary folder behind the ``ecommerce_ml_lake`` connection, and generated days."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from conftest import db_query, set_connection, set_variable

DAY = date(2024, 6, 3)  # a Monday in June: summer seasonality, a weekday volume


@dataclass
class Ecom:
    db: dict
    lake_dir: Path

    @property
    def lake_url(self) -> str:
        return f"file://{self.lake_dir}"

    def root(self):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(self.lake_url + "/")

    def generate(self, day: date = DAY, scale: float = 1.0, parts=None):
        from domains.ecommerce_ml.local.generator import generate_day

        kwargs = {"parts": parts} if parts else {}
        return generate_day(self.root(), day, scale=scale, seed=12, **kwargs)

    def query(self, sql: str, params=()) -> list[tuple]:
        return db_query(self.db, sql, params)

    def rows(self, table: str) -> int:
        """Rows in ``table``; 0 when the table does not even exist (nothing was ever written)."""
        if self.query("SELECT to_regclass(%s)", (table,)) == [(None,)]:
            return 0
        return self.query(f"SELECT count(*) FROM {table}")[0][0]

    def tables_snapshot(self, *tables: str) -> dict:
        """Every row of the tables (sorted), for "a rerun changes nothing"."""
        return {t: sorted(self.query(f"SELECT t::text FROM {t} t")) for t in tables}

    def lake_files(self) -> dict[str, tuple[int, int]]:
        """Relative path -> (size, mtime_ns) of every file in the lake."""
        out = {}
        for p in self.lake_dir.rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(self.lake_dir))] = (st.st_size, st.st_mtime_ns)
        return out

    def raw(self, *parts: str) -> Path:
        return self.lake_dir.joinpath(*parts)


def read_csv(path: Path) -> list[dict]:
    """A plain-Python read of a raw file: every value a string, as written."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ecom(domain_db, tmp_path, mail_sink) -> Ecom:
    db = domain_db("ecommerce_ml")
    lake_dir = tmp_path / "lake"
    lake_dir.mkdir()
    set_connection("ecommerce_ml_lake", conn_type="fs", extra={"base_url": f"file://{lake_dir}"})
    set_variable("ecommerce_ml_alert_emails", "ecommerce-ml-ops@platform.local")
    os.environ.setdefault("ECOMMERCE_ML_DUCKDB_THREADS", "1")
    return Ecom(db, lake_dir)


def lake_io(events: list[dict], job: str) -> tuple[set, set]:
    """``conftest.lineage_io`` of a task, lake files named by their path under the lake
    (``raw/hm/dt=.../articles.csv``) and tables by their name (``interactions``)."""
    from conftest import lineage_io

    def short(datasets):
        return {d[1].split("/lake/", 1)[1] if d[0].startswith("file") else d[1].rsplit(".", 1)[-1] for d in datasets}

    inputs, outputs = lineage_io(events, job)
    return short(inputs), short(outputs)
