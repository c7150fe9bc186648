"""The run state machine: the only code that changes a run's status.

One function per arrow of SPEC 6. Each is a single conditional UPDATE fenced on the
status the arrow leaves (and, where an attempt owns the run, on its attempt number), so
of two processes racing for one arrow exactly one wins and the other is told so (a
falsy return). The attempt row that belongs to the arrow is written in the same
transaction, and subscribers are notified once it commits.

    birth (engine.triggering) ──▶ PENDING_VERSION | DELAYED | QUEUED

    PENDING_VERSION ─queue_pending_version──▶ QUEUED
    PENDING_VERSION ─delay_pending_version──▶ DELAYED
    DELAYED ─────────promote_delayed────────▶ QUEUED
    QUEUED ──────────dequeue────────────────▶ DEQUEUED
    QUEUED ──────────expire─────────────────▶ EXPIRED
    EXECUTING ───────expire_late_start──────▶ EXPIRED  (its first start, after its ttl)
    DEQUEUED ────────requeue_unstarted──────▶ QUEUED
    DEQUEUED ────────start_attempt──────────▶ EXECUTING
    EXECUTING ───────complete───────────────▶ COMPLETED
    EXECUTING ───────retry──────────────────▶ QUEUED
    EXECUTING ───────end────────────────────▶ FAILED | TIMED_OUT | CRASHED | SYSTEM_FAILURE
    EXECUTING ───────suspend────────────────▶ WAITING
    EXECUTING ───────hand_back──────────────▶ PENDING_VERSION
    WAITING ─────────resume─────────────────▶ QUEUED   (or with a child's complete)
    any non-final ───cancel─────────────────▶ CANCELED

What a transition does *not* do is the work that follows its commit (releasing a slot,
entering a queue, completing waitpoints): the callers do that, and every such step can
be repeated by the pump from the rows alone.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Model

from trigger_celery.core import clock, run_events
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.engine import realtime, statements
from trigger_celery.engine.compiled_sql import Added, KeepFirst
from trigger_celery.models import Run, Waitpoint

CANCELED_ERROR = {
    "type": "RunCanceledError",
    "message": "the run was canceled",
    "code": "TASK_RUN_CANCELLED",
}
# Runs that hold an attempt when canceled: their worker stops it, their attempt ends.
_STARTED = frozenset({RunStatus.EXECUTING, RunStatus.WAITING})
_UNSUCCESSFUL = frozenset(
    {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CRASHED, RunStatus.SYSTEM_FAILURE}
)


def _move(
    run_id: str,
    *,
    source: RunStatus | Collection[RunStatus],
    target: RunStatus,
    attempt: int | None,
    fields: dict[str, Any] | None = None,
    attempt_fields: dict[str, Any] | None = None,
    extra_filter: dict[str, Any] | None = None,
    event: str | None = None,
    new_row: Model | None = None,
) -> bool:
    """Move one run from ``source`` to ``target`` if it is still there (and still owned by
    ``attempt``), writing ``attempt_fields`` on that attempt's row (and ``new_row``) in the
    same transaction.
    """
    statuses = [source] if isinstance(source, RunStatus) else list(source)
    fence: dict[str, Any] = {"id": run_id, "status__in": statuses, **(extra_filter or {})}
    if attempt is not None:
        fence["attempt_count"] = attempt
    values = {"status": target, "updated_at": clock.now(), **(fields or {})}
    if attempt_fields is None:
        won = bool(Run.objects.filter(**fence).update(**values))
    else:
        assert attempt is not None
        won = statements.move_with_attempt(fence, values, attempt, attempt_fields, new_row)
    if won:
        _announce(run_id, event or target.value)
    return bool(won)


def _announce(run_id: str, event: str) -> None:
    """Once the transaction commits: tell realtime subscribers and the run-event hooks."""
    transaction.on_commit(partial(realtime.notify, run_id))
    transaction.on_commit(partial(run_events.publish, run_id, event))


def _ttl_deadline(now: datetime, ttl: int | None) -> datetime | None:
    return now + timedelta(seconds=ttl) if ttl else None


# -- before a worker has it ------------------------------------------------------------------


def queue_pending_version(run_id: str, *, known: dict[str, Any], ttl: int | None) -> bool:
    """PENDING_VERSION → QUEUED: a worker that knows the task appeared; ``known`` are
    the fields the task's definition decides (its queue, attempts, machine...)."""
    now = clock.now()
    fields = {**known, "queued_at": now, "ttl_expires_at": _ttl_deadline(now, ttl)}
    pending = RunStatus.PENDING_VERSION
    return _move(run_id, source=pending, target=RunStatus.QUEUED, attempt=None, fields=fields)


