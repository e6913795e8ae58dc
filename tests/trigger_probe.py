"""The trigger-time attack probe (test-only, never deployed): a trigger whose ``run`` attacks.

``tests/live_platform.py`` plants, per team, a DAG whose task defers to :class:`AttackTrigger`;
the team's triggerer runs it, it tries what a trigger author could (``tests/tenant_probe.py``
``code_attack``) and fires one event carrying the rows, which the task returns (XCom).
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class AttackTrigger(BaseTrigger):
    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__()
        self.args = args

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.trigger_probe.AttackTrigger", {"args": self.args})

    async def run(self):
        from tests.tenant_probe import code_attack

        rows = await asyncio.to_thread(code_attack, where="trigger", **self.args)
        yield TriggerEvent(rows)
