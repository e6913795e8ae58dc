"""One way to name datasets on this platform, for OpenLineage and for Airflow Assets.

Names follow OpenLineage's naming conventions (namespace = scheme://authority, name = the
resource), so the same table, file, key space, topic or HTTP resource gets the same dataset
in every domain, and cross-DAG lineage joins on it:

- PostgreSQL tables: namespace ``postgres://host:port``, name ``database.schema.table``; the
  Asset URI is the postgres provider's ``postgres://host:port/database/schema/table``, which
  the OpenLineage provider turns into exactly that namespace and name.
- HTTP services: namespace ``scheme://host:port`` of the URL the task called (the
  connection's base URL), name = the resource path (``/api/crawler/harper-bazaar``).
- Files: namespace ``file`` (local) or ``file://host``, name = the absolute path; object
  storage ``s3://bucket`` / ``gs://bucket``, name = the object key (or prefix).
- Redis key spaces: namespace ``redis://host:port``, name = the key prefix (``aurora:session:``).
- Kafka topics: namespace ``kafka://host:port`` (the first bootstrap server), name = the topic.
- Mail: namespace ``smtp://host:port`` of the mail server, name = the recipient's address (a
  summary or alert mailed to a team is an output of the task that sends it).

Tasks report what they read and wrote through Airflow's hook-lineage collector
(:func:`record_postgres_io`, :func:`record_http_io`, :func:`record_io` with :func:`file_uri`,
:func:`object_uri`, :func:`redis_keyspace`, :func:`kafka_topic`, :func:`mailbox`), in the process that
finishes the task (a deferred operator records again when it resumes).

The OpenLineage provider (2.20.3) turns only asset schemes with a registered converter
(``postgres``, ``file``) into datasets and drops the rest (``http``, ``https``, ``s3``
without the Amazon provider, ``redis``, ``kafka``). :func:`collected_lineage` converts those
too; it reaches the events through the provider's public extractor interface:
:class:`TaskFlowLineageExtractor` for ``@task`` functions (registered with
``AIRFLOW__OPENLINEAGE__EXTRACTORS`` in the ``Dockerfile``) and :class:`LineageMixin`
(``get_openlineage_facets_on_complete``) for the domains' operators. When a task collected
only provider-convertible assets they stay the provider's (SQL child jobs included).

OpenLineage itself is configured per deployment through the environment, never in code:
``AIRFLOW__OPENLINEAGE__NAMESPACE`` and ``AIRFLOW__OPENLINEAGE__TRANSPORT``; see
``devplatform/config.py`` and the ``Dockerfile``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

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


def http_resource(hook: Any, path: str) -> str:
    """The URI of an HTTP service's resource as a task calls it through ``hook`` (an
    ``HttpHook``, e.g. ``shared.http.JsonApiHook``): ``scheme://host:port/path``. ``path`` is
    relative to the connection's base URL, or an absolute URL (services that hand out their own
    URLs at login). Query strings and fragments are not part of the resource."""
    if not path.startswith(("http://", "https://")):
        hook.get_conn()  # sets the hook's base URL from its connection
        path = hook.url_from_endpoint(path)
    parts = urlsplit(path)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def file_uri(path: str | Path, host: str = "") -> str:
    """A file or folder: ``file:///abs/path`` (local; OpenLineage namespace ``file``) or
    ``file://host/abs/path`` (a remote file system)."""
    return f"file://{host}{Path(path).resolve() if not host else path}"


def object_uri(scheme: str, bucket: str, key: str = "") -> str:
    """An object (or prefix) of object storage, e.g. ``object_uri("s3", "lake", "events/2026/")``."""
    return f"{scheme}://{bucket}/{key.lstrip('/')}"


def redis_keyspace(host: str, port: int, prefix: str) -> str:
    """The keys starting with ``prefix`` on a Redis server (namespace ``redis://host:port``)."""
    if not prefix:
        raise ValueError("a Redis key space needs a key prefix")
    return f"redis://{host}:{int(port)}/{prefix}"


def kafka_topic(bootstrap_servers: str, topic: str) -> str:
    """A Kafka topic; the namespace is the first bootstrap server (``kafka://host:port``)."""
    first = bootstrap_servers.split(",")[0].strip()
    first = first.split("://", 1)[-1]  # PLAINTEXT://host:port form
    if not first or ":" not in first or not topic:
        raise ValueError(f"kafka_topic needs host:port and a topic, got {bootstrap_servers!r}, {topic!r}")
    return f"kafka://{first}/{topic}"


def mailbox(host: str, port: int, address: str) -> str:
    """A recipient's mailbox on a mail server (namespace ``smtp://host:port``, name = the address)."""
    if "@" not in address:
        raise ValueError(f"a mailbox needs an address, got {address!r}")
    return f"smtp://{host}:{int(port)}/{address}"


def ol_dataset(uri: str):
    """The OpenLineage dataset for a URI made by this module (or any asset URI the provider
    converts): the provider's converter when it has one, else scheme://authority + resource."""
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from openlineage.client.event_v2 import Dataset

    converted = translate_airflow_asset(Asset(uri=uri), None)
    if converted is not None:
        return converted
    return _fallback_dataset(uri) or Dataset(namespace=urlsplit(uri).scheme, name=uri)


