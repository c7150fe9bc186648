"""What ``runs.cancel``, ``runs.replay`` and ``runs.reschedule`` do to the rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from trigger_celery import dispatch, realtime
from trigger_celery.client.handles import RunHandle
from trigger_celery.client.payloads import load_payload
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.durations import parse_delay
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.errors import InvalidRunStateError, RunNotFoundError
from trigger_celery.models import Attempt, Run

CANCELED_ERROR = {
    "type": "RunCanceledError",
    "message": "the run was canceled",
    "code": "TASK_RUN_CANCELLED",
}
_NOT_STARTED = [RunStatus.PENDING_VERSION, RunStatus.DELAYED, RunStatus.QUEUED, RunStatus.DEQUEUED]
_STARTED = [RunStatus.EXECUTING, RunStatus.WAITING]


def cancel_run(run_id: str) -> bool:
    """Cancel ``run_id`` and its unfinished descendants; False if it had already ended."""
    now = dispatch.now_utc()
    store = get_store()
    canceled = False
    with transaction.atomic():
        run = Run.objects.filter(id=run_id).first()
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        if run.status in FINAL_STATUSES:
            return False
        fields = {"status": RunStatus.CANCELED, "finished_at": now, "error": CANCELED_ERROR}
        if Run.objects.filter(id=run_id, status__in=_NOT_STARTED).update(**fields):
            canceled = True
        elif Run.objects.filter(id=run_id, status__in=_STARTED).update(
            **fields, cancel_requested_at=now
        ):
            # Its worker notices, sets the abort signal, runs on_cancel, stops the attempt.
            Attempt.objects.filter(
                run_id=run_id, number=run.attempt_count, finished_at__isnull=True
            ).update(status="CANCELED", finished_at=now, error=CANCELED_ERROR)
            canceled = True
    if canceled:
        store.remove(run_id)
        realtime.notify(run_id)
        if run.status in (RunStatus.DEQUEUED, RunStatus.WAITING):
            # No worker will settle it: give its slot back here (a no-op if none).
            store.release(run_id)
            dispatch.dispatch_ready(run.queue)
    for child_id in (
        Run.objects.filter(parent_id=run_id)
        .exclude(status__in=[s.value for s in FINAL_STATUSES])
        .values_list("id", flat=True)
    ):
        cancel_run(child_id)
    if canceled:
        from trigger_celery.runtime.waits import runs_finished

        runs_finished([run_id])  # a parent waiting on this run resumes with an error
    return canceled


def replay_run(run_id: str, overrides: Mapping[str, Any]) -> RunHandle:
    from trigger_celery.client.trigger import trigger_task

    run = Run.objects.filter(id=run_id).first()
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    options = {
        k: v
        for k, v in run.options.items()
        if k not in ("idempotency_key", "idempotency_key_ttl", "debounce", "delay")
    }
    options.update(overrides)
    return trigger_task(
        run.task_identifier,
        load_payload(run.payload, run.payload_ref),
        options,
        {},
        replayed_from=run.id,
    )


def reschedule_run(run_id: str, delay: Any) -> None:
    now = dispatch.now_utc()
    when = parse_delay(delay, now=now)
    run = Run.objects.filter(id=run_id).first()
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    updated = Run.objects.filter(id=run_id, status=RunStatus.DELAYED).update(
        delayed_until=when or now
    )
    if not updated:
        raise InvalidRunStateError(
            f"run {run_id} is {run.status}; only a DELAYED run can be rescheduled"
        )
