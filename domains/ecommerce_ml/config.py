"""ecommerce_ml settings that DAG files read at parse time: cheap, no heavy imports.

The heavy environment (torch, sentence-transformers, onnxruntime, scikit-learn, vaderSentiment)
is a virtualenv of its own, built from ``requirements-embed.txt`` by ``make install``
(``.venv-embed``) and by the Dockerfile (``/usr/local/ecommerce_ml_embed``). Its interpreter is
``ECOMMERCE_ML_EMBED_PYTHON`` when set (the image sets it), else the project's ``.venv-embed``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The pool (settings.yaml) that bounds how many model tasks the team runs at once (every other
# task runs in the team's default pool, which the platform names: shared.dag_defaults.team_pool).
EMBED_POOL = "ecommerce_ml_embeddings"


def embed_python() -> str:
    """Absolute path of the heavy environment's python (ExternalPythonOperator requires one)."""
    return os.environ.get("ECOMMERCE_ML_EMBED_PYTHON") or str(ROOT / ".venv-embed" / "bin" / "python")


# The domain database's fields, rendered inside the task from the connection (never at parse time,
# never through XCom): the heavy environment has no Airflow, so it gets plain libpq fields. The
# password is masked in logs and in the rendered-fields view (Airflow masks a connection's password
# as soon as a task reads the connection).
DB_FIELDS_TEMPLATE = {
    "host": "{{ conn.ecommerce_ml_postgres.host }}",
    "port": "{{ conn.ecommerce_ml_postgres.port }}",
    "dbname": "{{ conn.ecommerce_ml_postgres.schema }}",
    "user": "{{ conn.ecommerce_ml_postgres.login }}",
    "password": "{{ conn.ecommerce_ml_postgres.password }}",
    "sslmode": "{{ conn.ecommerce_ml_postgres.extra_dejson.get('sslmode', 'prefer') }}",
}
