"""The spec check itself can fail: events that break the vendored spec are reported."""

from __future__ import annotations

import copy

from tests.openlineage_spec import event_errors

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
EVENT = {
    "eventType": "COMPLETE", "eventTime": "2026-12-02T01:00:00.000000+00:00", "producer": PRODUCER,
    "schemaURL": f"{CORE}#/$defs/RunEvent",
    "run": {"runId": "01937a3c-5f1e-7d2a-9c1b-2f4e5d6a7b8c", "facets": {}},
    "job": {"namespace": "airflow-platform", "name": "looklyy_crawler_pipeline.global_database_refresh", "facets": {
        "sql": {"_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
                "query": "SELECT 1"}}},
    "inputs": [{"namespace": "postgres://127.0.0.1:5432", "name": "looklyy.public.pipeline_logs", "facets": {
        "schema": {"_producer": PRODUCER,
                   "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                   "fields": [{"name": "run_id", "type": "text"}]}}}],
    "outputs": [{"namespace": "http://127.0.0.1:8081", "name": "/api/crawler/harper-bazaar"}],
}


def test_a_valid_event_passes():
    assert event_errors(EVENT) == []


def test_broken_events_are_reported():
    no_run_id = copy.deepcopy(EVENT)
    del no_run_id["run"]["runId"]
    assert any("runId" in e for e in event_errors(no_run_id))
    bad_facet = copy.deepcopy(EVENT)
    bad_facet["inputs"][0]["facets"]["schema"]["fields"] = [{"type": "text"}]  # a field needs a name
    assert any("facet 'schema'" in e and "'name' is a required property" in e for e in event_errors(bad_facet))
    unknown = copy.deepcopy(EVENT)
    unknown["run"]["facets"]["myFacet"] = {"_producer": PRODUCER, "_schemaURL": f"{CORE}#/$defs/RunFacet", "x": 1}
    assert any("custom facet with no schema" in e for e in event_errors(unknown))
    bad_airflow = copy.deepcopy(EVENT)
    bad_airflow["run"]["facets"]["airflowState"] = {"_producer": PRODUCER, "_schemaURL": f"{CORE}#/$defs/RunFacet"}
    assert any("airflowState" in e and "required" in e for e in event_errors(bad_airflow))
