"""Waits that hold no worker (SPEC 7): ``trigger_and_wait``, batches and ``wait.for_``.

Python cannot checkpoint a running function, so a run that reaches a wait it cannot
satisfy yet *suspends*: the attempt ends with a ``Suspended`` outcome, the run becomes
WAITING and gives its slot back. When every waitpoint of the run is complete, the run
is queued again (with its original queue time) and, once it wins a slot, its function
is **replayed from the top**. Each wait call is a numbered step; a step that already has
a completed waitpoint row returns its recorded result at once, so the replay runs
through to the first unsatisfied wait. A step whose row records another task or kind
fails the run clearly (the code changed between suspend and resume; what a replayed
step checks is in ``worker.replay_checks``).

A wait's child is keyed by (parent run, step), and a wait's batch has an id made of
them, so a replay never triggers its children twice. Code *between* waits runs again
on every replay: make it idempotent (``idempotency_keys.create`` for plain triggers).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, connection
from django.db.models import Exists, F, OuterRef

from trigger_celery.core import clock, faults, tracing
from trigger_celery.core.context import RunScope, current_scope, optional_scope
from trigger_celery.core.durations import parse_duration, refuse_beyond_horizon
from trigger_celery.core.idempotency import hash_key
from trigger_celery.core.results import BatchResult, RunResult
from trigger_celery.db import write_transaction
from trigger_celery.engine import dispatch
from trigger_celery.engine.batches import create_batch
from trigger_celery.engine.idempotency import IdempotencyKey
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.engine.waitpoints import (
    complete_batch_if_done,
    complete_if_child_done,
    complete_waitpoint,
    with_outputs,
)
from trigger_celery.errors import OutsideRunError, ReplayMismatchError
from trigger_celery.models import Run, Waitpoint
from trigger_celery.off_loop import off_event_loop_methods
from trigger_celery.worker import handoff
from trigger_celery.worker.replay_checks import (
    BatchItems,
    keyed_by_user,
    same_batch_items,
    same_child_payload,
)

# A timed wait this short (or shorter) stays in the worker instead of suspending the run.
IN_PROCESS_WAIT_SECONDS = 2.0


def wait_of(run_id: str, step: int | None = None) -> dict[str, Any] | None:
    """The ``wait`` the ``on_wait`` / ``on_resume`` hooks get: what the run waits (or
    waited) on at ``step``, or at its latest wait. ``{"type": "task", "run_id": ...}``,
    ``{"type": "batch", "batch_id": ...}`` or ``{"type": "duration", "until": ...}``,
    each with its ``step``."""
    found = Waitpoint.objects.filter(run_id=run_id)
    wp = found.filter(step=step).first() if step is not None else found.order_by("-step").first()
    if wp is None:
        return None
    if wp.kind == Waitpoint.Kind.RUN:
        return {"type": "task", "step": wp.step, "run_id": wp.child_run_id, "task": wp.label}
    if wp.kind == Waitpoint.Kind.BATCH:
        return {"type": "batch", "step": wp.step, "batch_id": wp.batch_id}
    return {"type": "duration", "step": wp.step, "until": wp.resume_at}


class SuspendRun(BaseException):
    """Raised inside a run to end the attempt at an unsatisfied wait.

    It derives from BaseException so a user's ``except Exception`` does not swallow it;
    one that a bare ``except:`` swallows is noted on the run's scope all the same, and
    the attempt suspends when the code returns (``user_code.swallowed_suspension``).
    """

    def __init__(
        self, reason: Any = None, *, kept_child_waitpoint: Waitpoint | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kept_child_waitpoint = kept_child_waitpoint
        scope = optional_scope()
        if scope is not None and scope.suspension is None:
            scope.suspension = self


@contextmanager
def waits_closed(where: str) -> Iterator[None]:
    """Refuse waits in the code run inside (a hook), saying ``where`` it is."""
    scope = optional_scope()
    if scope is None:
        yield
        return
    before, scope.waits_closed = scope.waits_closed, where
    try:
        yield
    finally:
        scope.waits_closed = before


# -- steps ------------------------------------------------------------------------------


def _step(api: str, kind: str, label: str) -> tuple[RunScope, int, Waitpoint | None]:
    """The next step of the current run and its recorded waitpoint, if any."""
    scope = current_scope(api, where="a task's run function")
    if scope.waits_closed:
        raise OutsideRunError(
            f"{api} cannot be used in {scope.waits_closed}; wait in the run function instead"
        )
    if isinstance(scope.suspension, SuspendRun):
        # The code caught a wait's suspension and went on: no later step runs (it would
        # trigger a child for a path the replay does not take); the first one stands.
        raise scope.suspension
    if scope.mismatch is not None:
        # The code caught a replay mismatch and went on: its later steps no longer line
        # up with the recorded ones, so none is given a recorded result or a new child.
        raise scope.mismatch
    step = scope.step
    scope.step += 1
    if scope.fresh:
        return scope, step, None  # a first execution: this step has no row yet
    # At most one row (unique run, step); unordered, so no join for the model's ordering.
    found = Waitpoint.objects.filter(run_id=scope.ctx.run.id, step=step).order_by()
    if kind == Waitpoint.Kind.RUN:
        # The child's payload comes with the row, in the same query: a replay must ask
        # this step for the same child it asked for before (``same_child_payload``).
        found = found.annotate(
            child_payload=F("child_run__payload"), child_payload_ref=F("child_run__payload_ref")
        )
    elif kind == Waitpoint.Kind.BATCH:
        # Whether a replay went past it (and compared its items' payloads) already.
        later = Waitpoint.objects.filter(run_id=OuterRef("run_id"), step__gt=OuterRef("step"))
        found = found.annotate(passed=Exists(later))
    wp = next(iter(found), None)
    if wp is not None and (wp.kind != kind or wp.label != label):
        scope.mismatch = ReplayMismatchError(
            f"wait step {step} of run {scope.ctx.run.id} was {wp.kind} {wp.label!r} before the "
            f"run suspended and is now {kind} {label!r}: the task's code changed between "
            "suspend and resume",
        )
        raise scope.mismatch
    # The wait this attempt resumed from (no later step yet) gets its span, once.
    if (
        wp is not None
        and wp.completed_at is not None
        and tracing.enabled()
        and not Waitpoint.objects.filter(run_id=scope.ctx.run.id, step__gt=step).exists()
    ):
        _wait_span(wp)
    return scope, step, wp


def _record_step(run_id: str, step: int, **fields: Any) -> Waitpoint:
    """The waitpoint of ``step``: this call's or, if another execution of the same step
    wrote it first, that one. One INSERT, committed on its own (a savepoint inside the
    caller's transaction); the unique (run, step) decides a race, and only the loser
    reads the winner's row."""
    row = Waitpoint(run_id=run_id, step=step, **fields)
    try:
        with write_transaction() if connection.in_atomic_block else nullcontext():
            row.save(force_insert=True)
        return row
    except IntegrityError:
        return Waitpoint.objects.filter(run_id=run_id, step=step).order_by().get()


def _wait_span(wp: Waitpoint) -> None:
    if wp.completed_at is not None:
        tracing.record_span(
            f"wait {wp.kind.lower()}",
            wp.created_at,
            wp.completed_at,
            {"trigger_celery.run_id": wp.run_id, "trigger_celery.wait_step": wp.step},
        )


def _child_key(run_id: str, step: int) -> str:
    return hash_key(["wait-child", run_id, str(step)])


def wait_batch_id(run_id: str, step: int) -> str:
    """The id of the batch that wait step ``step`` of ``run_id`` makes."""
    return f"batch_{run_id.partition('_')[2]}_{step}"


def trigger_and_wait(
    task_id: str, payload: Any, options: Mapping[str, Any], *, validate: Any = None
) -> RunResult:
    """Trigger ``task_id`` as a child of the current run and wait for its result."""
    scope, step, wp = _step(f"{task_id}.trigger_and_wait", Waitpoint.Kind.RUN, task_id)
    if wp is not None and not keyed_by_user(options):
        # A child of our own key is the one this step made with its payload; one found
        # by a key or debounce of the user's may hold another payload by design.
        same_child_payload(wp, payload)
    if wp is None:
        opts = dict(options)
        # Without a key of the user's (None is none), the child is keyed by (parent,
        # step): a replay that reaches this step again - after a crash between the
        # child's trigger and the waitpoint's write - finds that child, not a second.
        # A first execution reaches this step for the first time: no run holds our key.
        key_is_new = False
        if opts.get("idempotency_key") is None:
            opts["idempotency_key"] = IdempotencyKey(_child_key(scope.ctx.run.id, step))
            key_is_new = scope.fresh
        with _child_kept_here(scope):
            handle = trigger_task(
                task_id, payload, opts, {}, definition=validate, key_is_new=key_is_new
            )
        if handoff.holds(handle.id):
            # The child starts in this process once this run has suspended, so the
            # suspension's own statement writes the waitpoint.
            kept = Waitpoint(
                run_id=scope.ctx.run.id,
                step=step,
                kind=Waitpoint.Kind.RUN,
                label=task_id,
                child_run_id=handle.id,
            )
            raise SuspendRun(step, kept_child_waitpoint=kept)
        wp = _record_step(
            scope.ctx.run.id, step, kind=Waitpoint.Kind.RUN, label=task_id, child_run_id=handle.id
        )
        # The child may have finished before its waitpoint existed.
        if complete_if_child_done(wp):
            wp.refresh_from_db()
    if wp.completed_at is None:
        _wait_in_process_or_suspend(wp)
        wp.refresh_from_db()
    return RunResult.from_json(wp.result)


def batch_trigger_and_wait(label: str, items: BatchItems) -> BatchResult:
    """``items``: (task id, payload, options, definition to validate with or None)."""
    scope, step, wp = _step("batch_trigger_and_wait", Waitpoint.Kind.BATCH, label)
    if wp is not None:
        try:
            same_batch_items(wp, items)
        except ReplayMismatchError as err:
            scope.mismatch = err  # later waits are refused with it (``_step``)
            raise
    if wp is None:
        if len(items) > 1000:
            raise ValueError(f"a batch takes at most 1000 items; this one has {len(items)}")

        def gen() -> Iterable[tuple[str, Any, bool, Any, Mapping[str, Any]]]:
            for task_id, payload, options, definition in items:
                yield task_id, definition, definition is not None, payload, options

        # The batch id is fixed by (run, step): a replay that gets here again - after a
        # crash or a retry between the children and the waitpoint - finds the batch and
        # the children written with it, instead of making an empty new batch. So the
        # children need no keys of their own, and take the batch's one-write path.
        with _child_kept_here(scope):
            handle = create_batch(gen(), {}, batch_id=wait_batch_id(scope.ctx.run.id, step))
        faults.point("batch-children-created")
        # Children found by keys of the user's (maybe finished long ago) count too. Only
        # items with a key or debounce of their own (not None) can have been found by
        # it; the rest were made in the batch, and are found by their index on a replay.
        own = [h.id for h, item in zip(handle.runs, items, strict=True) if keyed_by_user(item[2])]
        if own:
            Run.objects.filter(id__in=own, batch_id__isnull=True).update(batch_id=handle.id)
        # A key may find a run outside this batch (another batch's, an earlier item's):
        # the waitpoint then lists each item's run, so every item gets its result.
        wp = _record_step(
            scope.ctx.run.id,
            step,
            kind=Waitpoint.Kind.BATCH,
            label=label,
            batch_id=handle.id,
            item_runs=[h.id for h in handle.runs] if own else None,
        )
        complete_batch_if_done(wp.batch_id)
        wp.refresh_from_db()
    if wp.completed_at is None:
        _wait_in_process_or_suspend(wp)
        wp.refresh_from_db()
    return BatchResult(wp.batch_id, with_outputs(wp.result))


def _child_kept_here(scope: RunScope) -> AbstractContextManager[None]:
    """This run suspends right after triggering what it waits on: a child bound for this
    process's Celery queue is kept, and started here once the run has suspended, instead
    of being sent (``worker.handoff``). Sent as usual outside a chain or past its limits."""
    return dispatch.keeping(handoff.keeper(scope.machine, scope.region))


def _wait_in_process_or_suspend(wp: Any) -> None:
    """A short timed wait continues in place; anything else not yet done suspends.

    A child run is not waited for in place: under load it may sit behind other runs,
    and holding the worker meanwhile is what waits exist to avoid.
    """
    if wp.kind == Waitpoint.Kind.DATETIME and wp.resume_at is not None:
        remaining = (wp.resume_at - clock.now()).total_seconds()
        if remaining <= IN_PROCESS_WAIT_SECONDS:
            if (scope := optional_scope()) is not None:
                scope.waited_in_place += max(0.0, remaining)  # not compute: max_duration
            time.sleep(max(0.0, remaining))
            complete_waitpoint(wp.id, {"ok": True})
            if tracing.enabled():
                wp.refresh_from_db()
                _wait_span(wp)
            return
    raise SuspendRun(wp.step)


@off_event_loop_methods
class WaitAPI:
    """``wait.for_(seconds=10)``, ``wait.until(datetime)`` inside a run."""

    def for_(
        self,
        *,
        seconds: float | None = None,
        minutes: float | None = None,
        hours: float | None = None,
        days: float | None = None,
        weeks: float | None = None,
    ) -> None:
        given = {
            unit: (value, size)
            for unit, value, size in (
                ("seconds", seconds, 1),
                ("minutes", minutes, 60),
                ("hours", hours, 3600),
                ("days", days, 86400),
                ("weeks", weeks, 604800),
            )
            if value is not None
        }
        if not given:
            raise ValueError(
                "wait.for_ needs a duration: seconds=, minutes=, hours=, days= or weeks="
            )
        total = 0.0
        for unit, (value, size) in given.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"wait.for_: {unit}={value!r} is not a number")
            total += parse_duration(value, name=f"wait.for_ {unit}").total_seconds() * size
        self._until(clock.now() + parse_duration(total, name="wait.for_"), "wait.for_")

    def until(self, when: datetime) -> None:
        if not isinstance(when, datetime):
            raise ValueError(f"wait.until needs a datetime, got {when!r}")
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)  # naive is UTC (SPEC 5)
        refuse_beyond_horizon(aware, clock.now(), name="wait.until", value=when)
        self._until(aware, "wait.until")

    def _until(self, when: datetime, api: str) -> None:
        scope, step, wp = _step(api, Waitpoint.Kind.DATETIME, "wait")
        if wp is None:
            wp = _record_step(
                scope.ctx.run.id, step, kind=Waitpoint.Kind.DATETIME, label="wait", resume_at=when
            )
        if wp.completed_at is None:
            _wait_in_process_or_suspend(wp)


wait = WaitAPI()
