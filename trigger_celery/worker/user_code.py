"""Running the user's code of one attempt: middleware, hooks and the run function.

Nothing here writes a run's status. :func:`run_attempt` returns an :data:`Outcome` -
the run function's output, the error it raised, or ``Suspended`` when it reached a wait
that is not satisfied yet - and the settling step decides what becomes of the run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from billiard import common as billiard_common
from django.db import DatabaseError

from trigger_celery.core import context as run_context
from trigger_celery.core import tracing
from trigger_celery.core.context import Context
from trigger_celery.core.decisions import error_dict, shortened
from trigger_celery.core.hooks import Hook, call_hook, global_hooks, loop_running, run_coroutine
from trigger_celery.core.serialization import escape_text, to_jsonable
from trigger_celery.engine.registry import TaskDefinition
from trigger_celery.errors import MaxDurationExceededError, MiddlewareSkippedError
from trigger_celery.models import LogEntry, Run
from trigger_celery.off_loop import off_event_loop
from trigger_celery.worker.logger import TEXT_LIMIT
from trigger_celery.worker.waits import SuspendRun, wait_of, waits_closed

log = logging.getLogger("trigger_celery.worker")

# Hooks that do not run on every execution of a run: a wait in one would take the step
# the run function's wait has on the other executions, and replay would mix them up.
_ONLY_ON_START = "on_start (it runs on the first execution only, not when the run resumes)"
_ONLY_ON_RESUME = "on_resume (it runs only when the run resumes from a wait)"
_ONCE_PER_ATTEMPT = "on_start_attempt (it runs once per attempt, not when the attempt resumes)"
_CLEANUP = "cleanup (it runs after the run function, also when the run has just suspended)"


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
    # The waitpoint of a child this process keeps and has not started, to be written by
    # the suspension itself: nothing the run waits on can have finished before it.
    kept_child_waitpoint: Any = None


Outcome = Completed | Failed | Suspended


def hooks_of(definition: TaskDefinition, name: str) -> list[Hook]:
    """The hooks named ``name`` for a task: global ones first, then the task's own."""
    return global_hooks.get(name) + definition.hooks.get(name)


def call_run_function(definition: TaskDefinition, payload: Any, ctx: Context) -> Any:
    """``run(payload)`` or ``run(payload, ctx)``, whichever the function takes."""
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


def run_attempt(
    definition: TaskDefinition,
    raw_payload: Any,
    ctx: Context,
    *,
    resumed: bool,
    on_span: Callable[[Any], None] | None = None,
) -> tuple[Outcome, Any]:
    """Middleware, hooks and the run function of one attempt, in the attempt's span
    (handed to ``on_span`` once open, so the monitor can end it if it must end the
    process).

    Returns the outcome and the payload the settling hooks get: parsed by the task's
    schema when it parsed, else as stored.
    """
    parent = _trace_parent(ctx.run.id, definition.id) if tracing.enabled() else None
    attributes = {
        "trigger_celery.run_id": ctx.run.id,
        "trigger_celery.task": definition.id,
        "trigger_celery.attempt": ctx.attempt.number,
        "trigger_celery.queue": ctx.queue.name,
    }
    with tracing.span(
        f"run {definition.id}", consumer=True, parent=parent, attributes=attributes
    ) as sp:
        if on_span is not None:
            on_span(sp)
        outcome, payload = _run_attempt(definition, raw_payload, ctx, resumed=resumed)
        tracing.set_outcome(sp, *_span_outcome(outcome, ctx))
    return outcome, payload


def _trace_parent(run_id: str, task_id: str) -> dict[str, str] | None:
    """The trace context on the run's row; for a run triggered where nothing was traced,
    a stand-in trigger span's, stored on the row so that every later execution (a retry,
    a resume, the reaper's span of a crash) joins the same trace."""
    found = Run.objects.filter(id=run_id).values_list("trace_context", "created_at").first()
    if found is None:
        return None
    parent, created_at = found
    if parent:
        return dict(parent)
    attributes = {"trigger_celery.task": task_id, "trigger_celery.run_id": run_id}
    parent = tracing.stand_in_trigger(f"trigger {task_id}", created_at, attributes)
    if parent:
        try:
            # Kept only if no other execution stored one first, so all join one trace.
            if not Run.objects.filter(id=run_id, trace_context={}).update(trace_context=parent):
                kept = Run.objects.filter(id=run_id).values_list("trace_context", flat=True)
                parent = dict(kept.first() or parent)
        except DatabaseError:
            # A trace never costs a run: this execution is traced under its stand-in,
            # and a later one tries to store its own.
            log.warning("run %s: could not store its trace context", run_id, exc_info=True)
    return parent or None


def _span_outcome(outcome: Outcome, ctx: Context) -> tuple[str, BaseException | None]:
    """How the attempt's span says it ended: a cancel is ``Canceled`` (not an error, even
    when the function returned on the signal), a passed max_duration ``TimedOut``."""
    error = outcome.error if isinstance(outcome, Failed) else None
    reason = ctx.signal.reason if ctx.signal.is_set() else None
    if isinstance(outcome, Suspended):
        return "Suspended", None
    if reason == "canceled":
        return "Canceled", None
    if reason == "max_duration":
        return "TimedOut", error or MaxDurationExceededError("the attempt passed max_duration")
    return type(outcome).__name__, error


