"""Crash recovery and reconciliation: the store brought back in line with the rows.

**Reaping.** A worker heartbeats the lease of every run it executes. When a lease
expires, the worker is presumed dead (SIGKILL, OOM, lost machine):

* a DEQUEUED run (sent, never started) goes back to its queue, no attempt counted;
* an EXECUTING run's attempt is CRASHED; the run is retried at once if attempts
  remain, else it ends CRASHED (``on_failure`` is not called for crashes);
* a CANCELED run's attempt ended with its worker before it settled: the children it
  triggered after the cancel are canceled (``actions.cancel_late_children``);
* a slot held by a run in any other status is simply freed.

**Reconciling.** After a Redis flush or restart the store may have forgotten queued
runs, limits and pauses, or remember slots nobody holds; :func:`reconcile` rebuilds it
from the database.

Every transition is fenced on (status, attempt number), so a worker that was only slow
and comes back finds its writes rejected.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import log_failure
from trigger_celery.core import clock, tracing
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.engine import actions, dispatch, queueing, transitions, waitpoints
from trigger_celery.errors import WorkerLostError
from trigger_celery.models import Attempt, Run

log = logging.getLogger("trigger_celery.recovery")

# A QUEUED run reconciled this long after its last change is left to the full pass.
RECENT_CHANGES = timedelta(minutes=10)
# Statuses of a run whose slot reconcile must not take away: QUEUED may be mid-claim;
# a CANCELED run's attempt may still be stopping (its on_cancel hooks, its grace), and
# so may a TIMED_OUT one's outside prefork (the monitor ends a run that ignored its stop
# while its thread is still in the blocking call); its worker gives the slot back when
# it has stopped (or the reaper, when its lease ends).
_MAY_HOLD_A_SLOT = frozenset(
    {
        RunStatus.QUEUED,
        RunStatus.DEQUEUED,
        RunStatus.EXECUTING,
        RunStatus.CANCELED,
        RunStatus.TIMED_OUT,
    }
)

WORKER_LOST = {
    "type": "WorkerLost",
    "message": "the worker executing this attempt stopped heartbeating (killed or lost)",
    "code": "TASK_PROCESS_CRASHED",
}


def reap_expired_leases(now: float | None = None) -> int:
    store = get_store()
    now = now if now is not None else store.time()  # leases are measured by the store
    reaped = 0
    for claim in store.expired_leases(now):
        run = Run.objects.filter(id=claim.run_id).first()
        if run is not None and run.status == RunStatus.CANCELED:
            # Its worker died before the canceled attempt settled (killed in the grace
            # period): what that attempt triggered after the cancel is canceled here,
            # before the release, so that a failure leaves the lease to the next pass
            # (and the other leases to this one).
            try:
                actions.cancel_late_children(run.id)
            except Exception:
                log_failure(log, "run %s: could not cancel its late children", run.id)
                continue
        # Release first: once the run is back in its queue, a claim by another process
        # holds a slot under the same run id, which a later release would take away.
        store.release(claim.run_id, attempt=claim.attempt)
        reaped += 1
        if run is None:
            continue
        if run.status == RunStatus.DEQUEUED:
            if transitions.requeue_unstarted(run.id, run.attempt_count):
                _queue_again_or_expire(run)
        elif run.status == RunStatus.EXECUTING:
            if _just_started(run):
                # Its lease ran out while the message waited in a worker's prefetch
                # buffer, and it started just now: its heartbeat is on the way.
                store.adopt(
                    Claim(
                        run.id,
                        run.queue,
                        run.concurrency_key,
                        now + get_settings().LEASE_SECONDS,
                        run.attempt_count,
                    )
                )
                continue
            _crash_attempt(run)
    if reaped:
        dispatch.dispatch_ready()
    return reaped


def _queue_again_or_expire(run: Run) -> None:
    """A run whose message found no worker (none serves its machine or region, or none
    runs) goes back to its queue, unless its ttl has passed meanwhile: then it expires,
    as a queued run would (SPEC 5), instead of being sent again and again."""
    ttl_passed = run.ttl_expires_at is not None and run.ttl_expires_at <= clock.now()
    if ttl_passed and run.started_at is None and transitions.expire(run.id):
        waitpoints.runs_finished([run.id])  # a waiting parent resumes with an error
        return
    queueing.enqueue([Run.objects.get(id=run.id)])


def _just_started(run: Run) -> bool:
    # The attempt's latest start: its resume if it waited, else its first start. Both
    # come from the worker's clock; this process's is the nearest estimate.
    attempt = Attempt.objects.filter(run_id=run.id, number=run.attempt_count).first()
    started = attempt and (attempt.resumed_at or attempt.started_at)
    if not started:
        return False
    return started.timestamp() > clock.timestamp() - get_settings().HEARTBEAT_SECONDS * 2


def _crash_attempt(run: Run) -> None:
    attempt = run.attempt_count
    retry = attempt < run.max_attempts
    if retry:
        moved = transitions.retry(
            run.id,
            attempt,
            retry_at=clock.now(),
            error=WORKER_LOST,
            attempt_status=AttemptStatus.CRASHED,
        )
    else:
        moved, _ = transitions.end(
            run.id,
            attempt,
            RunStatus.CRASHED,
            error=WORKER_LOST,
            attempt_status=AttemptStatus.CRASHED,
        )
    if not moved:
        return
    log.warning(
        "run %s attempt %d crashed; %s", run.id, attempt, "retrying" if retry else RunStatus.CRASHED
    )
    if retry:
        queueing.enqueue([Run.objects.get(id=run.id)])
    else:
        waitpoints.runs_finished([run.id])
    try:
        _record_crashed_span(run, attempt)
    except Exception:  # a trace is no reason to leave the rest of the reaping undone
        log.exception("could not record the span of run %s's crashed attempt", run.id)


def _record_crashed_span(run: Run, attempt: int) -> None:
    """The crashed attempt's span, which its dead process could not end (SPEC 12):
    recorded last, after what the run's recovery needs."""
    if not tracing.enabled():
        return
    row = Attempt.objects.filter(run_id=run.id, number=attempt).values_list(
        "started_at", "resumed_at", "finished_at"
    )
    started_at, resumed_at, finished_at = row.first() or (None, None, None)
    if started_at is None:
        return
    # An attempt resumed after a wait has a span of its own up to its suspension; the
    # lost span is that of the execution that died, from its resume.
    tracing.record_lost_attempt(
        f"run {run.task_identifier}",
        parent=run.trace_context or None,
        start=resumed_at or started_at,
        end=finished_at or clock.now(),
        attributes={
            "trigger_celery.run_id": run.id,
            "trigger_celery.task": run.task_identifier,
            "trigger_celery.attempt": attempt,
            "trigger_celery.queue": run.queue,
        },
        outcome="Crashed",
        error=WorkerLostError(WORKER_LOST["message"]),
    )


