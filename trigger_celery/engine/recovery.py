"""Crash recovery and reconciliation: the store brought back in line with the rows.

**Reaping.** A worker heartbeats the lease of every run it executes. When a lease
expires, the worker is presumed dead (SIGKILL, OOM, lost machine):

* a DEQUEUED run (sent, never started) goes back to its queue, no attempt counted;
* an EXECUTING run's attempt is CRASHED; the run is retried at once if attempts
  remain, else it ends CRASHED (``on_failure`` is not called for crashes);
* a slot held by a run in any other status is simply freed.

**Reconciling.** After a Redis flush or restart the store may have forgotten queued
runs, limits and pauses, or remember slots nobody holds; :func:`reconcile` rebuilds it
from the database.

Every transition is fenced on (status, attempt number), so a worker that was only slow
and comes back finds its writes rejected.
"""

from __future__ import annotations

import logging

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.engine import dispatch, transitions, waitpoints
from trigger_celery.models import Attempt, QueueState, Run

log = logging.getLogger("trigger_celery.recovery")

WORKER_LOST = {
    "type": "WorkerLost",
    "message": "the worker executing this attempt stopped heartbeating (killed or lost)",
    "code": "TASK_PROCESS_CRASHED",
}


def reap_expired_leases(now: float | None = None) -> int:
    store = get_store()
    now = now if now is not None else clock.timestamp()
    reaped = 0
    for claim in store.expired_leases(now):
        # Release first: once the run is back in its queue, a claim by another process
        # holds a slot under the same run id, which a later release would take away.
        store.release(claim.run_id)
        reaped += 1
        run = Run.objects.filter(id=claim.run_id).first()
        if run is None:
            continue
        if run.status == RunStatus.DEQUEUED:
            if transitions.requeue_unstarted(run.id, run.attempt_count):
                dispatch.enqueue([Run.objects.get(id=run.id)])
        elif run.status == RunStatus.EXECUTING:
            if _just_started(run, now):
                # Its lease ran out while the message waited in a worker's prefetch
                # buffer, and it started just now: its heartbeat is on the way.
                store.adopt(
                    Claim(
                        run.id, run.queue, run.concurrency_key, now + get_settings().LEASE_SECONDS
                    )
                )
                continue
            _crash_attempt(run)
    if reaped:
        dispatch.dispatch_ready()
    return reaped


def _just_started(run: Run, now: float) -> bool:
    attempt = Attempt.objects.filter(run_id=run.id, number=run.attempt_count).first()
    if attempt is None or attempt.started_at is None:
        return False
    return attempt.started_at.timestamp() > now - get_settings().HEARTBEAT_SECONDS * 2


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
        moved = transitions.crash(run.id, attempt, error=WORKER_LOST)
    if not moved:
        return
    log.warning(
        "run %s attempt %d crashed; %s", run.id, attempt, "retrying" if retry else RunStatus.CRASHED
    )
    if retry:
        dispatch.enqueue([Run.objects.get(id=run.id)])
    else:
        waitpoints.runs_finished([run.id])


def reconcile() -> dict[str, int]:
    """Make the store agree with the database (after a flush or a Redis restart).

    Every QUEUED run is put back in its queue; every slot held by a run that is no
    longer dispatched or executing is freed; every dispatched or executing run the
    store forgot gets a slot lease again.
    """
    store = get_store()
    dispatch.reset_caches()
    dispatch.configure_queues()
    for name, paused in QueueState.objects.values_list("name", "paused"):
        if store.is_paused(name) != paused:
            store.set_paused(name, paused)
    queued_in_store = store.queued_run_ids()
    missing = (
        Run.objects.filter(status=RunStatus.QUEUED).exclude(id__in=queued_in_store)
        if len(queued_in_store) < 5000
        else Run.objects.filter(status=RunStatus.QUEUED)
    )
    missing_runs = [r for r in missing.iterator() if r.id not in queued_in_store]
    dispatch.enqueue(missing_runs)
    holding = store.holding_run_ids()
    active = {
        run_id: (queue, key, status, updated_at)
        for run_id, queue, key, status, updated_at in Run.objects.filter(
            status__in=[RunStatus.DEQUEUED, RunStatus.EXECUTING]
        ).values_list("id", "queue", "concurrency_key", "status", "updated_at")
    }
    # A QUEUED run may hold a slot for an instant (claimed, not yet marked DEQUEUED, or
    # a retry releasing it): leave those to their lease. Any other status frees it.
    in_flight = set(
        Run.objects.filter(id__in=holding - set(active), status=RunStatus.QUEUED).values_list(
            "id", flat=True
        )
    )
    freed = 0
    for run_id in holding - set(active) - in_flight:
        if store.release(run_id):
            freed += 1
    # Runs the database says are dispatched or executing but whose slot the store lost:
    # hold a slot for them again, with a fresh lease. A live worker's heartbeat keeps
    # it; a dead one's expires and the reaper retries the run (or re-queues it, for a
    # DEQUEUED run whose Celery message may have been lost with Redis).
    settings = get_settings()
    adopted = 0
    expiry = clock.timestamp() + settings.LEASE_SECONDS
    for run_id, (queue, key, _status, _updated) in active.items():
        if run_id not in holding:
            store.adopt(Claim(run_id, queue, key, expiry))
            adopted += 1
    return {"enqueued": len(missing_runs), "freed": freed, "adopted": adopted}
