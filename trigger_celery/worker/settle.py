"""Settling an attempt: hooks, the retry decision, and the run's next transition.

After the user's code returned an :data:`~trigger_celery.worker.user_code.Outcome`:

* ``Completed``: the output is stored, ``on_success`` and ``on_complete`` run, the run
  is COMPLETED;
* ``Suspended``: the slot goes back, the run is WAITING, ``on_wait`` runs, and the run is
  resumed at once if what it waits for finished meanwhile;
* ``Failed``: ``catch_error`` and the retry policy decide (``core.decisions``); the run
  is QUEUED for a retry, or ends FAILED / TIMED_OUT / CRASHED with its hooks.

Then the slot is released, the next run dispatched, and a parent waiting on this run
(or its batch) is told.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import log_failure
from trigger_celery.core import clock, faults
from trigger_celery.core import context as run_context
from trigger_celery.core.context import Context
from trigger_celery.core.decisions import Decision, consults_catch_error, decide_after_failure
from trigger_celery.core.hooks import call_hook, global_hooks
from trigger_celery.core.results import RunResult
from trigger_celery.core.retry import RetryPolicy, next_delay_ms
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import actions, dispatch, queueing, transitions, waitpoints
from trigger_celery.engine.payloads import store_payload
from trigger_celery.engine.registry import TaskDefinition
from trigger_celery.errors import SerializationError, TriggerFromCanceledRunError
from trigger_celery.models import Run
from trigger_celery.worker import handoff
from trigger_celery.worker.cancel_hooks import call_cancel_hooks
from trigger_celery.worker.logger import logger as run_logger
from trigger_celery.worker.recording import until_recorded
from trigger_celery.worker.user_code import (
    Completed,
    Failed,
    Outcome,
    Suspended,
    call_recorded,
    hooks_of,
)
from trigger_celery.worker.waits import wait_of

log = logging.getLogger("trigger_celery.worker")


def settle(
    definition: TaskDefinition,
    run: Run,
    ctx: Context,
    outcome: Outcome,
    payload: Any,
    elapsed_ms: int,
) -> None:
    """Write what became of the attempt; ``payload`` is what the hooks receive."""
    common: dict[str, Any] = {
        "ctx": ctx,
        "signal": ctx.signal,
        "task": definition.id,
        "init": ctx.init,
        "payload": payload,
    }
    execution_ms = run.execution_ms + elapsed_ms
    if isinstance(outcome, Completed):
        try:
            inline, ref = store_payload(
                run.id, "output", outcome.output, limit=get_settings().OUTPUT_MAX_SIZE
            )
        except (SerializationError, ValueError) as err:  # too large, or a NUL character
            outcome = Failed(err, "")
        else:
            _settle_completed(
                definition, run, ctx, common, outcome.output, inline, ref, execution_ms
            )
            return
    if isinstance(outcome, Suspended):
        _settle_suspended(definition, run, ctx, common, execution_ms, outcome)
        return
    _settle_failed(definition, run, ctx, common, outcome, execution_ms)


def _settle_completed(
    definition: TaskDefinition,
    run: Run,
    ctx: Context,
    common: dict[str, Any],
    output: Any,
    inline: Any,
    ref: str,
    execution_ms: int,
) -> None:
    result = RunResult(True, run.id, run.task_identifier, output=output)
    call_recorded(definition, "on_success", **common, output=output)
    call_recorded(definition, "on_complete", **common, result=result, output=output, error=None)
    attempt = ctx.attempt.number
    # An output kept in storage is read back by whoever needs it; an inline one goes
    # to a waiting parent as written.
    resume_with = None
    if not ref and _may_be_waited_on(run):
        resume_with = RunResult(True, run.id, run.task_identifier, output=inline).to_json()
    won, resumed = until_recorded(
        lambda: transitions.complete(
            run.id,
            attempt,
            output=inline,
            output_ref=ref,
            execution_ms=execution_ms,
            resume_with=resume_with,
            fields=queueing.ENTRY_FIELDS,
        ),
        what=f"the completion of run {run.id}",
    )
    if won:
        faults.point("child-final")
    else:
        _lost_the_final_write(definition, run, ctx, common)
    after_final(run, attempt, resumed=resumed if won and resume_with is not None else None)


def _settle_suspended(
    definition: TaskDefinition,
    run: Run,
    ctx: Context,
    common: dict[str, Any],
    execution_ms: int,
    outcome: Suspended,
) -> None:
    with dispatch.keeping(handoff.keeper(run.machine, run.region)):
        # The slot goes back before a resume can queue the run again, and what it lets
        # start is started, in one round trip to the store.
        dispatch.release_and_dispatch(run.id, attempt=ctx.attempt.number)
        kept_child = outcome.kept_child_waitpoint
        if until_recorded(
            lambda: transitions.suspend(
                run.id, ctx.attempt.number, execution_ms=execution_ms, waitpoint=kept_child
            ),
            what=f"the suspension of run {run.id}",
        ):
            faults.point("parent-waiting")
            if hooks_of(definition, "on_wait"):
                wait = wait_of(run.id, outcome.reason)
                call_recorded(definition, "on_wait", **common, wait=wait)
            # A child may have finished between the wait and the suspension, unless this
            # process keeps it (it starts here once this settle returns).
            if kept_child is None:
                waitpoints.resume_if_ready(run.id)
        else:
            _lost_the_final_write(definition, run, ctx, common)  # before a kept child starts


def _settle_failed(
    definition: TaskDefinition,
    run: Run,
    ctx: Context,
    common: dict[str, Any],
    failure: Failed,
    execution_ms: int,
) -> None:
    attempt = ctx.attempt.number
    decision = _decide(definition, run, ctx, common, failure)
    if decision.retries:
        assert decision.retry_at is not None
        scope = run_context.optional_scope()
        if scope is not None and scope.step:  # this attempt reached a wait
            waitpoints.forget_failed_children(run.id)
        log.info("run %s attempt %d failed; retry at %s", run.id, attempt, decision.retry_at)
        retry_at = decision.retry_at
        retried = until_recorded(
            lambda: transitions.retry(
                run.id, attempt, retry_at=retry_at, error=decision.error, execution_ms=execution_ms
            ),
            what=f"the retry of run {run.id}",
        )
        if not retried:  # canceled meanwhile: its error raised in the grace period
            _lost_the_final_write(definition, run, ctx, common)
        _store_step(lambda: _requeue(run.id, attempt), run.id)
        return

    if decision.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):  # SPEC 3: not for
        # CRASHED (a broken catch_error), SYSTEM_FAILURE or CANCELED
        call_recorded(definition, "on_failure", **common, error=failure.error)
    if decision.status not in _ENDS:
        # CANCELED: runs.cancel already moved the run and its attempt; nothing to write.
        if isinstance(failure.error, TriggerFromCanceledRunError):
            # The attempt's error is the cancel's; the refusal that ended its code is
            # kept with its log lines, where the dashboard shows it.
            run_logger.error(f"attempt ended by a refused trigger: {failure.error}")
        actions.cancel_late_children(run.id)
        after_final(run, attempt)
        return
    result = RunResult(False, run.id, run.task_identifier, error=decision.error)
    call_recorded(
        definition, "on_complete", **common, result=result, output=None, error=failure.error
    )
    # The attempt itself FAILED in every case: its code raised, also when a broken
    # catch_error hook makes the run CRASHED. A waiting parent gets the error as written.
    resume_with = result.to_json() if _may_be_waited_on(run) else None
    won, resumed = until_recorded(
        lambda: transitions.end(
            run.id,
            attempt,
            decision.status,
            error=decision.error,
            execution_ms=execution_ms,
            resume_with=resume_with,
            fields=queueing.ENTRY_FIELDS,
        ),
        what=f"the end of run {run.id}",
    )
    if not won:  # canceled meanwhile, past a max_duration stop that refuses no trigger
        _lost_the_final_write(definition, run, ctx, common)
    after_final(run, attempt, resumed=resumed if won and resume_with is not None else None)


def _lost_the_final_write(
    definition: TaskDefinition, run: Run, ctx: Context, common: dict[str, Any]
) -> None:
    """The attempt's final write (or its suspension) was refused: the run was canceled
    meanwhile, or another attempt took it over. A cancel that landed as the run function
    returned (inside the monitor's poll, or while on_success or on_failure ran) was not
    acted on by the monitor, which watches an attempt only until then: the run ends
    CANCELED all the same, so its ``on_cancel`` hooks run here, after the hooks of the
    end the code reached."""
    actions.cancel_late_children(run.id)
    if ctx.signal.reason == "canceled" or not hooks_of(definition, "on_cancel"):
        return  # the monitor ran them, or there are none
    # Canceled in this attempt (a cancel leaves attempt_count as it is); not a run the
    # reaper gave to a later attempt, which was canceled (and ran its hooks) there.
    attempt = ctx.attempt.number
    if not Run.objects.filter(id=run.id, status=RunStatus.CANCELED, attempt_count=attempt).exists():
        return
    run_logger.warning("canceled as its run function returned; on_cancel runs now")
    ctx.signal.set("canceled")  # as when the monitor runs them (unless set already)
    returned = threading.Event()
    returned.set()
    call_cancel_hooks(definition, ctx, returned, payload=common["payload"], parsed=True)


_ENDS = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CRASHED})


def _may_be_waited_on(run: Run) -> bool:
    """Whether a parent may wait on ``run`` itself, so that its final write completes
    the waitpoint and resumes the parent too. A parent waits on a batch's runs through
    the batch's waitpoint, which completes when the whole batch has finished."""
    return bool(run.parent_id) and not run.batch_id


def _requeue(run_id: str, attempt: int) -> None:
    # Release before enqueueing: a claim of the retry holds a slot under the same
    # run id, which a release after it would take away.
    get_store().release(run_id, attempt=attempt)
    retried = Run.objects.get(id=run_id)
    if retried.status == RunStatus.QUEUED:
        queueing.enqueue([retried])
    dispatch.dispatch_ready()


def _store_step(step: Callable[[], object], run_id: str) -> None:
    """A store step after the run's row is written: an outage of the store must not
    fail the attempt, and the pump redoes it (a lease expires, reconcile enqueues)."""
    try:
        step()
    except Exception:
        log_failure(log, "run %s: store step failed; the pump will redo it", run_id)


def _decide(
    definition: TaskDefinition,
    run: Run,
    ctx: Context,
    common: dict[str, Any],
    failure: Failed,
) -> Decision:
    """Gather the facts for ``core.decisions``: the policy's delay and catch_error's verdict."""
    policy = definition.retry or RetryPolicy.from_value(get_settings().RETRY)
    policy = policy.with_max_attempts(run.max_attempts)
    attempt = ctx.attempt.number
    now = clock.now()
    facts: dict[str, Any] = {
        "stack": failure.stack,
        "attempt": attempt,
        "max_attempts": run.max_attempts,
        "now": now,
        "default_delay_ms": next_delay_ms(policy, attempt),
    }
    if not consults_catch_error(failure.error):
        return decide_after_failure(failure.error, **facts)
    default_delay = facts["default_delay_ms"]
    default_retry_at = (
        None if default_delay is None else now + timedelta(milliseconds=default_delay)
    )
    verdict: Any = None
    for fn in definition.hooks.get("catch_error") + global_hooks.get("catch_error"):
        try:
            verdict = call_hook(
                fn,
                **common,
                error=failure.error,
                retry=policy,  # the run's policy (its max_attempts), as Trigger.dev passes
                retry_at=default_retry_at,
                retry_delay_in_ms=default_delay,
            )
        except (Exception, asyncio.CancelledError) as hook_err:
            return decide_after_failure(
                failure.error, **facts, hook_error=hook_err, hook_stack=traceback.format_exc()
            )
        if verdict is not None:
            break
    return decide_after_failure(failure.error, **facts, verdict=verdict)


def after_final(run: Run, attempt: int, *, resumed: list[Run] | None = None) -> None:
    """Give the slot back, start the next run (this process may keep it, ``handoff``),
    and tell a parent waiting on this one. ``resumed``: this attempt's final write
    completed the waitpoints on the run itself, and resumed these runs
    (``transitions.complete`` or ``transitions.end`` with ``resume_with``)."""
    with dispatch.keeping(handoff.keeper(run.machine, run.region)):
        dispatch.release_and_dispatch(run.id, attempt=attempt)
        if resumed is not None:
            try:
                waitpoints.enqueue_resumed(resumed)
            except Exception:  # an outage is a warning: reconcile queues them
                log_failure(log, "could not queue the runs that %s resumed; reconcile does", run.id)
        elif run.parent_id or run.batch_id:  # only those can have a waiting parent
            try:
                waitpoints.run_finished(run.id, run.batch_id)  # may resume the parent
            except Exception:
                log_failure(
                    log, "could not complete the waitpoints of %s; the pump retries", run.id
                )