def _start_hooks(
    definition: TaskDefinition, ctx: Context, common: dict[str, Any], *, resumed: bool
) -> None:
    """The hooks before the run function: init, then on_resume (a resumed execution) or
    on_start (the run's first attempt) and on_start_attempt."""
    for fn in hooks_of(definition, "init"):
        value = call_hook(fn, **common, init=ctx.init)
        if value is not None:
            ctx.init = value
    if resumed:
        # SPEC 3: an error in on_resume is logged and recorded, not a failure.
        if hooks_of(definition, "on_resume"):
            wait = wait_of(ctx.run.id)
            with waits_closed(_ONLY_ON_RESUME):
                call_recorded(definition, "on_resume", **common, init=ctx.init, wait=wait)
        return
    if ctx.attempt.number == 1:
        with waits_closed(_ONLY_ON_START):
            for fn in hooks_of(definition, "on_start"):
                call_hook(fn, **common, init=ctx.init)
    # Once per attempt: a resumed execution continues the attempt it replays, which
    # on_resume announces instead (SPEC 3).
    with waits_closed(_ONCE_PER_ATTEMPT):
        for fn in hooks_of(definition, "on_start_attempt"):
            call_hook(fn, **common, init=ctx.init)


def _run_attempt(
    definition: TaskDefinition, raw_payload: Any, ctx: Context, *, resumed: bool
) -> tuple[Outcome, Any]:
    common: dict[str, Any] = {"ctx": ctx, "signal": ctx.signal, "task": definition.id}
    payload = raw_payload
    try:
        payload = definition.parse_payload_in_worker(raw_payload)
        common["payload"] = payload
        box: dict[str, Any] = {}

        def core() -> Any:
            try:
                _start_hooks(definition, ctx, common, resumed=resumed)
                box["output"] = call_run_function(definition, payload, ctx)
            finally:
                # After every attempt (SPEC 3), also one whose start hooks failed.
                with waits_closed(_CLEANUP):
                    for fn in hooks_of(definition, "cleanup"):
                        call_hook(fn, **common, init=ctx.init)
            return box.get("output")

        chain: Callable[[], Any] = core
        for _name, mw in reversed(global_hooks.middleware + definition.hooks.middleware):
            chain = _wrap_middleware(mw, chain, common)
        chain()
        if swallowed := swallowed_suspension():
            return swallowed, payload
        if caught := swallowed_mismatch():
            return caught, payload
        return Completed(to_jsonable(box.get("output"), what="output")), payload
    except SuspendRun as suspend:
        return Suspended(suspend.reason, suspend.kept_child_waitpoint), payload
    except Exception as err:
        if swallowed := swallowed_suspension():
            return swallowed, payload
        if _terminate_handler_fired():
            # Raised while billiard's SIGTERM exit unwound (a cleanup hook that failed on
            # the way out): the process is ending all the same, and its run is a crash.
            raise
        return Failed(err, traceback.format_exc()), payload
    except BaseExceptionGroup as group:
        # A wait inside an asyncio.TaskGroup: its suspension comes out wrapped, with the
        # group's other tasks cancelled. The run waits, as for a wait caught by the code.
        if group.subgroup(SuspendRun) is not None and (swallowed := swallowed_suspension()):
            return swallowed, payload
        if group.subgroup(_ends_a_process) is not None:
            raise
        return Failed(group, traceback.format_exc()), payload
    except SystemExit as err:
        # ``sys.exit()`` in the user's code fails the attempt like any error instead of
        # ending the pool process (the run would wait out its lease as a crash). Celery's
        # own shutdowns (``WorkerShutdown``, ``WorkerTerminate``) subclass it and go on,
        # as does the exit of a pool child sent SIGTERM (Celery's hard time limit): that
        # process is killed a moment later, and its run is a crash, not a failure.
        if type(err) is not SystemExit or _terminate_handler_fired():
            raise
        return Failed(err, traceback.format_exc()), payload
    except BaseException as err:
        # A BaseException of the code's own or a library's, or its own cancelled asyncio
        # task, awaited (a stop from the monitor arrives as its own error instead,
        # ``hooks.stop_loop``): a failure of the attempt like any other, not an escape
        # that leaves the run to its lease as a crash.
        if not _the_codes_own(err) or _terminate_handler_fired():
            raise
        return Failed(err, traceback.format_exc()), payload


# Where the BaseExceptions that end a process or a green thread come from: they go on.
_NOT_THE_CODES = ("builtins", "celery", "billiard", "kombu", "gevent", "greenlet", "eventlet")


