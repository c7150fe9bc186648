"""Crash recovery: runs whose slot lease expired because their worker died.

A worker heartbeats the lease of every run it executes. When a lease expires, the
worker is presumed dead (SIGKILL, OOM, lost machine):

* a DEQUEUED run (sent, never started) goes back to its queue, no attempt counted;
* an EXECUTING run's attempt is CRASHED; the run is retried at once if attempts
  remain, else it ends CRASHED (``on_failure`` is not called for crashes);
* a slot held by a run in any other status is simply freed.

Every transition is fenced on (status, attempt number), so a worker that was only slow
and comes back finds its writes rejected.
"""

from __future__ import annotations

import logging
import time

from django.db import transaction

from trigger_celery import dispatch, realtime
from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.models import Attempt, Run

log = logging.getLogger("trigger_celery.recovery")


def reap_expired_leases(now: float | None = None) -> int:
    store = get_store()
    now = now if now is not None else time.time()
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
            requeued = Run.objects.filter(
                id=run.id, status=RunStatus.DEQUEUED, attempt_count=run.attempt_count
            ).update(status=RunStatus.QUEUED)
            if requeued:
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
    now = dispatch.now_utc()
    attempt = run.attempt_count
    error = {
        "type": "WorkerLost",
        "message": "the worker executing this attempt stopped heartbeating (killed or lost)",
        "code": "TASK_PROCESS_CRASHED",
    }
    retry = attempt < run.max_attempts
    with transaction.atomic():
        fields = (
            {"status": RunStatus.QUEUED, "available_at": now, "error": error}
            if retry
            else {
                "status": RunStatus.CRASHED,
                "error": error,
                "finished_at": now,
                "idempotency_key": None,
            }
        )
        won = Run.objects.filter(
            id=run.id, status=RunStatus.EXECUTING, attempt_count=attempt
        ).update(**fields)
        if not won:
            return
        Attempt.objects.filter(run_id=run.id, number=attempt).update(
            status=AttemptStatus.CRASHED, finished_at=now, error=error
        )
    realtime.notify(run.id)
    if not retry:
        from trigger_celery.runtime.waits import runs_finished

        runs_finished([run.id])
    log.warning(
        "run %s attempt %d crashed; %s", run.id, attempt, "retrying" if retry else "CRASHED"
    )
    if retry:
        dispatch.enqueue([Run.objects.get(id=run.id)])
