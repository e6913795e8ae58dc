"""Code that runs in ecommerce_ml's heavy environment (``requirements-embed.txt``).

Nothing here imports airflow (that environment has none; tests check it): the DAGs reach it
through ``@task.external_python(python=config.embed_python())``, whose callables import
``domains.ecommerce_ml.heavy.jobs`` and pass plain values (libpq fields, paths, flags).
"""