def _the_codes_own(err: BaseException) -> bool:
    """An Exception, or a BaseException of the user's code or a library's; not
    KeyboardInterrupt, a pool's own or this package's (a suspension)."""
    root = type(err).__module__.partition(".")[0]
    return isinstance(err, Exception) or root not in (*_NOT_THE_CODES, "trigger_celery")


def _ends_a_process(err: BaseException) -> bool:  # ``subgroup`` asks of groups too
    return not isinstance(err, BaseExceptionGroup) and not _the_codes_own(err)


def swallowed_suspension() -> Suspended | None:
    """The suspension of a wait that the code caught (a bare ``except:``, ``except
    BaseException``) before it returned or raised something else. The wait's step is
    recorded and its child triggered, so the run waits all the same; what the code did
    after the catch is dropped, as code after a wait is on any replay. Before, the run
    ended with that code's result, COMPLETED without the result it waited for."""
    scope = run_context.optional_scope()
    if scope is None or not isinstance(scope.suspension, SuspendRun):
        return None
    if scope.ctx.signal.is_set():
        # A cancel, max_duration or a lost lease ends the run all the same: the monitor
        # sets the signal before it interrupts the code with its stop.
        return None
    return Suspended(scope.suspension.reason, scope.suspension.kept_child_waitpoint)


def swallowed_mismatch() -> Failed | None:
    """A replay mismatch the code caught before it returned: its steps no longer lined
    up with the recorded ones, so what it returned was not computed from them. The
    attempt fails with the mismatch, as when the code lets it through (no retry: every
    replay meets it again); before, the run completed."""
    scope = run_context.optional_scope()
    if scope is None or scope.mismatch is None or scope.ctx.signal.is_set():
        return None  # a stop (cancel, max_duration, lost lease) ends the run as it says
    err = scope.mismatch
    return Failed(err, "".join(traceback.format_exception(err)))


def _terminate_handler_fired() -> bool:
    """Whether billiard's SIGTERM handler raised in this pool process. Billiard says so
    from 4.3.1 on; older releases (Celery 5.6 allows 4.2) keep the same flag unnamed."""
    fired = getattr(billiard_common, "terminate_handler_fired", None)
    if fired is not None:
        return bool(fired())
    flag = getattr(billiard_common, "_should_have_exited", None)
    return bool(flag and flag[0])


def _wrap_middleware(
    mw: Hook, inner: Callable[[], Any], common: dict[str, Any]
) -> Callable[[], Any]:
    is_async = inspect.iscoroutinefunction(mw)

    def step() -> Any:
        called = False

        def next_() -> Any:
            nonlocal called
            called = True
            # The steps inside are sync code (hooks, the run function): not in the thread
            # whose loop runs async middleware, where Django refuses ORM calls.
            output = _off_the_loop(inner) if is_async and loop_running() else inner()
            return _Ran(output) if is_async else output

        returned = call_hook(mw, **common, next=next_)
        if not called:
            name = getattr(mw, "__qualname__", repr(mw))
            raise MiddlewareSkippedError(
                f"middleware {name} returned without calling next(): the run function did not run"
            )
        return returned

    return step


# attempt thread -> the helper thread running the steps inside its async middleware
# (:func:`_off_the_loop`): the monitor stops the thread at the end of the chain.
MOVED: dict[int, int] = {}


def running_thread(thread_id: int) -> int:
    """The thread that runs the code of the attempt started in ``thread_id`` now."""
    while thread_id in MOVED:
        thread_id = MOVED[thread_id]
    return thread_id


def _off_the_loop(inner: Callable[[], Any]) -> Any:
    owner = threading.get_ident()

    def moved() -> Any:
        MOVED[owner] = threading.get_ident()
        try:
            return inner()
        finally:
            MOVED.pop(owner, None)

    return off_event_loop(moved)()


class _Ran:
    """What ``next()`` gives async middleware: the steps inside it have run, and
    ``await next()`` is their output, as in Trigger.dev (``return next()`` works too)."""

    def __init__(self, output: Any) -> None:
        self.output = output

    def __await__(self) -> Generator[Any, None, Any]:
        return self._output().__await__()

    async def _output(self) -> Any:
        return self.output


def call_recorded(definition: TaskDefinition, name: str, **kw: Any) -> None:
    """Call hooks whose errors do not fail the run, recording each error on the run as
    an ERROR log line (``on_success``, ``on_failure``, ``on_complete``, ``on_wait``,
    ``on_resume``). ``kw`` are the hook arguments and include ``ctx``."""
    ctx: Context = kw["ctx"]
    for fn in hooks_of(definition, name):
        try:
            call_hook(fn, **kw)
        except (Exception, asyncio.CancelledError) as err:
            log.exception("%s hook of run %s failed", name, ctx.run.id)
            LogEntry.objects.create(
                run_id=ctx.run.id,
                attempt_number=ctx.attempt.number,
                level="ERROR",
                # Bounded as a log line is, whatever the error says.
                message=escape_text(shortened(f"{name} hook failed: {err!r}", TEXT_LIMIT)),
                attributes={"hook": name, "error": error_dict(err, traceback.format_exc())},
            )
