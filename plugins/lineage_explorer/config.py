"""Settings of the lineage explorer: Airflow configuration section ``[lineage_explorer]``.

Set only on the api-server (environment ``AIRFLOW__LINEAGE_EXPLORER__<KEY>``); workers
never get them, they reach the store over the OpenLineage ``http`` transport with their
team's ingest key.

- ``sql_alchemy_conn``: libpq URL of the ``lineage`` database (its own login role).
- ``ingest_keys``: JSON ``{"<team>": "<key>"}``; a team's key is accepted only for jobs of
  that team's DAGs.
- ``platform_ingest_key``: accepted for every job (scheduler, dag-processor, api-server
  emit the DAG-level events of every team).
- ``retention_days``: raw events, runs and edges last seen longer ago are purged
  (default 90; ``0`` keeps everything).
- ``namespace``: the deployment's OpenLineage job namespace (default: ``[openlineage]
  namespace``); a team key is refused for jobs of another namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SECTION = "lineage_explorer"
# Where the api-server mounts the plugin's app (plugins/lineage_explorer_plugin.py).
URL_PREFIX = "/lineage-explorer"
INGEST_ENDPOINT = URL_PREFIX.lstrip("/") + "/api/v1/lineage"
DEFAULT_RETENTION_DAYS = 90


@dataclass(frozen=True)
class Settings:
    dsn: str
    ingest_keys: dict[str, str]
    platform_key: str | None
    retention_days: int
    namespace: str

    @classmethod
    def from_airflow(cls) -> Settings:
        from airflow.configuration import conf

        dsn = conf.get(SECTION, "sql_alchemy_conn", fallback=None)
        if not dsn:
            raise RuntimeError(
                f"[{SECTION}] sql_alchemy_conn is not set (AIRFLOW__LINEAGE_EXPLORER__SQL_ALCHEMY_CONN): "
                "the lineage explorer has no database"
            )
        keys = json.loads(conf.get(SECTION, "ingest_keys", fallback="{}") or "{}")
        if not isinstance(keys, dict):
            raise RuntimeError(f"[{SECTION}] ingest_keys must be a JSON object team -> key")
        return cls(
            dsn=dsn.replace("postgresql+psycopg2://", "postgresql://"),
            ingest_keys={str(t): str(k) for t, k in keys.items()},
            platform_key=conf.get(SECTION, "platform_ingest_key", fallback=None) or None,
            retention_days=int(conf.get(SECTION, "retention_days", fallback=str(DEFAULT_RETENTION_DAYS))),
            namespace=conf.get(SECTION, "namespace", fallback=None)
            or conf.get("openlineage", "namespace", fallback="default"),
        )


def transport_config(api_url: str, key: str) -> dict:
    """``AIRFLOW__OPENLINEAGE__TRANSPORT`` for a process that reports to this store: the
    provider's own ``http`` transport (openlineage-python ``HttpConfig``), which POSTs to
    ``urljoin(url, endpoint)`` with ``Authorization: Bearer <apiKey>``."""
    return {
        "type": "http",
        "url": api_url.rstrip("/") + "/",
        "endpoint": INGEST_ENDPOINT,
        "timeout": 5,
        "auth": {"type": "api_key", "apiKey": key},
    }
