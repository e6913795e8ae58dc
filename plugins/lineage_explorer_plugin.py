"""Api-server plugin: the lineage explorer's API (``lineage_explorer``), mounted at
``/lineage-explorer``. The logic lives in the ``lineage_explorer`` package next to this file."""

from airflow.plugins_manager import AirflowPlugin

from lineage_explorer.api import create_app
from lineage_explorer.config import URL_PREFIX


class LineageExplorerPlugin(AirflowPlugin):
    name = "lineage_explorer"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Lineage explorer"}]
