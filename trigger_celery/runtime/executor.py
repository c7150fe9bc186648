"""One attempt of one run, from the Celery message to the final row.

The attempt is split in three steps so each can be reasoned about alone:

1. ``start_attempt`` - a fenced DEQUEUED -> EXECUTING transition; a stale or duplicate
   message loses it and does nothing.
2. ``run_attempt`` - middleware, hooks and the run function, returning an ``Outcome``
   (it never touches the run row). A run that reaches a wait ends the attempt with a
   ``Suspended`` outcome instead of blocking; the next attempt replays the function from
   the top (SPEC 7), so nothing here assumes a function runs to its end in one go.
3. ``settle`` - success/failure hooks, the retry decision and a fenced write of the
   result; then the slot is released and the next run dispatched at once.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from trigger_celery import dispatch, realtime
from trigger_celery.client.payloads import load_payload, store_payload
from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.retry import RetryPolicy, next_delay_ms
from trigger_celery.core.serialization import to_jsonable
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.definition import TaskDefinition, registry
from trigger_celery.errors import (
    AbortTaskRunError,
    HandleErrorError,
    MaxDurationExceededError,
    PayloadTooLargeError,
    RunCanceledError,
    SerializationError,
    TaskPayloadParsedError,
)
from trigger_celery.models import Attempt, LogEntry, Run
from trigger_celery.runtime import context
from trigger_celery.runtime.context import (
    AttemptInfo,
    BatchInfo,
    Context,
    QueueInfo,
    RunInfo,
    RunScope,
    TaskInfo,
)
from trigger_celery.runtime.hooks import Hook, call_hook, global_hooks, run_coroutine
from trigger_celery.runtime.monitor import Watched, monitor
from trigger_celery.runtime.waits import ReplayMismatchError

log = logging.getLogger("trigger_celery.executor")

# Errors that fail the run at once, whatever the retry policy says.
NEVER_RETRIED = (
    AbortTaskRunError,
    TaskPayloadParsedError,
    SerializationError,
    PayloadTooLargeError,
    ReplayMismatchError,  # the code changed under a waiting run: retrying cannot help
)


# -- outcomes --------------------------------------------------------------------------


@dataclass
class Completed:
    output: Any


@dataclass
class Failed:
    error: BaseException
    stack: str


@dataclass
class Suspended:
    """The run reached a wait that is not satisfied yet (SPEC 7)."""

    reason: Any = None


Outcome = Completed | Failed | Suspended


@dataclass
class Decision:
    """What happens to a run after a failed attempt."""

    status: RunStatus  # QUEUED means "retry"
    retry_at: datetime | None = None
    error: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """What ``on_complete`` hooks get: ``.ok`` and ``.output`` or ``.error``."""

    ok: bool
    output: Any = None
    error: Any = None


def error_dict(err: BaseException, stack: str = "", code: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(err).__name__, "message": str(err), "stack": stack}
    if code:
        data["code"] = code
    return data


# -- 1. start ------------------------------------------------------------------------------


def start_attempt(run_id: str, attempt: int, worker: str) -> Run | None:
    """Win the run for this attempt, or return None for a stale/duplicate message.

    One ``UPDATE ... RETURNING`` both fences (status DEQUEUED, previous attempt number)
    and loads the run; the Attempt row is written in the same transaction.
    """
    now = dispatch.now_utc()
    table = connection.ops.quote_name(Run._meta.db_table)
    with transaction.atomic():
        won = list(
            Run.objects.raw(
                f"UPDATE {table} SET status = %s, attempt_count = %s, updated_at = %s, "
                "started_at = COALESCE(started_at, %s) "
                "WHERE id = %s AND status = %s AND attempt_count = %s RETURNING *",
                [
                    RunStatus.EXECUTING.value,
                    attempt,
                    now,
                    now,
                    run_id,
                    RunStatus.DEQUEUED.value,
                    attempt - 1,
                ],
            )
        )
        if not won:
            return None
        # A run resumed after a wait continues the attempt it suspended in.
        resumed = Attempt.objects.filter(
            run_id=run_id, number=attempt, status=AttemptStatus.SUSPENDED
        ).update(status=AttemptStatus.EXECUTING, worker=worker, finished_at=None)
        if not resumed:
            Attempt.objects.create(
                run_id=run_id,
                number=attempt,
                status=AttemptStatus.EXECUTING,
                started_at=now,
                worker=worker,
            )
    realtime.notify(run_id)
    run = won[0]
    run.resumed = bool(resumed)  # type: ignore[attr-defined]
    return run


def build_context(run: Run, attempt: int, definition: TaskDefinition | None) -> Context:
    return Context(
        run=RunInfo(
            id=run.id,
            tags=list(run.tags),
            metadata=dict(run.metadata),
            idempotency_key=run.idempotency_key,
            parent_id=run.parent_id,
            root_id=run.root_id,
            depth=run.depth,
            created_at=run.created_at,
            max_attempts=run.max_attempts,
            max_duration=run.max_duration,
            concurrency_key=run.concurrency_key,
        ),
        attempt=AttemptInfo(number=attempt, started_at=dispatch.now_utc()),
        task=TaskInfo(id=run.task_identifier),
        queue=QueueInfo(name=run.queue),
        environment=run.environment,
        batch=BatchInfo(run.batch_id) if run.batch_id else None,
    )


# -- 2. run ----------------------------------------------------------------------------------


def _hooks(definition: TaskDefinition, name: str) -> list[Hook]:
    # Global hooks first, then the task's own (Trigger.dev's order).
    return global_hooks.get(name) + definition.hooks.get(name)


def call_run_function(definition: TaskDefinition, payload: Any, ctx: Context) -> Any:
    fn = definition.run_fn
    try:
        positional = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        args = (payload,) if len(positional) == 1 else (payload, ctx)
    except (TypeError, ValueError):
        args = (payload, ctx)
    result = fn(*args)
    if inspect.isawaitable(result):
        result = run_coroutine(result)
    return result


def run_attempt(definition: TaskDefinition, run: Run, ctx: Context) -> Outcome:
    """Middleware, hooks and the run function of one attempt. Never writes the run row."""
    from trigger_celery.runtime.waits import SuspendRun

    raw_payload = load_payload(run.payload, run.payload_ref)
    common: dict[str, Any] = {"ctx": ctx, "signal": ctx.signal, "task": definition.id}
    try:
        payload = definition.parse_payload_in_worker(raw_payload)
        common["payload"] = payload
        box: dict[str, Any] = {}

        def core() -> Any:
            for fn in _hooks(definition, "init"):
                value = call_hook(fn, **common, init=ctx.init)
                if value is not None:
                    ctx.init = value
            if getattr(run, "resumed", False):
                for fn in _hooks(definition, "on_resume"):
                    call_hook(fn, **common, init=ctx.init)
            elif ctx.attempt.number == 1:
                for fn in _hooks(definition, "on_start"):
                    call_hook(fn, **common, init=ctx.init)
            for fn in _hooks(definition, "on_start_attempt"):
                call_hook(fn, **common, init=ctx.init)
            try:
                box["output"] = call_run_function(definition, payload, ctx)
            finally:
                for fn in _hooks(definition, "cleanup"):
                    call_hook(fn, **common, init=ctx.init)
            return box.get("output")

        chain: Callable[[], Any] = core
        for _name, mw in reversed(global_hooks.middleware + definition.hooks.middleware):
            chain = _wrap_middleware(mw, chain, common)
        chain()
        output = to_jsonable(box.get("output"), what="output")
        return Completed(output)
    except SuspendRun as suspend:
        return Suspended(suspend.reason)
    except Exception as err:
        return Failed(err, traceback.format_exc())


def _wrap_middleware(
    mw: Hook, inner: Callable[[], Any], common: dict[str, Any]
) -> Callable[[], Any]:
    def step() -> Any:
        def next_() -> Any:
            return inner()

        return call_hook(mw, **common, next=next_)

    return step


# -- 3. settle -------------------------------------------------------------------------------


def decide_after_failure(
    definition: TaskDefinition, run: Run, ctx: Context, failure: Failed, payload: Any
) -> Decision:
    """Retry or not, and when: the never-retried errors, catch_error, then the policy."""
    err = failure.error
    error = error_dict(err, failure.stack)
    if isinstance(err, TaskPayloadParsedError):
        error["code"] = "TASK_INPUT_ERROR"
    if isinstance(err, MaxDurationExceededError):
        return Decision(RunStatus.TIMED_OUT, error={**error, "code": "MAX_DURATION_EXCEEDED"})
    if isinstance(err, RunCanceledError):
        return Decision(RunStatus.CANCELED, error={**error, "code": "TASK_RUN_CANCELLED"})
    if isinstance(err, NEVER_RETRIED):
        return Decision(RunStatus.FAILED, error=error)

    policy = definition.retry or RetryPolicy.from_value(get_settings().RETRY)
    policy = policy.with_max_attempts(run.max_attempts)
    attempt = ctx.attempt.number
    now = dispatch.now_utc()
    default_delay = next_delay_ms(policy, attempt)
    default_retry_at = (
        now + timedelta(milliseconds=default_delay) if default_delay is not None else None
    )

    verdict: Any = None
    for fn in definition.hooks.get("catch_error") + global_hooks.get("catch_error"):
        try:
            verdict = call_hook(
                fn,
                payload=payload,
                ctx=ctx,
                error=err,
                signal=ctx.signal,
                task=definition.id,
                init=ctx.init,
                retry_at=default_retry_at,
                retry_delay_in_ms=default_delay,
            )
        except Exception as hook_err:
            wrapped = HandleErrorError(f"catch_error hook raised: {hook_err!r}")
            return Decision(
                RunStatus.CRASHED,
                error=error_dict(wrapped, traceback.format_exc(), code="HANDLE_ERROR_ERROR"),
            )
        if verdict is not None:
            break

    if attempt >= run.max_attempts:
        return Decision(RunStatus.FAILED, error=error)
    if verdict is None:
        if default_retry_at is None:
            return Decision(RunStatus.FAILED, error=error)
        return Decision(RunStatus.QUEUED, retry_at=default_retry_at, error=error)
    if not isinstance(verdict, dict):
        return Decision(
            RunStatus.CRASHED,
            error=error_dict(
                HandleErrorError(f"catch_error returned {verdict!r}; expected None or a dict"),
                code="HANDLE_ERROR_ERROR",
            ),
        )
    if verdict.get("skip_retrying"):
        return Decision(RunStatus.FAILED, error=error)
    if verdict.get("retry_at") is not None:
        retry_at = verdict["retry_at"]
        return Decision(RunStatus.QUEUED, retry_at=max(retry_at, now), error=error)
    if verdict.get("retry_delay_in_ms") is not None:
        delay = timedelta(milliseconds=float(verdict["retry_delay_in_ms"]))
        return Decision(RunStatus.QUEUED, retry_at=now + delay, error=error)
    if default_retry_at is None:
        return Decision(RunStatus.FAILED, error=error)
    return Decision(RunStatus.QUEUED, retry_at=default_retry_at, error=error)


def _call_recorded(
    definition: TaskDefinition, run_id: str, attempt: int, name: str, **kw: Any
) -> None:
    """Call hooks whose errors are ignored, but recorded on the run as log lines."""
    for fn in _hooks(definition, name):
        try:
            call_hook(fn, **kw)
        except Exception as err:
            log.exception("%s hook of run %s failed", name, run_id)
            LogEntry.objects.create(
                run_id=run_id,
                attempt_number=attempt,
                level="ERROR",
                message=f"{name} hook failed: {err!r}",
                attributes={"hook": name, "error": error_dict(err, traceback.format_exc())},
            )


def _fenced(run_id: str, attempt: int, **fields: Any) -> bool:
    """Write to the run only if this attempt still owns it (fencing by attempt number)."""
    won = bool(
        Run.objects.filter(id=run_id, attempt_count=attempt, status=RunStatus.EXECUTING).update(
            **fields
        )
    )
    if won:
        # Inside a transaction the news must wait for the commit.
        transaction.on_commit(lambda: realtime.notify(run_id))
    return won


def settle(
    definition: TaskDefinition, run: Run, ctx: Context, outcome: Outcome, elapsed_ms: int
) -> None:
    attempt = ctx.attempt.number
    now = dispatch.now_utc()
    common: dict[str, Any] = {
        "ctx": ctx,
        "signal": ctx.signal,
        "task": definition.id,
        "init": ctx.init,
    }
    payload = None
    if not isinstance(outcome, Completed):
        try:
            payload = definition.parse_payload(load_payload(run.payload, run.payload_ref))
        except Exception:
            payload = run.payload
    common["payload"] = payload

    if isinstance(outcome, Completed):
        output = outcome.output
        try:
            inline, ref = store_payload(
                run.id, "output", output, limit=get_settings().OUTPUT_MAX_SIZE
            )
        except ValueError as err:
            outcome = Failed(err, "")
        else:
            _call_recorded(definition, run.id, attempt, "on_success", **common, output=output)
            _call_recorded(
                definition,
                run.id,
                attempt,
                "on_complete",
                **common,
                result=TaskResult(ok=True, output=output),
                output=output,
            )
            with transaction.atomic():
                if _fenced(
                    run.id,
                    attempt,
                    status=RunStatus.COMPLETED,
                    output=inline,
                    output_ref=ref,
                    finished_at=now,
                    execution_ms=run.execution_ms + elapsed_ms,
                    error=None,
                ):
                    Attempt.objects.filter(run_id=run.id, number=attempt).update(
                        status=AttemptStatus.COMPLETED, finished_at=now
                    )
            _release_and_dispatch(run)
            if run.parent_id or run.batch_id:  # only those can have a waiting parent
                _runs_finished(run.id)
            return

    if isinstance(outcome, Suspended):
        from trigger_celery.runtime.waits import settle_suspended

        # The slot goes back before a resume can queue the run again.
        get_store().release(run.id)
        settle_suspended(run, ctx, definition, elapsed_ms)
        _release_and_dispatch(run)
        return

    assert isinstance(outcome, Failed)
    decision = decide_after_failure(definition, run, ctx, outcome, payload)
    attempt_fields = {"status": AttemptStatus.FAILED, "finished_at": now, "error": decision.error}
    if decision.status == RunStatus.QUEUED:
        assert decision.retry_at is not None
        log.info("run %s attempt %d failed; retry at %s", run.id, attempt, decision.retry_at)
        with transaction.atomic():
            if _fenced(
                run.id,
                attempt,
                status=RunStatus.QUEUED,
                available_at=decision.retry_at,
                error=decision.error,
                execution_ms=run.execution_ms + elapsed_ms,
            ):
                Attempt.objects.filter(run_id=run.id, number=attempt).update(**attempt_fields)
        # Release before enqueueing: a claim of the retry holds a slot under the same
        # run id, which a release after it would take away.
        get_store().release(run.id)
        retried = Run.objects.get(id=run.id)
        if retried.status == RunStatus.QUEUED:
            dispatch.enqueue([retried])
        dispatch.dispatch_ready()
        return

    if decision.status == RunStatus.FAILED:
        _call_recorded(definition, run.id, attempt, "on_failure", **common, error=outcome.error)
    if decision.status in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CRASHED):
        _call_recorded(
            definition,
            run.id,
            attempt,
            "on_complete",
            **common,
            result=TaskResult(ok=False, error=decision.error),
            error=outcome.error,
        )
    final_attempt = (
        AttemptStatus.CANCELED if decision.status == RunStatus.CANCELED else AttemptStatus.FAILED
    )
    with transaction.atomic():
        if _fenced(
            run.id,
            attempt,
            status=decision.status,
            error=decision.error,
            finished_at=now,
            idempotency_key=None if decision.status != RunStatus.CANCELED else run.idempotency_key,
            execution_ms=run.execution_ms + elapsed_ms,
        ):
            Attempt.objects.filter(run_id=run.id, number=attempt).update(
                **{**attempt_fields, "status": final_attempt}
            )
    _release_and_dispatch(run)
    if run.parent_id or run.batch_id:
        _runs_finished(run.id)


def _return_to_pending_version(run: Run, attempt: int) -> None:
    """This worker does not know the task (an older deploy): undo the start and let a
    worker that registers the task pick the run up (see ``promote_pending_versions``)."""
    with transaction.atomic():
        if Run.objects.filter(id=run.id, status=RunStatus.EXECUTING, attempt_count=attempt).update(
            status=RunStatus.PENDING_VERSION, attempt_count=attempt - 1
        ):
            Attempt.objects.filter(run_id=run.id, number=attempt).delete()
    log.warning(
        "run %s: task %r is not registered in this worker; waiting for one that has it",
        run.id,
        run.task_identifier,
    )
    _release_and_dispatch(run)


def _runs_finished(*run_ids: str) -> None:
    """Parents waiting on these runs get their results (and resume when all are in)."""
    from trigger_celery.runtime.waits import runs_finished

    try:
        runs_finished(run_ids)
    except Exception:
        log.exception("could not complete the waitpoints of %s; the pump retries", run_ids)


def _release_and_dispatch(run: Run) -> None:
    try:
        get_store().release(run.id)
        dispatch.dispatch_ready()
    except Exception:
        log.exception("could not release the slot of run %s; its lease will expire", run.id)


# -- the whole attempt -------------------------------------------------------------------------


def call_cancel_hooks(definition: TaskDefinition, ctx: Context, run_finished: Any = None) -> None:
    """on_cancel hooks (task, then global); errors are logged. Called by the monitor."""
    for fn in _hooks(definition, "on_cancel"):
        try:
            call_hook(
                fn,
                ctx=ctx,
                signal=ctx.signal,
                task=definition.id,
                init=ctx.init,
                run_finished=run_finished,
            )
        except Exception:
            log.exception("on_cancel hook of run %s failed", ctx.run.id)


def stop_unresponsive_attempt(w: Any, exc: type[BaseException]) -> None:
    """Final writes for an attempt whose process is about to exit because it ignored a stop."""
    now = dispatch.now_utc()
    if exc is MaxDurationExceededError:
        error = {
            "type": "MaxDurationExceededError",
            "message": "max_duration exceeded",
            "code": "MAX_DURATION_EXCEEDED",
        }
        with transaction.atomic():
            if _fenced(
                w.run_id,
                w.attempt,
                status=RunStatus.TIMED_OUT,
                error=error,
                finished_at=now,
                idempotency_key=None,
            ):
                Attempt.objects.filter(run_id=w.run_id, number=w.attempt).update(
                    status=AttemptStatus.FAILED, finished_at=now, error=error
                )
    get_store().release(w.run_id)
    dispatch.dispatch_ready()


def execute(run_id: str, attempt: int, *, worker: str | None = None) -> str:
    """Run one attempt; returns what happened, for logs ("stale", "COMPLETED", ...)."""
    run = start_attempt(run_id, attempt, worker or socket.gethostname())
    if run is None:
        log.info("run %s attempt %d: stale or duplicate message, ignored", run_id, attempt)
        return "stale"
    definition = registry.get_task(run.task_identifier)
    if definition is None:
        _return_to_pending_version(run, attempt)
        return RunStatus.PENDING_VERSION
    ctx = build_context(run, attempt, definition)
    token = context.enter(RunScope(ctx))
    started = time.monotonic()
    watched = Watched(
        run_id=run.id,
        attempt=attempt,
        thread_id=threading.get_ident(),
        ctx=ctx,
        definition=definition,
        deadline=started + run.max_duration if run.max_duration else None,
    )
    monitor.watch(watched)
    try:
        try:
            outcome = run_attempt(definition, run, ctx)
            with watched.lock:
                watched.done = True
        except (RunCanceledError, MaxDurationExceededError) as late:
            # The monitor's stop arrived just after the run function returned.
            with watched.lock:
                watched.done = True
            outcome = Failed(late, traceback.format_exc())
        watched.finished.set()
        monitor.unwatch(run.id)
        if watched.reason == "max_duration" and not isinstance(outcome, Suspended):
            # The deadline passed: TIMED_OUT even if the function swallowed the stop.
            err = MaxDurationExceededError(
                f"the attempt ran longer than max_duration ({run.max_duration}s)"
            )
            outcome = Failed(err, "")
        elapsed_ms = int((time.monotonic() - started) * 1000)
        settle(definition, run, ctx, outcome, elapsed_ms)
    finally:
        monitor.unwatch(run.id)
        context.leave(token)
    return type(outcome).__name__
