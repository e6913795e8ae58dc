"""`make start` / `make aurora-data`: a domain that declares a generated dataset (`local.data` in its settings.yaml)
gets its dataset loaded into its own database through its own connection, once per parameters."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg2

from devplatform.config import PlatformConfig, domain_db_role
from devplatform.platform import LocalPlatform
from devplatform.standin import free_ports


def test_generate_data_loads_the_domains_dataset_once():
    (pg_port,) = free_ports(1)
    # its own folder that PostgreSQL's system user may traverse (pytest's tmp_path is 0700)
    state = Path(tempfile.mkdtemp(prefix="domain-data-platform-"))
    os.chmod(state, 0o711)
    platform = LocalPlatform(PlatformConfig(state=state, pg_port=pg_port), quiet=True)
    said: list[str] = []
    platform.say = said.append
    try:
        platform.pg.start()
        platform.pg.wait_ready()
        password = platform.config.secrets.domain_db_passwords["aurora"]
        platform.pg.ensure_database("aurora", domain_db_role("aurora"), password)
        assert platform.generate_data("aurora", ["--users", "20", "--days", "14", "--defects", "invalid_tier"])
        conn = psycopg2.connect(host="127.0.0.1", port=pg_port, dbname="aurora", user="aurora", password=password)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*), count(*) FILTER (WHERE subscription_tier NOT IN ('free', 'premium', 'pro'))"
                            " FROM users")
                assert cur.fetchone() == (20, 3)
                cur.execute("SELECT count(DISTINCT user_id) FROM life_events")
                assert cur.fetchone()[0] == 20
        finally:
            conn.close()
        assert any("[aurora-data] loaded" in line for line in said), said
        assert platform.generate_data("aurora", ["--users", "20", "--days", "14", "--defects", "invalid_tier"])
        assert "nothing to do" in said[-1]
        assert not platform.generate_data("referral")  # declares no dataset: nothing run
    finally:
        platform.stop()
        shutil.rmtree(state, ignore_errors=True)
