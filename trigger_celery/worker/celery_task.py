"""The one Celery task trigger_celery sends: ``execute_run(run_id, attempt)``.

The message never carries the payload: the run row is the source of truth, and the
attempt number fences out stale or redelivered messages. The engine sends it by name
(``trigger_celery.execute_run``).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from trigger_celery.worker.attempt import execute


@shared_task(
    name="trigger_celery.execute_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    serializer="json",
)
def execute_run(self: Any, run_id: str, attempt: int) -> str:
    return execute(run_id, attempt, worker=self.request.hostname or None)
