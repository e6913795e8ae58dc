"""Api-server plugin: the Lineage page inside the Airflow UI.

- ``fastapi_apps``: the page's static files (``lineage_explorer_page/``: ``index.html``,
  ``explorer.js``, ``explorer.css`` and the vendored cytoscape + cytoscape-dagre) at
  ``/lineage-explorer-page/``. The page holds no data: it reads the lineage explorer's API
  (``/lineage-explorer/api/v1/...``, plugin ``lineage_explorer``) with the user's own
  credentials, the ``_token`` cookie the UI sets, so each user sees only what the API lets
  them see.
- ``external_views``: a "Lineage" entry in the UI's navigation (every job the user may see)
  and a "Lineage" tab on each DAG (that DAG's jobs), both rendering the page in the UI's iframe.
"""

from pathlib import Path

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).parent / "lineage_explorer_page"
PAGE_PREFIX = "/lineage-explorer-page"


def create_page_app() -> FastAPI:
    app = FastAPI(title="Lineage page", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/", StaticFiles(directory=PAGE_DIR, html=True), name="lineage-page")
    return app


class LineageExplorerPagePlugin(AirflowPlugin):
    name = "lineage_explorer_page"
    fastapi_apps = [{"app": create_page_app(), "url_prefix": PAGE_PREFIX, "name": "Lineage page"}]
    external_views = [
        {"name": "Lineage", "href": f"{PAGE_PREFIX}/", "destination": "nav", "url_route": "lineage"},
        {"name": "Lineage", "href": f"{PAGE_PREFIX}/?dag_id={{DAG_ID}}", "destination": "dag",
         "url_route": "lineage_dag"},
    ]
