"""When the local platform is ready: the api-server answers, every bundle is parsed."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from devplatform.config import PlatformConfig
from devplatform.pg import PgServer


def api_healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=3) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def bundle_state(pg: PgServer, config: PlatformConfig) -> dict[str, dict]:
    """Per bundle: DAG files expected, files parsed into DAGs, import errors."""
    import psycopg2

    state = {}
    conn = psycopg2.connect(pg.admin_dsn("airflow"))
    try:
        with conn.cursor() as cur:
            for d in config.domains:
                path = config.bundle_path(d)
                expected = {str(p.relative_to(path)) for p in dag_files(path)}
                cur.execute("SELECT DISTINCT relative_fileloc FROM dag WHERE bundle_name = %s AND is_stale = false", (d,))
                parsed = {r[0] for r in cur.fetchall()}
                cur.execute("SELECT filename, stacktrace FROM import_error WHERE bundle_name = %s", (d,))
                errors = dict(cur.fetchall())
                cur.execute("SELECT last_refreshed IS NOT NULL FROM dag_bundle WHERE name = %s", (d,))
                row = cur.fetchone()
                state[d] = {"expected": expected, "parsed": parsed, "errors": errors, "refreshed": bool(row and row[0])}
    finally:
        conn.close()
    return state


def dag_files(folder: Path) -> list[Path]:
    """Python files in a bundle folder that the dag-processor would consider (safe mode)."""
    out = []
    for p in sorted(folder.rglob("*.py")):
        if "__pycache__" in p.parts or p.name.startswith("_"):
            continue
        text = p.read_text(errors="ignore")
        if "airflow" in text and "dag" in text.lower():
            out.append(p)
    return out