def delay_pending_version(run_id: str, *, known: dict[str, Any]) -> bool:
    """PENDING_VERSION → DELAYED: the task is known now, and the run's delay has not passed."""
    fields = {**known, "queued_at": None, "ttl_expires_at": None}
    pending = RunStatus.PENDING_VERSION
    return _move(run_id, source=pending, target=RunStatus.DELAYED, attempt=None, fields=fields)


def promote_delayed(run_id: str, *, now: datetime, ttl: int | None) -> bool:
    """DELAYED → QUEUED, if its time has come (a debounce may have pushed it since)."""
    return _move(
        run_id,
        source=RunStatus.DELAYED,
        target=RunStatus.QUEUED,
        attempt=None,
        fields={"queued_at": now, "ttl_expires_at": _ttl_deadline(now, ttl)},
        extra_filter={"delayed_until__lte": now},
    )


def dequeue(run_ids: list[str]) -> list[tuple[str, int, str, str]]:
    """QUEUED → DEQUEUED for runs that just won a slot, in one statement.

    Returns ``(id, attempt_count, machine, region)`` of the runs that were still QUEUED
    (one canceled or expired while it sat in the queue is not among them).
    """
    if not run_ids:
        return []
    rows = statements.update_returning(
        {"id__in": run_ids, "status": RunStatus.QUEUED},
        {"status": RunStatus.DEQUEUED, "updated_at": clock.now()},
        ("id", "attempt_count", "machine", "region"),
        relaxed=True,
    )
    if rows:
        transaction.on_commit(partial(realtime.notify, *[row[0] for row in rows]))
    return rows  # type: ignore[return-value]


def expire(run_id: str) -> bool:
    """QUEUED → EXPIRED: not started within its ttl (a run that ever started never expires)."""
    kw = {"fields": _expired(), "extra_filter": {"started_at__isnull": True}}
    return _move(run_id, source=RunStatus.QUEUED, target=RunStatus.EXPIRED, attempt=None, **kw)


def _expired() -> dict[str, Any]:
    now = clock.now()
    error = {"type": RunStatus.EXPIRED.value, "message": "the run was not started within its ttl"}
    return {"expired_at": now, "finished_at": now, "idempotency_key": None, "error": error}


def requeue_unstarted(run_id: str, attempt_count: int) -> bool:
    """DEQUEUED → QUEUED: its slot's lease ran out before any worker started it, or the
    busy worker that reserved it handed it back (``dispatch.return_unstarted``)."""
    return _move(run_id, source=RunStatus.DEQUEUED, target=RunStatus.QUEUED, attempt=attempt_count)


# -- an attempt ------------------------------------------------------------------------------


def start_attempt(run_id: str, attempt: int, worker: str) -> Run | None:
    """DEQUEUED → EXECUTING for ``attempt``; None for a stale or duplicate message.

    One ``UPDATE … RETURNING`` both fences (DEQUEUED, previous attempt number) and loads
    the run. A run resumed after a wait continues the attempt it suspended in; any other
    start writes a new attempt row. ``run.resumed`` tells which.
    """
    now = clock.now()
    run = statements.start_with_attempt(
        {"id": run_id, "status": RunStatus.DEQUEUED, "attempt_count": attempt - 1},
        {
            "status": RunStatus.EXECUTING,
            "attempt_count": attempt,
            "updated_at": now,
            "started_at": KeepFirst("started_at", now),
        },
        {"run_id": run_id, "number": attempt, "status": AttemptStatus.SUSPENDED},
        dict(status=AttemptStatus.EXECUTING, worker=worker, finished_at=None, resumed_at=now),
        {
            "run_id": run_id,
            "number": attempt,
            "status": AttemptStatus.EXECUTING,
            "started_at": now,
            "worker": worker,
        },
    )
    if run is not None:
        transaction.on_commit(partial(realtime.notify, run_id))
        if not getattr(run, "resumed", False):
            transaction.on_commit(partial(run_events.publish, run_id, run_events.STARTED))
    return run


