"""The Airflow Assets of the ecommerce_ml domain: one per raw drop, table and lake artifact.

URIs use the domain's own scheme (``ecommerce-ml://raw/...``, ``ecommerce-ml://table/...``,
``ecommerce-ml://lake/...``) so they are the same on the local platform and in production
(the lake's base and the database host differ, the datasets do not). DAGs list them as
``inlets``/``outlets`` so the Assets view shows raw files -> tables -> artifacts; the tasks
also report the real PostgreSQL tables through hook lineage (OpenLineage, ``shared.lineage``).
"""

from __future__ import annotations

from airflow.sdk import Asset

SCHEME = "ecommerce-ml"


def raw(name: str) -> Asset:
    return Asset(name=f"ecommerce_ml.raw.{name}", uri=f"{SCHEME}://raw/{name}")


def table(name: str) -> Asset:
    return Asset(name=f"ecommerce_ml.table.{name}", uri=f"{SCHEME}://table/{name}")


def artifact(name: str) -> Asset:
    return Asset(name=f"ecommerce_ml.lake.{name}", uri=f"{SCHEME}://lake/{name}")


RAW_ARTICLES = raw("articles")
RAW_CUSTOMERS = raw("customers")
RAW_TRANSACTIONS = raw("transactions")
RAW_IMAGES = raw("images")
RAW_REVIEWS = raw("reviews")
RAW_EVENTS = raw("events")
