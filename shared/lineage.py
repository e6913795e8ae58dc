"""One way to name datasets on this platform, for OpenLineage and for Airflow Assets.

- PostgreSQL tables: OpenLineage namespace ``postgres://host:port``, name
  ``database.schema.table``; the Asset URI is the postgres provider's
  ``postgres://host:port/database/schema/table``, which the OpenLineage provider turns into
  exactly that namespace and name.
- HTTP services: namespace ``https://<service>`` with the service's stable name (not
  its URL, which differs between local stand-ins and production), name = the resource.

:func:`record_postgres_io` reports a task's tables through Airflow's hook-lineage
collector, so they appear as inputs/outputs on the task's own OpenLineage events (the
provider's SQL parser only sees queries sent through ``hook.run``).

Known limit (OpenLineage provider 2.20.3): only asset schemes with a registered converter
(``postgres``, ``file``) become OpenLineage datasets; HTTP-service assets are kept as
Airflow Assets (cross-DAG scheduling, the Assets view) but do not appear on OL events.

OpenLineage itself is configured per deployment through the environment, never in code:
``AIRFLOW__OPENLINEAGE__NAMESPACE`` and ``AIRFLOW__OPENLINEAGE__TRANSPORT`` (a file
locally, HTTP to Marquez or Astro in production); see ``devplatform/config.py`` and the
``Dockerfile``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import Asset


@dataclass(frozen=True)
class PgTable:
    host: str
    port: int
    database: str
    table: str
    schema: str = "public"

    @property
    def namespace(self) -> str:
        return f"postgres://{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.database}.{self.schema}.{self.table}"

    @property
    def uri(self) -> str:
        return f"postgres://{self.host}:{self.port}/{self.database}/{self.schema}/{self.table}"

    def asset(self) -> Asset:
        return Asset(uri=self.uri, name=self.name)


def pg_table(conn: Any, table: str, schema: str = "public") -> PgTable:
    """A table of the database behind an Airflow connection (or anything with host/port/schema)."""
    return PgTable(conn.host or "localhost", int(conn.port or 5432), conn.schema, table, schema)


def service_namespace(service: str) -> str:
    return f"https://{service}"


def service_asset(service: str, resource: str) -> Asset:
    """An external HTTP service's resource, e.g. ``service_asset("bullhorn", "Candidate")``."""
    return Asset(uri=f"{service_namespace(service)}/{resource.lstrip('/')}", name=f"{service}.{resource}")


def record_postgres_io(
    hook: Any, *, inputs: list[str] = (), outputs: list[str] = (), schema: str = "public"
) -> None:
    """Report tables read and written by a task through the hook-lineage collector."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    conn = hook.get_connection(hook.get_conn_id())
    for table in inputs:
        collector.add_input_asset(context=hook, uri=pg_table(conn, table, schema).uri)
    for table in outputs:
        collector.add_output_asset(context=hook, uri=pg_table(conn, table, schema).uri)


def record_service_io(hook: Any, service: str, *, inputs: list[str] = (), outputs: list[str] = ()) -> None:
    """Report a service's resources read/written (Airflow asset lineage; see the known limit)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for r in inputs:
        collector.add_input_asset(context=hook, uri=service_asset(service, r).uri)
    for r in outputs:
        collector.add_output_asset(context=hook, uri=service_asset(service, r).uri)
