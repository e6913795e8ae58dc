"""The platform's global executor: it runs nothing.

Multi-team mode requires a global executor (``[core] executor`` starts with one without a
team; Airflow 3.3.2 ``executors/executor_loader.py``), and the scheduler hands it any task
that names it, whatever the task's team (``SchedulerJobRunner`` executor lookup: a global
executor matches every team). A ``LocalExecutor`` there would run such a task inside the
scheduler, with the scheduler's privileges (DB URL, Fernet key, the signing key, every team's
broker). The cluster policy (``platform_runtime.tenant_guard``) refuses such tasks when their
file is parsed; this executor is the run-time wall behind it: whatever reaches it fails.

``[core] executor = platform_runtime.executors.RefusingExecutor;<team>=CeleryExecutor;...``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.executors.base_executor import BaseExecutor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.models.taskinstance import TaskInstance

REASON = "no team task may run on the platform's global executor; a team's tasks run on its own executor"


class RefusingExecutor(BaseExecutor):
    """A global executor that starts no process and fails every workload it is handed.

    Tasks and executor callbacks are taken (``supports_callbacks``: refusing to queue a
    callback would raise in the scheduler loop) and reported FAILED on the next heartbeat,
    with an error in the scheduler's log and the reason in the task's "state mismatch" audit
    log entry. Connection tests are not taken (``supports_connection_test`` is False: the
    scheduler marks them failed itself). It is global only (``supports_multi_team`` is False:
    Airflow refuses it as a team's executor).
    """

    supports_ad_hoc_ti_run: bool = False
    supports_callbacks: bool = True
    supports_multi_team: bool = False
    supports_connection_test: bool = False
    is_local: bool = False
    is_production: bool = True
    serve_logs: bool = False

    def start(self) -> None:
        """Nothing to start: no worker process, no queue."""

    def trigger_tasks(self, open_slots: int) -> None:
        """Fail every queued task and callback (all of them, whatever ``open_slots`` is)."""
        for key, workload in list(self.queued_tasks.items()):
            ti = workload.ti
            self.log.error(
                "Refused task %s.%s (run %s, map index %s, try %s): %s.",
                ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number, REASON,
            )
            del self.queued_tasks[key]
            self.fail(key, info=f"{type(self).__name__}: {REASON}")
        for key, workload in list(self.queued_callbacks.items()):
            self.log.error("Refused callback %s (%s, log %s, bundle %s): %s.", key, workload.display_name,
                           workload.log_path, workload.bundle_info.name, REASON)
            del self.queued_callbacks[key]
            self.fail(key, info=f"{type(self).__name__}: {REASON}")

    def sync(self) -> None:
        """Nothing runs, so there is nothing to collect: refusals are reported as they happen."""

    def end(self) -> None:
        """Report what is still queued as failed; nothing runs, so there is nothing to wait for."""
        self.trigger_tasks(0)

    def terminate(self) -> None:
        """Nothing runs, so there is nothing to stop."""
        self.trigger_tasks(0)

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Forget a task that is still queued (nothing ever runs)."""
        self.queued_tasks.pop(ti.key, None)
        self.running.discard(ti.key)

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopts nothing: the scheduler resets them."""
        return tis
