"""Dataset names: Assets and OpenLineage datasets name a table the same way (through the
providers' own converters); HTTP resources, files, object storage, Redis key spaces and Kafka
topics follow OpenLineage's naming conventions (namespace = scheme://authority)."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from airflow.providers.postgres.assets.postgres import convert_asset_to_openlineage, sanitize_uri

from shared.lineage import (
    collected_lineage,
    file_uri,
    http_resource,
    kafka_topic,
    object_uri,
    ol_dataset,
    pg_table,
    record_http_io,
    record_io,
    record_postgres_io,
    redis_keyspace,
)


def test_postgres_asset_converts_to_the_platform_dataset_name():
    table = pg_table(SimpleNamespace(host="db.internal", port=5432, schema="referral"), "candidates")
    assert (table.namespace, table.name) == ("postgres://db.internal:5432", "referral.public.candidates")
    asset = table.asset()
    dataset = convert_asset_to_openlineage(asset, None)
    assert (dataset.namespace, dataset.name) == (table.namespace, table.name)
    assert sanitize_uri(urlsplit(asset.uri)).geturl() == asset.uri  # already in the provider's normal form


class FakeHttpHook:
    """Only what http_resource uses of an HttpHook: get_conn() then url_from_endpoint()."""

    def __init__(self, base):
        self.base, self.connected = base, False

    def get_conn(self):
        self.connected = True

    def url_from_endpoint(self, endpoint):
        assert self.connected
        return self.base.rstrip("/") + "/" + endpoint.lstrip("/")


def named(uri):
    d = ol_dataset(uri)
    return d.namespace, d.name


@pytest.mark.parametrize("uri, expected", [
    (http_resource(FakeHttpHook("https://api.looklyy.com"), "/api/crawler/harper-bazaar"),
     ("https://api.looklyy.com", "/api/crawler/harper-bazaar")),
    (http_resource(FakeHttpHook("http://127.0.0.1:8081/"), "api/x?session_id=1"), ("http://127.0.0.1:8081", "/api/x")),
    (http_resource(None, "https://rest9.bullhornstaffing.com/rest-services/e9/query/Candidate"),
     ("https://rest9.bullhornstaffing.com", "/rest-services/e9/query/Candidate")),
    (file_uri("/data/lake/events/2026-12-01.parquet"), ("file", "/data/lake/events/2026-12-01.parquet")),
    (file_uri("/exports/a.csv", host="nas1"), ("file://nas1", "/exports/a.csv")),
    (object_uri("s3", "lake", "/events/2026/"), ("s3://lake", "events/2026/")),
    (object_uri("gs", "models", "ranker/v3.json"), ("gs://models", "ranker/v3.json")),
    (redis_keyspace("10.0.0.5", 6379, "aurora:session:"), ("redis://10.0.0.5:6379", "aurora:session:")),
    (kafka_topic("broker1:9092,broker2:9092", "aurora.events"), ("kafka://broker1:9092", "aurora.events")),
    (kafka_topic("PLAINTEXT://127.0.0.1:39092", "orders"), ("kafka://127.0.0.1:39092", "orders")),
])
def test_datasets_follow_openlineage_naming(uri, expected):
    assert named(uri) == expected


@pytest.mark.parametrize("call", [lambda: redis_keyspace("h", 1, ""), lambda: kafka_topic("broker", "t"),
                                  lambda: kafka_topic("b:9092", "")])
def test_incomplete_names_are_refused(call):
    with pytest.raises(ValueError):
        call()


class FakePgHook:
    def get_conn_id(self):
        return "x"

    def get_connection(self, conn_id):
        return SimpleNamespace(host="127.0.0.1", port=5432, schema="aurora")


def test_the_collector_carries_what_the_provider_would_drop():
    """A task that wrote a table and a Kafka topic and read an HTTP resource and a Redis key
    space: all four on its lineage (the provider alone keeps only the table)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector.cache_clear()
    assert collected_lineage().inputs == [] and collected_lineage().outputs == []
    record_postgres_io(FakePgHook(), outputs=["sessions"])
    assert collected_lineage().outputs == []  # only provider-convertible: the provider's own path
    record_http_io(FakeHttpHook("https://clicks.example:8443"), inputs=["/v1/clicks"])
    record_io(FakePgHook(), inputs=[redis_keyspace("127.0.0.1", 6390, "aurora:session:")],
              outputs=[kafka_topic("127.0.0.1:39092", "aurora.sessions")])
    record_http_io(FakeHttpHook("https://clicks.example:8443"), inputs=["/v1/clicks"])  # twice: once on the event
    lineage = collected_lineage()
    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        ("https://clicks.example:8443", "/v1/clicks"), ("redis://127.0.0.1:6390", "aurora:session:")]
    assert sorted((d.namespace, d.name) for d in lineage.outputs) == [
        ("kafka://127.0.0.1:39092", "aurora.sessions"), ("postgres://127.0.0.1:5432", "aurora.public.sessions")]
    get_hook_lineage_collector.cache_clear()


def test_the_extractor_is_registered_for_taskflow_tasks():
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    from devplatform.config import openlineage_extractors

    assert openlineage_extractors() == "shared.lineage.TaskFlowLineageExtractor"
    extractors = ExtractorManager().extractors
    for task_type in ("_PythonDecoratedOperator", "_PythonExternalDecoratedOperator"):  # @task, @task.external_python
        assert extractors[task_type].__name__ == "TaskFlowLineageExtractor", task_type
