"""Imported once by each team's Celery worker at start, before it forks its pool (Celery's
``imports`` setting, given through Airflow's ``[celery] extra_celery_config``; see
``devplatform/tenants.py`` ``WORKER_TUNING`` and the ``Dockerfile``).

Every task runs in a process forked from a pool process, which is forked from the worker.
What the task process loads is thrown away with it: without this module each task built
the Task SDK's listener manager anew (the OpenLineage listener plugin and its client, about
330 modules: 0.4-0.9 s per task on this 2-core machine, issue 25's timeline), which the
LocalExecutor's task processes inherit from the scheduler they are forked from. Built here
once, every pool process and every task process forked from it starts with it.

Nothing here holds a connection, a thread or a team's secret: the listener manager only
registers the listener plugins (OpenLineage's listener creates its client on first use,
inside the task process).
"""

from __future__ import annotations

import gc

import airflow.dag_processing.dagbag  # noqa: F401  (the task process parses its DAG file with it)
import airflow.sdk.execution_time.supervisor  # noqa: F401  (each pool process runs every task under it)
from airflow.sdk.listener import get_listener_manager

get_listener_manager()  # cached: the task processes reuse this one

# The pool processes are forks of the worker, sharing its pages until written. A collection in a
# fork walks (and so writes the header of) every object it tracks: a pool process's first full
# collection copied most of the worker's heap (60 MiB of 84, measured forking after this module).
# Frozen, the worker's objects stay out of every collection, here and in its forks (the objects are
# modules, classes and caches, which live as long as the worker anyway).
gc.freeze()
