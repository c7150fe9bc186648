"""The store's side of the runs: limits, pauses and queue entries, pushed from the rows.

Queue limits are declared in code and the environment limit in settings; a process
pushes them to the coordination store before it first enqueues into a queue. A store
that was flushed or restarted refuses to claim (``StoreNotConfiguredError``) until
:func:`restore` has put back, from the database, everything a claim depends on: queue
limits, pauses, the slots of dispatched and executing runs, the queued runs - and,
last, the environment limits that mark the store as ready again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim, Entry, EnvironmentLimits, QueueConfig
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core.environments import burst_factor_problem, concurrency_limit_problem
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine.registry import registry
from trigger_celery.models import Attempt, QueueState, Run

# The fields an entry is made from: never the payload.
ENTRY_FIELDS = (
    "id",
    "queue",
    "concurrency_key",
    "priority",
    "queued_at",
    "available_at",
    "created_at",
    "attempt_count",
)
CHUNK = 1000

log = logging.getLogger("trigger_celery.queueing")

# queue -> when this process last pushed its limits (time.monotonic()). They are pushed
# again after REPUSH_SECONDS: a store restored by another process (a flush, a restart)
# knows only the queues that process declares, so a queue declared only where runs are
# triggered gets its limits back within this long.
_configured_queues: dict[str, float] = {}
REPUSH_SECONDS = 10.0
_configured_lock = threading.Lock()
_env_configured = False


def reset_caches() -> None:
    """Forget which queues this process configured: they are pushed again."""
    global _env_configured
    with _configured_lock:
        _configured_queues.clear()
        _env_configured = False


def configure_queues(names: Iterable[str] | None = None) -> None:
    """Push queue limits from code to the store (each queue once per process, and again
    after ``REPUSH_SECONDS``), and keep
    the environment limits in step with settings in a store that has them."""
    global _env_configured
    with _configured_lock:
        if not _env_configured:
            try:
                mine = limits_of_settings()
            except ImproperlyConfigured as refused:
                # Only the push is refused: the store keeps the limits the other
                # processes pushed, and this one still queues and runs under them (a
                # beat set up so must not stall every delayed, retried or resumed run).
                log.error("%s; this process does not push its environment limits", refused)
            else:
                store = get_store()
                warn_of_other_limits(store.environment_limits(), mine)
                store.set_environment_limits(mine, only_if_set=True)
            _env_configured = True
        stale = time.monotonic() - REPUSH_SECONDS
        todo = [
            name
            for name in (names if names is not None else list(registry.queues))
            if _configured_queues.get(name, -math.inf) <= stale
        ]
        if todo:
            _push_queues(todo)


def limits_of_settings() -> EnvironmentLimits:
    """This process's environment limits. Invalid ones (system checks E004/E005) raise
    ImproperlyConfigured instead of reaching the store, which every process of the
    environment shares: a 0 there started nothing anywhere, a NaN burst lifted the cap.
    ``configure_queues`` logs it and pushes nothing; ``restore`` raises it."""
    settings = get_settings()
    problem = concurrency_limit_problem(settings.CONCURRENCY_LIMIT) or burst_factor_problem(
        settings.BURST_FACTOR
    )
    if problem is not None:
        raise ImproperlyConfigured(problem)
    return EnvironmentLimits(settings.CONCURRENCY_LIMIT, settings.BURST_FACTOR)


def warn_of_other_limits(theirs: EnvironmentLimits | None, mine: EnvironmentLimits) -> bool:
    """Warn when the store holds environment limits other than this process's settings:
    every process pushes its own, so processes with different ``CONCURRENCY_LIMIT`` or
    ``BURST_FACTOR`` take turns at deciding it. Expected once in a deploy that changes
    them; anything else means the processes of one environment disagree."""
    if theirs is None or theirs == mine:
        return False
    log.warning(
        "trigger_celery: the %s environment's limits were CONCURRENCY_LIMIT=%r, "
        "BURST_FACTOR=%r; this process's settings make them %r and %r. Every process of an "
        "environment pushes its own: give them all the same settings",
        get_settings().ENVIRONMENT,
        theirs.concurrency_limit,
        theirs.burst_factor,
        mine.concurrency_limit,
        mine.burst_factor,
    )
    return True


def limit_overrides() -> dict[str, int]:
    """Concurrency limits set from the dashboard (``QueueState``), by queue: they win
    over the code's. A change is pushed at once by :func:`push_queue`; the reconciler
    and :func:`restore` push them again, so a store that lost them gets them back."""
    return dict(
        QueueState.objects.filter(concurrency_limit_override__isnull=False).values_list(
            "name", "concurrency_limit_override"
        )
    )


def push_queue(name: str) -> None:
    """Push ``name``'s limits to the store now (after its override changed)."""
    with _configured_lock:
        _push_queue(name, limit_overrides())


def _push_queues(names: list[str]) -> None:
    # An override committed (and pushed by the dashboard) between our read and our
    # push would be overwritten by the value we read: read again after pushing, and
    # push once more whatever changed. A change after the second read is pushed by the
    # dashboard after all of ours.
    overrides = limit_overrides()
    for name in names:
        _push_queue(name, overrides)
    latest = limit_overrides()
    for name in names:
        if latest.get(name) != overrides.get(name):
            _push_queue(name, latest)


