"""From the run queue to Celery: claim slots, mark the winners, send them.

The database decides *what* exists; the coordination store decides *who goes next*;
this module moves runs between them and hands winners to Celery as
``{run_id, attempt}`` messages. Every function here is safe to call from any number of
processes at once: the store's claim is atomic and QUEUED → DEQUEUED is a conditional
update that only one caller can win.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

from celery import current_app
from celery.exceptions import AlwaysEagerIgnored
from django.db import connection

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim, Entry, StoreNotConfiguredError
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import log_failure
from trigger_celery.core.routing import celery_queue_for
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import queueing, transitions
from trigger_celery.models import Run

log = logging.getLogger("trigger_celery.dispatch")

EXECUTE_RUN = "trigger_celery.execute_run"
DISPATCH_QUEUE = "trigger_celery.dispatch_queue"
# A batch's first runs are claimed and sent by its caller; a worker sends the rest.
FAN_OUT_INLINE = 10
# A queue that had no slot for a trigger is taken to be full, in this process, for this
# long: its next triggers take the queue at once instead of asking the store first.
FULL_FOR_SECONDS = 0.5
_full_until: dict[str, float] = {}

# Offered each dequeued run (id, attempt, Celery queue) before it is sent: True means the
# caller starts it itself (a worker that has just freed the slot, ``worker.handoff``).
Keep = Callable[[str, int, str], bool]
_keep: ContextVar[Keep | None] = ContextVar("trigger_celery_keep", default=None)


@contextmanager
def keeping(keep: Keep | None) -> Iterator[None]:
    """Within the block, every run this process dequeues is first offered to ``keep``;
    a run it takes is not sent (its caller starts it) but counts as sent."""
    token = _keep.set(keep)
    try:
        yield
    finally:
        _keep.reset(token)


def dispatch_ready(
    queue: str | None = None,
    *,
    max_count: int = 200,
    entries: list[Entry] | None = None,
    release: tuple[str, int | None] | None = None,
    release_unstarted: bool = False,
    rounds: int | None = None,
) -> int:
    """Claim slots for ready runs and send them to Celery (or to a :func:`keeping`
    caller); returns how many were sent.

    ``entries`` are enqueued, or ``release`` (run id, attempt) is released, in the same
    round trip as the first claim (``release_unstarted``: that run never started, see
    ``CoordinationStore.release``). Claims go on, ``max_count`` at a time, until fewer
    come back or ``rounds`` claims were made.
    """
    settings = get_settings()
    store = get_store()
    sent = 0
    while True:
        try:
            # now=None: the store's clock, for readiness and leases alike.
            lease = settings.LEASE_SECONDS
            if entries:
                claims = store.enqueue_and_claim(
                    entries, None, max_count=max_count, lease_seconds=lease, queue=queue
                )
            elif release is not None:
                claims = store.release_and_claim(
                    *release,
                    None,
                    max_count=max_count,
                    lease_seconds=lease,
                    queue=queue,
                    unstarted=release_unstarted,
                )
            else:
                claims = store.claim(None, max_count=max_count, lease_seconds=lease, queue=queue)
        except StoreNotConfiguredError:
            # New, flushed or restarted: nothing may start before the limits, the pauses
            # and the slots of the runs already executing are back.
            log.warning("the coordination store has no state; restoring it from the database")
            queueing.restore()  # the committed runs of ``entries`` are queued again with it
            entries = release = None
            continue
        entries = release = None
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
            for claim in claims:
                if claim.run_id in lost and claim.run_id not in active:
                    store.release(claim.run_id, attempt=claim.attempt, unstarted=True)
        for run_id, attempt_count, machine, region in rows:
            _keep_or_send(run_id, attempt_count + 1, celery_queue_of(machine, region))
        sent += len(rows)
        if rounds is not None:
            rounds -= 1
        if len(claims) < max_count or rounds == 0:
            return sent


def celery_queue_of(machine: str, region: str) -> str:
    """The Celery queue a run with this ``machine`` and ``region`` is sent to."""
    if machine or region:
        return celery_queue_for(machine or None, region or None, "")
    return default_celery_queue()


def default_celery_queue() -> str:
    """Where runs without machine or region go: ``TRIGGER_CELERY['CELERY_QUEUE']`` when
    set, else where the Celery app routes ``execute_run`` - its ``task_routes``, else its
    ``task_default_queue`` - so a project that renamed Celery's default queue gets its
    runs on the queue its workers consume."""
    configured = get_settings().CELERY_QUEUE
    if configured:
        return configured
    app = current_app
    try:
        queue = app.amqp.router.route({}, EXECUTE_RUN).get("queue")
    except Exception:  # a route naming a queue Celery does not know: Celery says so itself
        queue = None
    return str(getattr(queue, "name", None) or app.conf.task_default_queue)


def _keep_or_send(run_id: str, attempt: int, celery_queue: str) -> None:
    """Offer a run that holds its slot to the keeper of this :func:`keeping` block, if
    any; send it to ``celery_queue`` if the keeper does not take it."""
    keep = _keep.get()
    if keep is None or not keep(run_id, attempt, celery_queue):
        send_to_queue(run_id, attempt, celery_queue)


def send_to_queue(run_id: str, attempt: int, celery_queue: str) -> None:
    """Send ``{run_id, attempt}`` to ``execute_run`` on the Celery queue ``celery_queue``."""
    # By name: the task is defined on the worker side, which sits above the engine.
    _send_task(EXECUTE_RUN, {"run_id": run_id, "attempt": attempt}, celery_queue)


def _send_task(name: str, kwargs: dict[str, object], celery_queue: str) -> None:
    send = partial(
        current_app.send_task,
        name,
        kwargs=kwargs,
        serializer="json",  # never pickle, whatever the app's default is
        queue=celery_queue,
        ignore_result=True,  # a run's row is its result: nothing for the app's backend
    )
    if not current_app.conf.task_always_eager:
        send()
        return
    # A team's test settings: Celery warns that send_task is never eager. Runs are always
    # sent (system check W011), and under -W error that warning must not stop the send.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlwaysEagerIgnored)
        send()


def claim_first(run: Run, *, own_transaction: bool = False) -> Claim | None:
    """A slot for a new QUEUED ``run`` before its row is written, when it would be the
    next run of its queue to start anyway (``CoordinationStore.claim_new``); the row is
    then written DEQUEUED and no dequeue UPDATE is needed.

    None, with nothing held, when the store says no, has no state or cannot be reached,
    inside a transaction of the caller's (whose rollback would leave the slot held until
    its lease ran out), and for a negative priority (its place in the queue is in the
    future, SPEC 4, also when the queue is idle): the run then takes its queue as usual. After a no, the
    queue's triggers skip the question for ``FULL_FOR_SECONDS`` (a burst into a full
    queue costs no extra round trip per run). ``own_transaction``: the transaction open
    is the trigger's own, which gives the slot back if it does not commit.
    """
    now = time.monotonic()
    if (
        run.status != RunStatus.QUEUED
        or run.priority < 0
        or (connection.in_atomic_block and not own_transaction)
        or _full_until.get(run.queue, 0.0) > now
    ):
        return None
    try:
        [entry] = queueing.entries_of([run])
        claim = get_store().claim_new(entry, None, lease_seconds=get_settings().LEASE_SECONDS)
    except Exception:
        log.debug("no slot ahead of run %s's row; it takes its queue", run.id, exc_info=True)
        return None
    if claim is None:
        _full_until[run.queue] = now + FULL_FOR_SECONDS
    return claim


def give_back(claim: Claim) -> None:
    """Release a slot taken by :func:`claim_first` for a row that was not written. Never
    raises (the caller has an error to report): a slot not released ends with its lease.
    Nothing more is claimed here: the database has just failed."""
    try:
        get_store().release(claim.run_id, attempt=claim.attempt, unstarted=True)
    except Exception:
        log.warning("could not give back the slot of run %s; its lease will end", claim.run_id)


def forget_full_queues() -> None:
    """Ask the store again on the next trigger of every queue (tests)."""
    _full_until.clear()


def send_claimed(run: Run, claim: Claim, claimed_at: float) -> None:
    """Send a run whose row was written DEQUEUED under ``claim`` (``claimed_at``: the
    ``time.monotonic()`` of the claim). Never raises.

    When writing the row took so long that the slot's lease may have ended (and the
    reaper freed it, finding no row), the slot is renewed first; a run that lost it
    goes back to its queue. A run that could not be sent keeps its slot until the lease
    ends; the reaper then queues it again. Inside :func:`keeping`, the run is offered to
    the keeper first, like a run this process dequeued.
    """
    lease = get_settings().LEASE_SECONDS
    try:
        if time.monotonic() - claimed_at > lease / 2 and not get_store().heartbeat(
            run.id, None, lease, attempt=claim.attempt
        ):
            if transitions.requeue_unstarted(run.id, run.attempt_count):
                dispatch_ready(run.queue, entries=queueing.entries_of([run]))
            return
        _keep_or_send(run.id, claim.attempt, celery_queue_of(run.machine, run.region))
    except Exception:
        log_failure(log, "could not send run %s now; it is sent again when its lease ends", run.id)


def return_unstarted(run_id: str, attempt: int) -> bool:
    """A worker reserved ``attempt`` of this run but cannot start it soon: put the run
    back in its queue under the same attempt number, free its slot, and dispatch again.

    False when the run has moved on (a copy of the message started it, or it was
    canceled): then nothing changes.
    """
    queue = Run.objects.filter(id=run_id).values_list("queue", flat=True).first()
    if queue is None or not transitions.requeue_unstarted(run_id, attempt - 1):
        return False
    # Release before enqueueing: the next claim of this run holds a slot under its id.
    get_store().release(run_id, attempt=attempt, unstarted=True)
    queueing.enqueue([Run.objects.get(id=run_id)])
    dispatch_ready(queue)
    return True


def release_and_dispatch(
    run_id: str,
    queue: str | None = None,
    *,
    attempt: int | None = None,
    unstarted: bool = False,
) -> None:
    """Give a run's slot back (only ``attempt``'s, when named) and start what can start
    now; ``unstarted``: the run never began (``CoordinationStore.release``). Never
    raises: a slot that could not be released comes back when its lease expires."""
    try:
        dispatch_ready(queue, release=(run_id, attempt), release_unstarted=unstarted)
    except Exception:
        log_failure(log, "could not release the slot of run %s; its lease will expire", run_id)


def after_commit_fan_out(entries: list[Entry]) -> None:
    """Enqueue many committed runs of one queue (a batch) and start the first few here;
    if more may start, a worker claims and sends the rest (``DISPATCH_QUEUE``), so the
    caller does not send one message per run. The pump does the same if that message is
    lost."""
    if not entries:
        return
    queue = entries[0].queue
    try:
        started = dispatch_ready(queue, entries=entries, max_count=FAN_OUT_INLINE, rounds=1)
        if started >= FAN_OUT_INLINE:
            _send_task(DISPATCH_QUEUE, {"queue": queue}, default_celery_queue())
    except Exception:
        log_failure(log, "could not enqueue %d run(s) now; the reconciler will", len(entries))


def after_commit_dispatch(runs: list[Run]) -> None:
    """Enqueue freshly committed runs and start what can start."""
    try:
        queues = {r.queue for r in runs}
        if len(queues) == 1:  # a single trigger: enqueue and claim in one round trip
            dispatch_ready(queues.pop(), entries=queueing.entries_of(runs))
        else:
            queueing.enqueue(runs)
            for queue in queues:
                dispatch_ready(queue)
    except Exception:
        # The rows are committed: the reconciler puts them in the queue later.
        log_failure(log, "could not enqueue %d run(s) now; the reconciler will", len(runs))
