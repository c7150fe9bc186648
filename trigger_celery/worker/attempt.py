"""One attempt of one run, from the Celery message to the final row.

1. **Start** - ``transitions.start_attempt``: DEQUEUED → EXECUTING, fenced on the
   attempt number, so a stale or duplicate message loses and does nothing.
2. **Run** - :mod:`trigger_celery.worker.user_code`: middleware, hooks and the run
   function, watched by the monitor (lease heartbeats, cancel, ``max_duration``). A run
   that reaches an unsatisfied wait ends the attempt ``Suspended``; its next start
   replays the function from the top (SPEC 7).
3. **Settle** - :mod:`trigger_celery.worker.settle`: hooks, the retry decision and the
   run's next transition; the slot goes back and the next run is dispatched.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core import context as run_context
from trigger_celery.core.context import (
    AttemptInfo,
    BatchInfo,
    Context,
    QueueInfo,
    RunInfo,
    RunScope,
    TaskInfo,
)
from trigger_celery.core.decisions import error_dict
from trigger_celery.core.statuses import RunStatus
from trigger_celery.db import heal_connections
from trigger_celery.engine import dispatch, transitions, waitpoints
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.errors import (
    LeaseLostError,
    MaxDurationExceededError,
    RunCanceledError,
    TaskModuleImportError,
)
from trigger_celery.models import Run
from trigger_celery.worker import log_fields
from trigger_celery.worker.cancel_hooks import call_cancel_hooks
from trigger_celery.worker.monitor import Watched, monitor
from trigger_celery.worker.settle import after_final, settle
from trigger_celery.worker.user_code import Failed, Outcome, Suspended, run_attempt

log = logging.getLogger("trigger_celery.worker")


def execute(run_id: str, attempt: int, *, worker: str | None = None) -> str:
    """Run one attempt; returns what happened, for logs ("stale", "Completed", ...)."""
    heal_connections()  # a database restart since the last attempt broke the connection
    run = _start(run_id, attempt, worker or socket.gethostname())
    if run is None:
        log.info(
            "run %s attempt %d: stale or duplicate message, ignored",
            run_id,
            attempt,
            extra=log_fields.of(run_id, None, attempt),
        )
        return "stale"
    if _started_past_its_ttl(run, attempt):
        return RunStatus.EXPIRED
    definition = _definition_of(run)
    if definition is None:
        _hand_back(run, attempt)
        return RunStatus.PENDING_VERSION
    _date_start(run)
    ctx = build_context(run, attempt)
    resumed = getattr(run, "resumed", False)
    scope = RunScope(
        ctx,
        machine=run.machine,
        region=run.region,
        fresh=attempt == 1 and not resumed,
        resumed=resumed,
    )
    token = run_context.enter(scope)
    try:
        try:
            raw_payload = load_payload(run.payload, run.payload_ref)
        except Exception as err:
            # Not the task's fault, and retrying cannot bring the stored payload back.
            log.exception("run %s: its stored payload cannot be read", run.id)
            error = error_dict(err, traceback.format_exc(), code="PAYLOAD_UNREADABLE")
            transitions.end(run.id, attempt, RunStatus.SYSTEM_FAILURE, error=error)
            after_final(run, attempt)
            return RunStatus.SYSTEM_FAILURE
        watched = _watch(definition, run, ctx)
        watched.payload = raw_payload
        try:
            outcome, payload, elapsed_ms = _run_watched(watched, definition, run, ctx, raw_payload)
            settled = _settled_outcome(watched, outcome, run)
            if settled is None:
                # The reaper gave the run to a new attempt: this one writes nothing.
                log.warning("run %s attempt %d: lease lost, not settled", run.id, attempt)
                return "lease lost"
            outcome = settled
            # Still watched while settling: the lease lives until the attempt's last write.
            scope.waits_closed = (
                "a hook that runs after the run function returned (on_success, on_failure, "
                "on_complete, catch_error, on_wait): the attempt has ended and cannot wait"
            )
            try:
                settle(definition, run, ctx, outcome, payload, elapsed_ms)
            except DatabaseError as err:
                if isinstance(err, OperationalError | InterfaceError):
                    raise  # unreachable past its budget: the lease lapses, the run is retried
                return _end_unrecorded(run, attempt, err)
        finally:
            monitor.unwatch(run.id)
    finally:
        run_context.leave(token)
    return type(outcome).__name__


def execute_kept(run_id: str, attempt: int, *, worker: str | None = None) -> str:
    """:func:`execute` for a run this process kept (``worker.handoff``).

    A kept child canceled before it started may have a parent that wrote its waitpoint
    on it after the cancel had looked for waiting parents (the parent suspends with the
    waitpoint of the child it keeps). Nobody else would complete that waitpoint before
    the repair pass, so a kept run that does not start completes its waitpoints here."""
    outcome = execute(run_id, attempt, worker=worker)
    if outcome == "stale":
        waitpoints.runs_finished([run_id])  # only a finished run's waitpoints complete
    return outcome


def _definition_of(run: Run) -> TaskDefinition | None:
    try:
        return registry.get_task(run.task_identifier)
    except TaskModuleImportError:
        log.exception("run %s: this worker cannot import its tasks modules", run.id)
        return None


def _watch(definition: TaskDefinition, run: Run, ctx: Context) -> Watched:
    """Hand the attempt to the monitor: heartbeats, cancel, ``max_duration``, lease loss."""
    watched = Watched(
        run_id=run.id,
        attempt=ctx.attempt.number,
        thread_id=threading.get_ident(),
        ctx=ctx,
        definition=definition,
        deadline=time.monotonic() + run.max_duration if run.max_duration else None,
        queue=run.queue,
        concurrency_key=run.concurrency_key,
    )
    monitor.watch(watched)
    return watched


def _run_watched(
    watched: Watched, definition: TaskDefinition, run: Run, ctx: Context, raw_payload: object
) -> tuple[Outcome, object, int]:
    """The user's code under the monitor; returns the outcome, the payload the hooks
    get (parsed when it parsed) and the compute time in milliseconds."""
    started = time.monotonic()
    payload: object = raw_payload
    try:
        outcome, payload = run_attempt(
            definition,
            raw_payload,
            ctx,
            resumed=getattr(run, "resumed", False),
            on_span=watched.hold_span,
        )
        with watched.lock:
            watched.done = True
    except (RunCanceledError, MaxDurationExceededError, LeaseLostError) as late:
        # The monitor's stop arrived just after the run function returned.
        with watched.lock:
            watched.done = True
        outcome = Failed(late, traceback.format_exc())
    watched.finished.set()
    return _as_stopped(watched, outcome, run), payload, int((time.monotonic() - started) * 1000)


def _settled_outcome(watched: Watched, outcome: Outcome, run: Run) -> Outcome | None:
    """What the settle writes for an attempt that returned; None when it writes nothing
    (its lease was lost: another attempt has the run). A cancel the monitor never saw
    (its passes held up by a stalled store) is found here: the attempt is canceled."""
    late = "moved on" if watched.reason == "lease_lost" else monitor.after_return(watched)
    if late == "moved on":
        return None
    if late == "canceled":
        call_cancel_hooks(
            watched.definition, watched.ctx, watched.finished, payload=watched.payload
        )
    return _as_stopped(watched, outcome, run)


def _as_stopped(watched: Watched, outcome: Outcome, run: Run) -> Outcome:
    """The outcome of an attempt the monitor stopped, whatever its code returned."""
    canceled_as_such = isinstance(outcome, Failed) and isinstance(outcome.error, RunCanceledError)
    if watched.reason == "canceled" and not (canceled_as_such or isinstance(outcome, Suspended)):
        # Canceled, and the function stopped by returning (ctx.signal) or by raising an
        # error of its own (retry.on_throw giving up with its last one): the run did not
        # succeed nor fail, so no catch_error, on_failure, on_success or on_complete
        # (runs.cancel wrote CANCELED already).
        outcome = Failed(RunCanceledError("the run was canceled"), "")
    if watched.reason == "max_duration" and not isinstance(outcome, Suspended):
        # The deadline passed: TIMED_OUT even if the function swallowed the stop.
        err = MaxDurationExceededError(
            f"the attempt ran longer than max_duration ({run.max_duration}s)"
        )
        outcome = Failed(err, "")
    return outcome


def _end_unrecorded(run: Run, attempt: int, err: DatabaseError) -> str:
    """The database refused the attempt's last write for good (a value it cannot take,
    a constraint): waiting out the lease would only run the code again to the same end.
    The run ends SYSTEM_FAILURE with the database's error, if it is still this
    attempt's; if it is not, the error goes on as before."""
    log.exception("run %s attempt %d: the database refused its last write", run.id, attempt)
    error = error_dict(err, traceback.format_exc(), code="OUTCOME_NOT_RECORDED")
    won, _ = transitions.end(run.id, attempt, RunStatus.SYSTEM_FAILURE, error=error)
    if not won:
        raise err
    after_final(run, attempt)
    return RunStatus.SYSTEM_FAILURE


