"""Assets and OpenLineage datasets name a table the same way (through the providers' own converters)."""

from __future__ import annotations

from types import SimpleNamespace

from airflow.providers.postgres.assets.postgres import convert_asset_to_openlineage, sanitize_uri

from shared.lineage import pg_table, service_asset


def test_postgres_asset_converts_to_the_platform_dataset_name():
    table = pg_table(SimpleNamespace(host="db.internal", port=5432, schema="referral"), "candidates")
    assert (table.namespace, table.name) == ("postgres://db.internal:5432", "referral.public.candidates")
    asset = table.asset()
    dataset = convert_asset_to_openlineage(asset, None)
    assert (dataset.namespace, dataset.name) == (table.namespace, table.name)
    from urllib.parse import urlsplit

    assert sanitize_uri(urlsplit(asset.uri)).geturl() == asset.uri  # already in the provider's normal form


def test_service_assets_have_stable_names_independent_of_the_url():
    a = service_asset("bullhorn", "Candidate")
    assert (a.uri, a.name) == ("https://bullhorn/Candidate", "bullhorn.Candidate")
