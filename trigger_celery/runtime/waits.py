"""Waits that hold no worker (SPEC 7): the suspension signal and its settlement.

A wait that is not yet satisfied raises ``SuspendRun``; the executor ends the attempt
with a ``Suspended`` outcome and the run is replayed from the top when it resumes.
The wait APIs themselves (``trigger_and_wait``, ``wait.for_``) build on this module.
"""

from __future__ import annotations

from typing import Any

from trigger_celery.errors import TriggerCeleryError


class SuspendRun(BaseException):
    """Raised inside a run to end the attempt at an unsatisfied wait.

    It derives from BaseException so a user's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason


def settle_suspended(run: Any, ctx: Any, outcome: Any, elapsed_ms: int) -> None:
    raise TriggerCeleryError("waits are not available yet")
