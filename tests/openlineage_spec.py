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
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).parent / "fixtures" / "openlineage"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


@cache
def _schemas() -> dict[str, dict]:
    """File name -> schema, for the spec's facets and the provider's."""
    out: dict[str, dict] = {}
    for folder in (SPEC_DIR / "facets", Path(provider_facets.__file__).parent):
        for f in sorted(folder.glob("*.json")):
            out[f.name] = json.loads(f.read_text())
    return out


@cache
def _registry() -> Registry:
    core = json.loads((SPEC_DIR / "OpenLineage.json").read_text())
    assert core["$id"] == CORE, core["$id"]
    resources = [(CORE, Resource.from_contents(core))]
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


def event_errors(event: dict) -> list[str]:
    """Every way ``event`` breaks the spec ([] when it is valid)."""
    errors = [f"event: {e.json_path}: {e.message}" for e in _validator(f"{CORE}#/$defs/RunEvent").iter_errors(event)]
    groups = [("run", event.get("run", {}).get("facets", {})), ("job", event.get("job", {}).get("facets", {}))]
    for side in ("inputs", "outputs"):
        for d in event.get(side) or []:
            groups.append((f"{side} {d.get('namespace')}/{d.get('name')}", d.get("facets") or {}))
            key = "inputFacets" if side == "inputs" else "outputFacets"
            groups.append((f"{side} {d.get('name')} {key}", d.get(key) or {}))
    for where, facets in groups:
        for key, facet in facets.items():
            url = facet.get("_schemaURL", "") if isinstance(facet, dict) else ""
            ref = _facet_ref(url)
            if ref is None:
                errors.append(f"{where} facet {key!r}: no vendored schema for {url!r}")
                continue
            errors += [f"{where} facet {key!r}: {e.json_path}: {e.message}" for e in _validator(ref).iter_errors(facet)]
    return errors


def invalid_events(events: list[dict]) -> list[str]:
    """One line per invalid event: its job, type and first errors."""
    out = []
    for e in events:
        errs = event_errors(e)
        if errs:
            out.append(f"{e.get('job', {}).get('name')} {e.get('eventType')}: " + "; ".join(errs[:5]))
    return out
