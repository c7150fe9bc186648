"""From the run queue to Celery: enqueue, claim slots, send, promote, reconcile.

The database decides *what* exists; the coordination store decides *who goes next*;
this module moves runs between them and hands winners to Celery as
``{run_id, attempt}`` messages. Every function here is safe to call from any number of
processes at once: the store's claim is atomic and every status change is a
conditional update that only one caller can win.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import connection

from trigger_celery import realtime
from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim, Entry, EnvironmentLimits, QueueConfig
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.routing import celery_queue_for
from trigger_celery.core.statuses import RunStatus
from trigger_celery.definition import registry
from trigger_celery.models import Run

log = logging.getLogger("trigger_celery.dispatch")

_configured_queues: set[str] = set()
_configured_lock = threading.Lock()
_env_configured = False


def now_utc() -> datetime:
    return datetime.now(UTC)


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
    base = run.queued_at or run.created_at or now_utc()
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
            time.time(), max_count=max_count, lease_seconds=settings.LEASE_SECONDS, queue=queue
        )
        if not claims:
            return sent
        ids = [c.run_id for c in claims]
        rows = mark_dequeued(ids)
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
        realtime.notify(*won)
        sent += len(rows)
        if len(claims) < max_count:
            return sent


def mark_dequeued(ids: list[str]) -> list[tuple[str, int, str, str]]:
    """QUEUED -> DEQUEUED for the claimed runs, in one statement.

    Returns ``(id, attempt_count, machine, region)`` of the runs that were still QUEUED
    (a run canceled or expired while it sat in the queue is not among them).
    """
    table = connection.ops.quote_name(Run._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, updated_at = %s "
            f"WHERE id IN ({marks}) AND status = %s "
            "RETURNING id, attempt_count, machine, region",
            [RunStatus.DEQUEUED.value, now_utc(), *ids, RunStatus.QUEUED.value],
        )
        return [tuple(row) for row in cursor.fetchall()]  # type: ignore[misc]


def send_to_celery(run_id: str, attempt: int, machine: str, region: str) -> None:
    from trigger_celery.runtime.celery_task import execute_run

    settings = get_settings()
    execute_run.apply_async(
        kwargs={"run_id": run_id, "attempt": attempt},
        queue=celery_queue_for(machine or None, region or None, settings.CELERY_QUEUE),
    )


def after_commit_dispatch(runs: list[Run]) -> None:
    """Enqueue freshly committed runs and start what can start."""
    try:
        enqueue(runs)
        for queue in {r.queue for r in runs}:
            dispatch_ready(queue)
    except Exception:
        # The rows are committed: the reconciler puts them in the queue later.
        log.exception("could not enqueue %d run(s) now; the reconciler will", len(runs))


def promote_delayed(now: datetime | None = None, *, limit: int = 500) -> int:
    """DELAYED runs whose time has come become QUEUED (and enter their queue)."""
    now = now or now_utc()
    ids = list(Run.objects.due_delayed(now).values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    promoted = []
    for run_id in ids:
        # Re-check the time: a debounce may have pushed it since the select.
        updated = Run.objects.filter(
            id=run_id, status=RunStatus.DELAYED, delayed_until__lte=now
        ).update(status=RunStatus.QUEUED, queued_at=now)
        if updated:
            promoted.append(run_id)
    realtime.notify(*promoted)
    runs = list(Run.objects.filter(id__in=promoted))
    for run in runs:
        if run.ttl and run.ttl_expires_at is None:
            Run.objects.filter(id=run.id).update(ttl_expires_at=now + timedelta(seconds=run.ttl))
    enqueue(runs)
    return len(runs)


def expire_due(now: datetime | None = None, *, limit: int = 500) -> int:
    """QUEUED runs not started within their ttl become EXPIRED (never executed)."""
    now = now or now_utc()
    store = get_store()
    ids = list(
        # A run that started once never expires (its retries wait QUEUED too).
        Run.objects.filter(
            status=RunStatus.QUEUED, ttl_expires_at__lte=now, started_at__isnull=True
        ).values_list("id", flat=True)[:limit]
    )
    expired = 0
    for run_id in ids:
        if Run.objects.filter(id=run_id, status=RunStatus.QUEUED, started_at__isnull=True).update(
            status=RunStatus.EXPIRED,
            expired_at=now,
            finished_at=now,
            idempotency_key=None,
            error={"type": "EXPIRED", "message": "the run was not started within its ttl"},
        ):
            store.remove(run_id)
            realtime.notify(run_id)
            from trigger_celery.runtime.waits import runs_finished

            runs_finished([run_id])
            expired += 1
    return expired


def promote_pending_versions(task_ids: Iterable[str]) -> int:
    """Runs waiting for a worker that knows their task become QUEUED."""
    task_ids = list(task_ids)
    now = now_utc()
    ids = list(
        Run.objects.filter(
            status=RunStatus.PENDING_VERSION, task_identifier__in=task_ids
        ).values_list("id", flat=True)
    )
    promoted = []
    for run_id in ids:
        run = Run.objects.get(id=run_id)
        definition = registry.get_task(run.task_identifier)
        if definition is None:
            continue
        delayed = run.delayed_until is not None and run.delayed_until > now
        updated = Run.objects.filter(id=run_id, status=RunStatus.PENDING_VERSION).update(
            status=RunStatus.DELAYED if delayed else RunStatus.QUEUED,
            queue=definition.queue.name if not run.options.get("queue") else run.queue,
            queued_at=None if delayed else now,
            ttl_expires_at=None if delayed or not run.ttl else now + timedelta(seconds=run.ttl),
        )
        if updated and not delayed:
            promoted.append(run_id)
    enqueue(Run.objects.filter(id__in=promoted))
    return len(promoted)


def reconcile() -> dict[str, int]:
    """Make the store agree with the database (after a flush or a Redis restart).

    Every QUEUED run is put back in its queue; every slot held by a run that is no
    longer dispatched or executing is freed; every dispatched or executing run the
    store forgot gets a slot lease again.
    """
    from trigger_celery.models import QueueState

    store = get_store()
    reset_caches()
    configure_queues()
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
    enqueue(missing_runs)
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
    expiry = time.time() + settings.LEASE_SECONDS
    for run_id, (queue, key, _status, _updated) in active.items():
        if run_id not in holding:
            store.adopt(Claim(run_id, queue, key, expiry))
            adopted += 1
    return {"enqueued": len(missing_runs), "freed": freed, "adopted": adopted}
