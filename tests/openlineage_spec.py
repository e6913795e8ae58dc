"""Validate OpenLineage events against the vendored spec (tests/fixtures/openlineage/).

The run event is checked against ``OpenLineage.json`` (spec 2-0-2), then every facet against
the schema its ``_schemaURL`` names: the spec's own facets from the vendored ``facets/``
folder, the Airflow provider's facets (``airflow``, ``airflowDagRun``, ...) from the JSON
schemas the provider ships next to its code. A facet whose schema cannot be found is an error:
every facet on this platform's events must be of a documented type.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from urllib.parse import urldefrag

import airflow.providers.openlineage.facets as provider_facets
import openlineage.common.schema as common_schemas
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).parent / "fixtures" / "openlineage"

# Where the provider's own schemas (2.20.3) lag behind what it emits on Airflow 3.3, checked
# field by field: ``retry_exponential_backoff`` became a float multiplier in Airflow 3.3 (the
# schema still says boolean), and the task runner's task instance has no ``pool`` for the
# facet (the schema still requires it). Only these exact messages are accepted.
KNOWN_PROVIDER_SCHEMA_LAG = {
    ("airflow", "$.task.retry_exponential_backoff", "is not of type 'boolean'"),
    ("airflow", "$.taskInstance", "'pool' is a required property"),
}

_PROVIDER = Path(provider_facets.__file__).parent
_COMMON = Path(common_schemas.__file__).parent
# (event part, facet key) -> (schema file, its $defs entry)
CUSTOM_FACETS = {
    ("run", "airflow"): (_PROVIDER / "AirflowRunFacet.json", "AirflowRunFacet"),
    ("run", "airflowDagRun"): (_PROVIDER / "AirflowDagRunFacet.json", "AirflowDagRunFacet"),
    ("run", "airflowState"): (_PROVIDER / "AirflowStateRunFacet.json", "AirflowStateRunFacet"),
    ("run", "debug"): (_PROVIDER / "AirflowDebugRunFacet.json", "AirflowDebugRunFacet"),
    ("job", "airflow"): (_PROVIDER / "AirflowJobFacet.json", "AirflowJobFacet"),
    ("run", "unknownSourceAttribute"): (_COMMON / "unknown-source-attribute-run-facet.json",
                                        "UnknownSourceAttributeRunFacet"),
}
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


@cache
def _schemas() -> dict[str, dict]:
    """File name -> schema, for the spec's facets and the provider's."""
    out: dict[str, dict] = {}
    for f in sorted((SPEC_DIR / "facets").glob("*.json")):
        out[f.name] = json.loads(f.read_text())
    for f, _ in CUSTOM_FACETS.values():
        out[f.name] = json.loads(f.read_text())
    return out


@cache
def _registry() -> Registry:
    core = json.loads((SPEC_DIR / "OpenLineage.json").read_text())
    assert core["$id"] == CORE, core["$id"]
    # integration-common's unknownSourceAttribute schema builds on 1-0-2's RunFacet, whose
    # definition (_producer and _schemaURL, both required) 2-0-2 keeps unchanged.
    resources = [(CORE, Resource.from_contents(core)),
                 ("https://openlineage.io/spec/1-0-2/OpenLineage.json", Resource.from_contents(core))]
    for name, schema in _schemas().items():
        uri = schema.get("$id") or f"urn:provider-facet:{name}"
        resources.append((uri, Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=_registry())


def _facet_ref(schema_url: str) -> str | None:
    url, fragment = urldefrag(schema_url)
    schema = _schemas().get(url.rsplit("/", 1)[-1])
    if schema is None or not fragment:
        return None
    return f"{schema.get('$id') or 'urn:provider-facet:' + url.rsplit('/', 1)[-1]}#{fragment}"


def _custom_schema_ref(kind: str, key: str) -> str | None:
    """The schema of a custom facet: the Airflow provider and ``openlineage-integration-common``
    label theirs with the core's generic ``#/$defs/RunFacet`` / ``JobFacet`` URL and ship the
    real schemas next to their code (see ``CUSTOM_FACETS``)."""
    found = CUSTOM_FACETS.get((kind, key))
    if found is None:
        return None
    file, definition = found
    return f"{_schemas()[file.name].get('$id') or 'urn:provider-facet:' + file.name}#/$defs/{definition}"


def _facet_errors(where: str, kind: str, key: str, facet: object) -> list[str]:
    url = facet.get("_schemaURL", "") if isinstance(facet, dict) else ""
    generic = url.startswith(CORE + "#/$defs/")
    ref = url if generic else _facet_ref(url)
    if ref is None:
        return [f"{where} facet {key!r}: no vendored schema for {url!r}"]
    errors = [f"{where} facet {key!r}: {e.json_path}: {e.message}" for e in _validator(ref).iter_errors(facet)]
    if generic:  # a custom facet: its own schema must be known too
        custom = _custom_schema_ref(kind, key)
        if custom is None:
            return [*errors, f"{where} facet {key!r}: custom facet with no schema (only {url!r})"]
        errors += [f"{where} facet {key!r}: {e.json_path}: {e.message}" for e in _validator(custom).iter_errors(facet)
                   if not any(k == key and e.json_path == path and e.message.endswith(msg)
                              for k, path, msg in KNOWN_PROVIDER_SCHEMA_LAG)]
    return errors


def event_errors(event: dict) -> list[str]:
    """Every way ``event`` breaks the spec ([] when it is valid)."""
    errors = [f"event: {e.json_path}: {e.message}" for e in _validator(f"{CORE}#/$defs/RunEvent").iter_errors(event)]
    groups = [("run", "run", event.get("run", {}).get("facets", {})),
              ("job", "job", event.get("job", {}).get("facets", {}))]
    for side in ("inputs", "outputs"):
        for d in event.get(side) or []:
            groups.append((f"{side} {d.get('namespace')}/{d.get('name')}", "dataset", d.get("facets") or {}))
            key = "inputFacets" if side == "inputs" else "outputFacets"
            groups.append((f"{side} {d.get('name')} {key}", "dataset", d.get(key) or {}))
    for where, kind, facets in groups:
        for key, facet in facets.items():
            errors += _facet_errors(where, kind, key, facet)
    return errors


def invalid_events(events: list[dict]) -> list[str]:
    """One line per invalid event: its job, type and first errors."""
    out = []
    for e in events:
        errs = event_errors(e)
        if errs:
            out.append(f"{e.get('job', {}).get('name')} {e.get('eventType')}: " + "; ".join(errs[:5]))
    return out
