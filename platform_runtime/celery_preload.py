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
from celery.signals import worker_ready

get_listener_manager()  # cached: the task processes reuse this one

# The pool processes are forks of the worker, sharing its pages until one side writes them. A full
# collection walks (so writes the header of) every object it tracks: a fork's first one copied most
# of the worker's heap (60 MiB of 84, measured forking after this module). Airflow's Celery app
# freezes the worker's objects before this module is imported and unfreezes them once the worker
# is ready (``celery_executor_utils``: ``import_modules`` and ``worker_ready``), after the pool has
# forked: from then on the worker's own collections copy its pages into the pool processes, and a
# pool process forked later by the autoscaler starts unfrozen. Frozen here (the objects this module
# made too) and again once ready, after Airflow's unfreeze: the worker's modules, classes and
# caches, which live as long as it does, stay out of every collection, in the worker and its forks.
gc.freeze()


@worker_ready.connect(weak=False)
def keep_frozen(**_kwargs) -> None:
    gc.freeze()
