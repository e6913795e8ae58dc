"""The project's own local platform: embedded PostgreSQL, stand-ins, SMTP sink, Airflow.

Nothing in here is imported by a DAG or by ``shared``: it is development and test tooling
(the production path is the Astro image, see ``Dockerfile``).
"""
