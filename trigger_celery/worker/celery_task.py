"""The Celery tasks trigger_celery sends, by name, from the engine.

``execute_run(run_id, attempt)``: one attempt of a run. The message never carries the
payload: the run row is the source of truth, and the attempt number fences out stale or
redelivered messages. When the attempt frees a slot for a run of the same Celery queue,
the message goes on to execute that run too (``worker.handoff``).

``dispatch_queue(queue)``: claim slots for a queue's ready runs and send them, so a
batch's caller sends one message instead of one per run. Losing it delays nothing for
long: the pump dispatches the same runs on its next pass.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from trigger_celery.core import faults
from trigger_celery.engine import dispatch
from trigger_celery.worker import handoff
from trigger_celery.worker.attempt import execute, execute_kept


@shared_task(
    name="trigger_celery.execute_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    serializer="json",
)
def execute_run(self: Any, run_id: str, attempt: int) -> str:
    worker = self.request.hostname or None
    if _no_chain(self):
        return execute(run_id, attempt, worker=worker)
    with handoff.chain():
        outcome = execute(run_id, attempt, worker=worker)
        # The runs this process kept when it freed their slots (``worker.handoff``).
        while (kept := handoff.take()) is not None:
            faults.point("run-kept")
            execute_kept(*kept, worker=worker)
    return outcome


def _no_chain(task: Any) -> bool:
    """Whether this message must not go on to kept runs (``worker.handoff``): a Celery
    time limit applies to it (it would cut kept runs short), or the project recycles
    pool processes after a number of tasks (a chain would stretch that number)."""
    conf = task.app.conf
    return bool(
        task.time_limit
        or task.soft_time_limit
        or conf.task_time_limit
        or conf.task_soft_time_limit
        or conf.worker_max_tasks_per_child
        or any(task.request.timelimit or ())
    )


@shared_task(name=dispatch.DISPATCH_QUEUE, ignore_result=True, serializer="json")
def dispatch_queue(queue: str) -> int:
    return dispatch.dispatch_ready(queue)