def _push_queue(name: str, overrides: dict[str, int]) -> None:
    q = registry.queues.get(name)
    if q is not None:
        rate = q.rate
        override = overrides.get(name)
        get_store().configure_queue(
            QueueConfig(
                name=q.name,
                concurrency_limit=q.concurrency_limit if override is None else override,
                total_limit=q.total_limit,
                rate_limit_count=rate[0] if rate else None,
                rate_limit_period=rate[1] if rate else None,
            )
        )
    _configured_queues[name] = time.monotonic()


def score_of(run: Run) -> float:
    """Order in the queue: queued time minus priority, or the due time of a retry."""
    if run.available_at is not None and (run.queued_at is None or run.available_at > run.queued_at):
        return run.available_at.timestamp()
    base = run.queued_at or run.created_at or clock.now()
    return base.timestamp() - (run.priority or 0)


def entries_of(runs: Iterable[Run]) -> list[Entry]:
    """The store entries of QUEUED runs, their queues configured in the store first."""
    runs = list(runs)
    configure_queues({r.queue for r in runs})
    # Its next start is attempt ``attempt_count + 1`` (a resumed run continues the attempt
    # it suspended in: resume took attempt_count back by one); the slot will be that one's.
    return [Entry(r.id, r.queue, score_of(r), r.concurrency_key, r.attempt_count + 1) for r in runs]


def enqueue(runs: Iterable[Run]) -> None:
    """Put QUEUED runs into the store (idempotent)."""
    entries = entries_of(runs)
    if entries:
        get_store().enqueue(entries)


def configure_pauses() -> None:
    """Make the store's paused queues those of the ``QueueState`` rows: a queue paused
    in the store alone (no row says so) is resumed, or it would start nothing while
    every page said it was not paused."""
    store = get_store()
    rows = dict(QueueState.objects.values_list("name", "paused"))
    for name, paused in rows.items():
        if store.is_paused(name) != paused:
            store.set_paused(name, paused)
    for name in store.paused_queues() - {name for name, paused in rows.items() if paused}:
        log.warning("queue %s was paused in the store only; resumed, as the database says", name)
        store.set_paused(name, False)


def adopt_active_slots(skip: set[str] | None = None) -> int:
    """Hold a slot again for every dispatched or executing run not in ``skip``: their
    limits count while the store had forgotten them."""
    store = get_store()
    expiry = store.time() + get_settings().LEASE_SECONDS
    adopted = 0
    for run_id, queue, key, status, attempt_count in Run.objects.filter(
        status__in=[RunStatus.DEQUEUED, RunStatus.EXECUTING]
    ).values_list("id", "queue", "concurrency_key", "status", "attempt_count"):
        if skip is not None and run_id in skip:
            continue
        # A DEQUEUED run's slot is for the attempt about to start.
        attempt = attempt_count + 1 if status == RunStatus.DEQUEUED else attempt_count
        store.adopt(Claim(run_id, queue, key, expiry, attempt))
        adopted += 1
    return adopted


def enqueue_missing(queued: Iterable[Run]) -> int:
    """Enqueue those of ``queued`` the store has no entry or slot for; returns how many."""
    store = get_store()
    batch: list[Run] = []
    missing = 0

    def flush() -> int:
        known = store.known_run_ids([r.id for r in batch])
        lost = [r.id for r in batch if r.id not in known]
        batch.clear()
        if not lost:
            return 0
        # Read again after the store: a run claimed, run and released since its row was
        # read is QUEUED no more, and an entry put back for it would take its queue's turn.
        again = list(Run.objects.filter(id__in=lost, status=RunStatus.QUEUED).only(*ENTRY_FIELDS))
        enqueue(again)
        return len(again)

    for run in queued:
        batch.append(run)
        if len(batch) >= CHUNK:
            missing += flush()
    return missing + flush()


def restore() -> dict[str, int]:
    """Rebuild a flushed store from the database; the environment limits go in last."""
    registry.ensure_discovered()
    reset_caches()
    store = get_store()
    limits = limits_of_settings()  # before anything is pushed
    with _configured_lock:
        _push_queues(list(registry.queues))
    configure_pauses()
    adopted = adopt_active_slots()
    seed_rate_windows()
    queued = Run.objects.filter(status=RunStatus.QUEUED).only(*ENTRY_FIELDS)
    enqueued = enqueue_missing(queued.iterator(chunk_size=CHUNK))
    store.set_environment_limits(limits)
    return {"adopted": adopted, "enqueued": enqueued}


def seed_rate_windows() -> None:
    """A restored store learns each rate-limited queue's window from the database: the
    attempts started in the last period, and the runs dispatched but not started. Without
    it a flush in the middle of a window let a full window more start at once."""
    store = get_store()
    now = clock.now()
    for q in list(registry.queues.values()):
        if q.rate is None:
            continue
        _, period = q.rate
        starts = Attempt.objects.filter(
            run__queue=q.name, started_at__gt=now - timedelta(seconds=period)
        ).values_list("run_id", "number", "started_at")
        pending = Run.objects.filter(queue=q.name, status=RunStatus.DEQUEUED).values_list(
            "id", flat=True
        )
        store.seed_rate_window(
            q.name,
            [(f"{run_id}@{number}", at.timestamp()) for run_id, number, at in starts],
            list(pending),
        )