def _fallback_dataset(uri: str):
    from openlineage.client.event_v2 import Dataset

    parts = urlsplit(uri)
    if parts.scheme not in _FALLBACK_SCHEMES or not parts.netloc:
        return None
    name = parts.path if parts.scheme in ("http", "https") else parts.path.lstrip("/")
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=unquote(name) or "/")


_FALLBACK_SCHEMES = ("http", "https", "redis", "kafka", "smtp", "s3", "gs", "abfss", "wasbs", "hdfs")


def record_io(context: Any, *, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
    """Report dataset URIs (from the functions above) read and written by a task, through the
    hook-lineage collector; ``context`` is the hook (or object) that did the I/O."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for uri in inputs:
        collector.add_input_asset(context=context, uri=uri)
    for uri in outputs:
        collector.add_output_asset(context=context, uri=uri)


def record_postgres_io(
    hook: Any, *, inputs: Iterable[str] = (), outputs: Iterable[str] = (), schema: str = "public"
) -> None:
    """Report tables read and written by a task through the hook-lineage collector."""
    conn = hook.get_connection(hook.get_conn_id())
    record_io(hook, inputs=[pg_table(conn, t, schema).uri for t in inputs],
              outputs=[pg_table(conn, t, schema).uri for t in outputs])


def record_http_io(hook: Any, *, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
    """Report an HTTP service's resources a task read (``inputs``: what it fetched) and wrote
    (``outputs``: what it sent or changed) through ``hook``; paths as in :func:`http_resource`."""
    record_io(hook, inputs=[http_resource(hook, p) for p in inputs], outputs=[http_resource(hook, p) for p in outputs])


def collected_lineage(task_instance: Any = None, failed: bool = False):
    """The task's inputs and outputs from the hook-lineage collector, as an ``OperatorLineage``.

    Empty when every collected asset is one the provider converts itself: the provider's own
    hook lineage then runs as usual. Otherwise the provider's hook lineage (its datasets and SQL
    child jobs, through ``ExtractorManager.get_hook_lineage``) plus the datasets it would drop."""
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.sdk.lineage import get_hook_lineage_collector
    from airflow.utils.state import TaskInstanceState

    collector = get_hook_lineage_collector()
    if not collector.has_collected:
        return OperatorLineage()
    collected = collector.collected_assets

    def dropped(infos) -> list:
        out = [d for i in infos if translate_airflow_asset(i.asset, i.context) is None
               and (d := _fallback_dataset(i.asset.uri)) is not None]
        return out

    extra_in, extra_out = dropped(collected.inputs), dropped(collected.outputs)
    if not extra_in and not extra_out:
        return OperatorLineage()
    state = TaskInstanceState.FAILED if failed else TaskInstanceState.SUCCESS
    base = ExtractorManager().get_hook_lineage(task_instance, state) or OperatorLineage()
    return OperatorLineage(inputs=_unique([*base.inputs, *extra_in]), outputs=_unique([*base.outputs, *extra_out]),
                           run_facets=base.run_facets, job_facets=base.job_facets)


def _unique(datasets: list) -> list:
    seen: dict[tuple[str, str], Any] = {}
    for d in datasets:
        seen.setdefault((d.namespace, d.name), d)
    return list(seen.values())


class LineageMixin:
    """For the domains' operators: their OpenLineage COMPLETE/FAIL events carry what the task
    recorded with this module (put it before ``BaseOperator`` in the bases)."""

    def get_openlineage_facets_on_complete(self, task_instance):
        return collected_lineage(task_instance)

    def get_openlineage_facets_on_failure(self, task_instance):
        return collected_lineage(task_instance, failed=True)


def _make_extractor() -> type:
    from airflow.providers.openlineage.extractors import BaseExtractor, OperatorLineage

    class TaskFlowLineageExtractor(BaseExtractor):
        """OpenLineage extractor for ``@task`` functions (``AIRFLOW__OPENLINEAGE__EXTRACTORS``):
        their events carry every dataset the function recorded (see :func:`collected_lineage`)."""

        @classmethod
        def get_operator_classnames(cls) -> list[str]:
            # @task, and @task.external_python (its function runs in another interpreter: what
            # it touched is recorded in the worker, e.g. by the task's ``post_execute``)
            return ["_PythonDecoratedOperator", "_PythonExternalDecoratedOperator"]

        def _execute_extraction(self) -> OperatorLineage:
            return OperatorLineage()  # at start nothing is known yet

        def extract_on_complete(self, task_instance) -> OperatorLineage:
            return collected_lineage(task_instance)

        def extract_on_failure(self, task_instance) -> OperatorLineage:
            return collected_lineage(task_instance, failed=True)

    TaskFlowLineageExtractor.__module__ = __name__
    return TaskFlowLineageExtractor


def __getattr__(name: str) -> Any:
    # ``TaskFlowLineageExtractor`` is built on first use: importing the OpenLineage provider
    # costs about 1 s, which DAG parsing (operators import this module) must not pay.
    if name == "TaskFlowLineageExtractor":
        globals()[name] = cls = _make_extractor()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
