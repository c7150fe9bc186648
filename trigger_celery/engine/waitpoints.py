"""Completing waitpoints and resuming the runs that wait on them (SPEC 7).

A waitpoint row is what a WAITING run waits for: a child run, a batch of runs, or an
instant. When the thing it waits for is done, the waitpoint is completed with its
result, and once a run has no pending waitpoint left it is queued again (and replayed
from the top when it starts; see :mod:`trigger_celery.worker.waits`).

Completing a waitpoint is a compare-and-set on ``completed_at``, so a child's own
completion and any repair pass may both try it: one wins, the other does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trigger_celery.core import clock, faults
from trigger_celery.core.results import RunResult
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine import dispatch, queueing, transitions
from trigger_celery.engine.payloads import load_payload
from trigger_celery.models import Run, Waitpoint

_FINAL = [s.value for s in FINAL_STATUSES]


def result_of(run: Run) -> RunResult:
    """The result a waiting parent gets for a finished ``run``."""
    if run.status == RunStatus.COMPLETED:
        return RunResult(
            True, run.id, run.task_identifier, output=load_payload(run.output, run.output_ref)
        )
    error = run.error or {"type": run.status, "message": f"the run ended {run.status}"}
    return RunResult(False, run.id, run.task_identifier, error=error)


def complete_waitpoint(waitpoint_id: int, result: Any) -> None:
    """Record ``result`` on the waitpoint (once) and resume its run if nothing else is pending."""
    row = Waitpoint.objects.filter(id=waitpoint_id).values_list("run_id", "kind").first()
    if row is None:
        return
    run_id, kind = row
    if (
        Waitpoint.objects.pending()
        .filter(id=waitpoint_id)
        .update(completed_at=clock.now(), result=result)
    ):
        if kind == Waitpoint.Kind.DATETIME:
            faults.point("datetime-completed")
        resume_if_ready(run_id)


def complete_if_child_done(wp: Waitpoint) -> None:
    """Complete a RUN waitpoint whose child has already finished."""
    child = Run.objects.filter(id=wp.child_run_id).first()
    if child is not None and child.status in FINAL_STATUSES:
        complete_waitpoint(wp.id, result_of(child).to_json())


def complete_batch_if_done(batch_id: str | None) -> None:
    """Complete the BATCH waitpoint of ``batch_id`` once every run of the batch has finished."""
    if batch_id is None:
        return
    wp = Waitpoint.objects.pending().filter(batch_id=batch_id, kind=Waitpoint.Kind.BATCH).first()
    if wp is None:
        return
    # Cheap check first: this runs once per finished child, so a fan-out of N children
    # must not load the whole batch N times.
    if Run.objects.filter(batch_id=batch_id).exclude(status__in=_FINAL).exists():
        return
    children = list(Run.objects.filter(batch_id=batch_id).order_by("batch_index"))
    if children:
        complete_waitpoint(wp.id, [result_of(c).to_json() for c in children])


def runs_finished(run_ids: Iterable[str]) -> None:
    """Complete the waitpoints of runs that just reached a final status."""
    run_ids = list(run_ids)
    if not run_ids:
        return
    for wp in Waitpoint.objects.pending().filter(child_run_id__in=run_ids):
        complete_if_child_done(wp)
    for batch_id in set(
        Run.objects.filter(id__in=run_ids, batch_id__isnull=False).values_list(
            "batch_id", flat=True
        )
    ):
        complete_batch_if_done(batch_id)


def resume_if_ready(run_id: str) -> bool:
    """Queue a WAITING run again once none of its waitpoints is pending."""
    if Waitpoint.objects.pending().filter(run_id=run_id).exists():
        return False
    if not transitions.resume(run_id):
        return False
    queueing.enqueue([Run.objects.get(id=run_id)])
    dispatch.dispatch_ready()
    return True


def complete_due_datetimes(limit: int = 500) -> int:
    """Pump step: DATETIME waitpoints whose time has come resume their runs."""
    ids = list(
        Waitpoint.objects.pending()
        .filter(kind=Waitpoint.Kind.DATETIME, resume_at__lte=clock.now())
        .values_list("id", flat=True)[:limit]
    )
    for waitpoint_id in ids:
        complete_waitpoint(waitpoint_id, {"ok": True})
    return len(ids)