def complete(
    run_id: str,
    attempt: int,
    *,
    output: Any,
    output_ref: str,
    execution_ms: int,
    resume_with: dict[str, Any] | None = None,
    fields: tuple[str, ...] = (),
) -> tuple[bool, list[Run]]:
    """EXECUTING → COMPLETED, with the output stored; whether it moved, and the runs
    resumed with it: with ``resume_with`` (a child's result), the same statement gives
    it to the RUN waitpoints on the run and moves each run waiting on them with nothing
    else pending as :func:`resume` does (``fields`` of those are returned)."""
    values = {"output": output, "error": None, "output_ref": output_ref}
    return _finish(
        run_id,
        attempt,
        RunStatus.COMPLETED,
        values | {"execution_ms": execution_ms},
        {"status": AttemptStatus.COMPLETED},
        resume_with,
        fields,
    )


def _finish(
    run_id: str,
    attempt: int,
    target: RunStatus,
    values: dict[str, Any],
    attempt_values: dict[str, Any],
    resume_with: dict[str, Any] | None,
    fields: tuple[str, ...],
) -> tuple[bool, list[Run]]:
    """EXECUTING → a final ``target`` (see :func:`complete`, :func:`end`)."""
    now = clock.now()
    won, resumed = statements.move_and_resume_waiters(
        {"id": run_id, "status__in": [RunStatus.EXECUTING], "attempt_count": attempt},
        {"status": target, "updated_at": now, "finished_at": now, **values},
        attempt,
        {"finished_at": now, **attempt_values},
        None if resume_with is None else {"completed_at": now, "result": resume_with},
        {"status": RunStatus.WAITING},
        _resumed_values(now),
        fields,
    )
    if won:
        _announce(run_id, target.value)
    for run in resumed:
        _announce(run.id, RunStatus.QUEUED.value)
    return won, resumed


def retry(
    run_id: str,
    attempt: int,
    *,
    retry_at: datetime,
    error: dict[str, Any],
    execution_ms: int | None = None,
    attempt_status: AttemptStatus = AttemptStatus.FAILED,
) -> bool:
    """EXECUTING → QUEUED: the attempt failed (or its worker died) and another is due at
    ``retry_at``; the run waits in its queue, holding no slot, until then."""
    fields: dict[str, Any] = {"available_at": retry_at, "error": error}
    if execution_ms is not None:
        fields["execution_ms"] = execution_ms
    return _move(
        run_id,
        source=RunStatus.EXECUTING,
        target=RunStatus.QUEUED,
        attempt=attempt,
        fields=fields,
        attempt_fields={"status": attempt_status, "finished_at": clock.now(), "error": error},
        event=run_events.RETRIED,
    )


def end(
    run_id: str,
    attempt: int,
    target: RunStatus,
    *,
    error: dict[str, Any],
    execution_ms: int | None = None,
    attempt_status: AttemptStatus = AttemptStatus.FAILED,
    resume_with: dict[str, Any] | None = None,
    fields: tuple[str, ...] = (),
) -> tuple[bool, list[Run]]:
    """EXECUTING → ``target``, the run's unsuccessful end, with its attempt ended
    ``attempt_status``; ``resume_with`` and the return as in :func:`complete`.

    * FAILED: the attempt threw and no retry is left (or none is wanted);
    * TIMED_OUT: the run passed its ``max_duration``;
    * CRASHED: the worker died on the last attempt (the attempt CRASHED), or a
      ``catch_error`` hook broke (HANDLE_ERROR_ERROR; the attempt itself FAILED);
    * SYSTEM_FAILURE: the attempt could not run for a reason outside the task's code
      (its stored payload cannot be read, say); retrying would not help.

    A run that ends unsuccessfully releases its idempotency key (SPEC 5)."""
    assert target in _UNSUCCESSFUL, target
    values: dict[str, Any] = {"error": error, "idempotency_key": None}
    if execution_ms is not None:
        values["execution_ms"] = execution_ms
    attempt_values = {"status": attempt_status, "error": error}
    return _finish(run_id, attempt, target, values, attempt_values, resume_with, fields)


