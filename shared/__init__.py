"""The platform's one shared library: HTTP, notifications, lineage, database, DAG defaults.

It never imports a domain. Modules are imported lazily by DAG files' tasks, so importing
``shared`` at DAG-parse time stays cheap.
"""
