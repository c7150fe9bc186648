"""From the run queue to Celery: push limits, enqueue, claim slots, send.

The database decides *what* exists; the coordination store decides *who goes next*;
this module moves runs between them and hands winners to Celery as
``{run_id, attempt}`` messages. Every function here is safe to call from any number of
processes at once: the store's claim is atomic and QUEUED → DEQUEUED is a conditional
update that only one caller can win.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from celery import current_app

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Entry, EnvironmentLimits, QueueConfig
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core.routing import celery_queue_for
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import transitions
from trigger_celery.engine.registry import registry
from trigger_celery.models import Run

log = logging.getLogger("trigger_celery.dispatch")

EXECUTE_RUN = "trigger_celery.execute_run"

_configured_queues: set[str] = set()
_configured_lock = threading.Lock()
_env_configured = False


def reset_caches() -> None:
    """Forget which queues this process configured (tests flush the store)."""
    global _env_configured
    with _configured_lock:
        _configured_queues.clear()
        _env_configured = False


def configure_queues(names: Iterable[str] | None = None) -> None:
    """Push queue limits and the environment limit from code to the store."""
    global _env_configured
    store = get_store()
    settings = get_settings()
    with _configured_lock:
        if not _env_configured:
            store.set_environment_limits(
                EnvironmentLimits(settings.CONCURRENCY_LIMIT, settings.BURST_FACTOR)
            )
            _env_configured = True
        for name in names if names is not None else list(registry.queues):
            if name in _configured_queues:
                continue
            q = registry.queues.get(name)
            if q is not None:
                rate = q.rate
                store.configure_queue(
                    QueueConfig(
                        name=q.name,
                        concurrency_limit=q.concurrency_limit,
                        total_limit=q.total_limit,
                        rate_limit_count=rate[0] if rate else None,
                        rate_limit_period=rate[1] if rate else None,
                    )
                )
            _configured_queues.add(name)


def score_of(run: Run) -> float:
    """Order in the queue: queued time minus priority, or the due time of a retry."""
    if run.available_at is not None and (run.queued_at is None or run.available_at > run.queued_at):
        return run.available_at.timestamp()
    base = run.queued_at or run.created_at or clock.now()
    return base.timestamp() - (run.priority or 0)


def enqueue(runs: Iterable[Run]) -> None:
    """Put QUEUED runs into the store (idempotent)."""
    runs = list(runs)
    if not runs:
        return
    configure_queues({r.queue for r in runs})
    get_store().enqueue([Entry(r.id, r.queue, score_of(r), r.concurrency_key) for r in runs])


def dispatch_ready(queue: str | None = None, *, max_count: int = 200) -> int:
    """Claim slots for ready runs and send them to Celery; returns how many were sent."""
    settings = get_settings()
    store = get_store()
    sent = 0
    while True:
        claims = store.claim(
            clock.timestamp(),
            max_count=max_count,
            lease_seconds=settings.LEASE_SECONDS,
            queue=queue,
        )
        if not claims:
            return sent
        ids = [c.run_id for c in claims]
        rows = transitions.dequeue(ids)
        won = {row[0] for row in rows}
        lost = [run_id for run_id in ids if run_id not in won]
        if lost:
            # Canceled or expired while it sat in the queue: give the slot back. A run
            # that is already dispatched or executing (a duplicate entry, e.g. put back
            # by the reconciler mid-claim) keeps the slot it holds under the same id.
            active = set(
                Run.objects.filter(
                    id__in=lost, status__in=[RunStatus.DEQUEUED, RunStatus.EXECUTING]
                ).values_list("id", flat=True)
            )
            for run_id in lost:
                if run_id not in active:
                    store.release(run_id)
        for run_id, attempt_count, machine, region in rows:
            send_to_celery(run_id, attempt_count + 1, machine, region)
        sent += len(rows)
        if len(claims) < max_count:
            return sent


def send_to_celery(run_id: str, attempt: int, machine: str, region: str) -> None:
    """Send ``{run_id, attempt}`` to the Celery task ``trigger_celery.execute_run``.

    By name: the task is defined on the worker side, which sits above the engine.
    """
    current_app.send_task(
        EXECUTE_RUN,
        kwargs={"run_id": run_id, "attempt": attempt},
        queue=celery_queue_for(machine or None, region or None, get_settings().CELERY_QUEUE),
    )


def release_and_dispatch(run_id: str, queue: str | None = None) -> None:
    """Give a run's slot back and start what can start now. Never raises: a slot that
    could not be released comes back when its lease expires."""
    try:
        get_store().release(run_id)
        dispatch_ready(queue)
    except Exception:
        log.exception("could not release the slot of run %s; its lease will expire", run_id)


def after_commit_dispatch(runs: list[Run]) -> None:
    """Enqueue freshly committed runs and start what can start."""
    try:
        enqueue(runs)
        for queue in {r.queue for r in runs}:
            dispatch_ready(queue)
    except Exception:
        # The rows are committed: the reconciler puts them in the queue later.
        log.exception("could not enqueue %d run(s) now; the reconciler will", len(runs))