def reconcile(*, full: bool = False) -> dict[str, int]:
    """Make the store agree with the database (after a flush, a Redis restart, a lost
    enqueue, a crash between a slot's end and its release).

    * limits and pauses are pushed again (a change in code or settings reaches the store);
    * QUEUED runs the store has no entry for are put back: those that changed in the
      last minutes, or every one with ``full`` (``manage.py trigger_reconcile``, and the
      pump every few minutes);
    * a slot is freed only when its run is certainly not running - never for a QUEUED
      (mid-claim), DEQUEUED, EXECUTING, CANCELED or TIMED_OUT (maybe still stopping) one, whatever
      happened between the reads, nor for one whose row does not exist (yet: a trigger
      claims before it writes; the reaper frees the slot if its lease ends with no row);
    * dispatched and executing runs whose slot the store forgot hold one again.

    Its cost follows the runs that changed, and the slots held, not the table.
    """
    queueing.reset_caches()
    queueing.configure_queues()
    queueing.configure_pauses()
    store = get_store()
    queued = Run.objects.filter(status=RunStatus.QUEUED)
    if not full:
        queued = queued.filter(updated_at__gte=clock.now() - RECENT_CHANGES)
    enqueued = queueing.enqueue_missing(
        queued.only(*queueing.ENTRY_FIELDS).iterator(chunk_size=queueing.CHUNK)
    )
    holding = store.holding_run_ids()
    status_of = dict(Run.objects.filter(id__in=holding).values_list("id", "status"))
    freed = sum(
        1
        for run_id, status in status_of.items()
        if status not in _MAY_HOLD_A_SLOT and store.release(run_id)
    )
    adopted = queueing.adopt_active_slots(skip=holding)
    return {"enqueued": enqueued, "freed": freed, "adopted": adopted}