def suspend(
    run_id: str, attempt: int, *, execution_ms: int, waitpoint: Waitpoint | None = None
) -> bool:
    """EXECUTING → WAITING: the run reached a wait that is not satisfied yet (SPEC 7).
    ``waitpoint``, a new row, is written with the move (a row already at its step stays)."""
    return _move(
        run_id,
        source=RunStatus.EXECUTING,
        target=RunStatus.WAITING,
        attempt=attempt,
        fields={"execution_ms": execution_ms},
        attempt_fields={"status": AttemptStatus.SUSPENDED, "finished_at": clock.now()},
        new_row=waitpoint,
    )


def hand_back(run_id: str, attempt: int, *, resumed: bool = False) -> bool:
    """EXECUTING → PENDING_VERSION: this worker does not know the task (an older deploy).
    The start is undone (:func:`_undo_start`), so a worker that knows the task runs it
    as if this one never had; a ``resumed`` start gives its attempt back SUSPENDED (it ran
    before its wait: the next start resumes it). It leaves its debounce key: it started,
    so it is no longer the pending run of that key (a newer one may be)."""
    fields = {"status": RunStatus.PENDING_VERSION, "debounce_key": None}
    back = {"status": AttemptStatus.SUSPENDED, "finished_at": clock.now()} if resumed else None
    return _undo_start(run_id, attempt, fields, back=back)


def expire_late_start(run_id: str, attempt: int) -> bool:
    """EXECUTING → EXPIRED: the run's first start came after its ttl (its message waited
    in the broker). The start is undone: the run never started (SPEC 5)."""
    values = {"status": RunStatus.EXPIRED, "started_at": None, **_expired()}
    return _undo_start(run_id, attempt, values, event=RunStatus.EXPIRED.value)


def _undo_start(
    run_id: str,
    attempt: int,
    values: dict[str, Any],
    *,
    event: str | None = None,
    back: dict[str, Any] | None = None,
) -> bool:
    """Move an EXECUTING run with ``values``, its attempt number back and the attempt row
    removed (or updated with ``back``); subscribers (and, with ``event``, run-event hooks)
    hear of it."""
    won = statements.move_dropping_attempt(
        {"id": run_id, "status": RunStatus.EXECUTING, "attempt_count": attempt},
        {"attempt_count": attempt - 1, "updated_at": clock.now(), **values},
        attempt,
        attempt_values=back,
    )
    if won and event:
        _announce(run_id, event)
    elif won:
        transaction.on_commit(partial(realtime.notify, run_id))
    return won


def resume(run_id: str, fields: tuple[str, ...]) -> Run | None:
    """WAITING → QUEUED once none of its waitpoints is pending (checked in the same
    statement); ``fields`` of the run, or None. The attempt number goes back by one: the
    start that follows continues the attempt the run suspended in."""
    run = statements.resume_unless_pending(
        {"id": run_id, "status": RunStatus.WAITING}, _resumed_values(clock.now()), fields
    )
    if run is not None:
        _announce(run_id, RunStatus.QUEUED.value)
    return run


def _resumed_values(now: datetime) -> dict[str, Any]:
    return {
        "status": RunStatus.QUEUED,
        "updated_at": now,
        "attempt_count": Added("attempt_count", -1),
        "available_at": None,
    }


# -- from anywhere ---------------------------------------------------------------------------


def cancel(run_id: str, status: RunStatus, attempt: int) -> bool:
    """``status`` (not final, read by the caller with ``attempt``) → CANCELED; False if
    the run has moved since the read.

    A run with an attempt (EXECUTING, WAITING) gets ``cancel_requested_at``, which its
    worker polls to stop the attempt, and its attempt row ends CANCELED.
    """
    now = clock.now()
    fields: dict[str, Any] = {"finished_at": now, "error": CANCELED_ERROR}
    attempt_fields = None
    if status in _STARTED:
        fields["cancel_requested_at"] = now
        attempt_fields = {
            "status": AttemptStatus.CANCELED,
            "finished_at": now,
            "error": CANCELED_ERROR,
        }
    return _move(
        run_id,
        source=status,
        target=RunStatus.CANCELED,
        attempt=attempt,
        fields=fields,
        attempt_fields=attempt_fields,
    )