def _date_start(run: Run) -> None:
    """A rate limit counts starts (SPEC 4): the claim's place in the queue's window is
    dated now. Queues this worker declares without a rate limit skip the round trip."""
    q = registry.queues.get(run.queue)
    if q is not None and q.rate_limit is None:
        return  # a queue this code does not declare may have a limit in the store
    try:
        get_store().started(run.id, None)
    except Exception:
        # The run goes on: its place stays in the window until its slot is released.
        log.warning(
            "run %s: could not date its start in queue %r", run.id, run.queue, exc_info=True
        )


def _start(run_id: str, attempt: int, worker: str) -> Run | None:
    """``transitions.start_attempt``, once more on a new connection when the first try
    finds its connection dead: one the server closed while this process was idle (a
    database restart, a killed backend) shows no error until it is used, and the message
    is already taken, so giving up would leave the run to its lease."""
    try:
        return transitions.start_attempt(run_id, attempt, worker)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        log.warning("run %s: its start met a closed database connection; trying again", run_id)
        connection.close()
        return transitions.start_attempt(run_id, attempt, worker)


def _started_past_its_ttl(run: Run, attempt: int) -> bool:
    """A run not started within its ttl expires (SPEC 5), also when its message waited
    in the broker or a busy worker past it: its first start is undone and it ends
    EXPIRED, never executed. Later attempts and resumes are never too late."""
    ttl_at = run.ttl_expires_at
    if attempt != 1 or getattr(run, "resumed", False) or ttl_at is None or ttl_at > clock.now():
        return False
    if transitions.expire_late_start(run.id, attempt):
        log.info("run %s: started after its ttl had passed; expired instead", run.id)
        waitpoints.runs_finished([run.id])  # a waiting parent resumes with an error
    dispatch.release_and_dispatch(run.id, attempt=attempt, unstarted=True)
    return True


def _hand_back(run: Run, attempt: int) -> None:
    """This worker does not know the task (an older deploy): undo the start and let a
    worker that registers the task pick the run up (``promote_pending_versions``)."""
    transitions.hand_back(run.id, attempt, resumed=getattr(run, "resumed", False))
    log.warning(
        "run %s: task %r is not registered in this worker; waiting for one that has it",
        run.id,
        run.task_identifier,
    )
    dispatch.release_and_dispatch(run.id, attempt=attempt, unstarted=True)


def build_context(run: Run, attempt: int) -> Context:
    """The ``ctx`` the run function and hooks of this attempt receive."""
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
        attempt=AttemptInfo(number=attempt, started_at=clock.now()),
        task=TaskInfo(id=run.task_identifier),
        queue=QueueInfo(name=run.queue),
        environment=run.environment,
        batch=BatchInfo(run.batch_id) if run.batch_id else None,
    )
