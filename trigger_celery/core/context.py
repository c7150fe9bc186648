"""The ``ctx`` a run function receives, the abort signal, and the current-run context."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trigger_celery.errors import OutsideRunError, TriggerFromCanceledRunError

log = logging.getLogger("trigger_celery.run")


class AbortSignal:
    """Set when the run is canceled or passes its max duration.

    Check ``signal.is_set()`` in long loops, or ``signal.wait(timeout)`` instead of
    ``time.sleep``; async code can ``await signal.wait_async()``.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    async def wait_async(self, poll: float = 0.05) -> None:
        while not self._event.is_set():
            await asyncio.sleep(poll)


@dataclass
class RunInfo:
    id: str
    tags: list[str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    parent_id: str | None
    root_id: str | None
    depth: int
    created_at: datetime
    max_attempts: int
    max_duration: int | None
    concurrency_key: str | None


@dataclass(frozen=True)
class AttemptInfo:
    number: int
    started_at: datetime


@dataclass(frozen=True)
class TaskInfo:
    id: str


@dataclass(frozen=True)
class QueueInfo:
    name: str


@dataclass(frozen=True)
class BatchInfo:
    id: str


@dataclass
class Context:
    """What a run knows about itself: ``ctx.run.id``, ``ctx.attempt.number``, ..."""

    run: RunInfo
    attempt: AttemptInfo
    task: TaskInfo
    queue: QueueInfo
    environment: str
    batch: BatchInfo | None
    signal: AbortSignal = field(default_factory=AbortSignal)
    init: Any = None


@dataclass
class RunScope:
    """Per-attempt state shared by the APIs usable inside a run."""

    ctx: Context
    locals: dict[int, Any] = field(default_factory=dict)
    step: int = 0  # next wait step (replay of waits, SPEC 7)
    # Where the run executes: the children it waits on may start in this process next.
    machine: str = ""
    region: str = ""
    # The run's first execution (attempt 1, not resumed from a wait): no wait step has a
    # row yet, except those this execution writes itself, so none needs to be read.
    fresh: bool = False
    # This execution continues an attempt that suspended in a wait (the same attempt).
    resumed: bool = False
    # Where the code runs when a wait there is refused ("" while waits are allowed): the
    # hooks after the run function (the attempt has ended), on_start and on_resume (they
    # do not run on every execution, so their waits would shift the replay's steps).
    waits_closed: str = ""
    # Triggers made here have no parent: the on_cancel hooks' scope. Their run is being
    # canceled, and a child of it would be canceled with it (a refund, a notification).
    detached: bool = False
    # The first suspension a wait of this execution raised: a run function that caught
    # it (a bare ``except:``) and went on still suspends there (``worker.user_code``).
    suspension: BaseException | None = None
    # The first ReplayMismatchError a wait of this execution raised: once the code has
    # taken another path than the one recorded, a later wait is refused with it too
    # (it could be given the recorded result of another step), also when the code
    # caught it and went on.
    mismatch: BaseException | None = None
    # Seconds of short waits spent in place (``wait.for_`` of 2 s or less): waiting, not
    # compute time, so the monitor moves the ``max_duration`` deadline by them (SPEC 6).
    waited_in_place: float = 0.0


_current: contextvars.ContextVar[RunScope | None] = contextvars.ContextVar(
    "trigger_celery_run", default=None
)


def current_scope(api: str, *, where: str = "a task's run function or its hooks") -> RunScope:
    """The scope of the run executing here; a clear error when called outside a run.

    ``where`` says where ``api`` may be called (waits: only in the run function)."""
    scope = _current.get()
    if scope is None:
        raise OutsideRunError(f"{api} can only be used inside a run ({where})")
    return scope


def optional_scope() -> RunScope | None:
    return _current.get()


def parent_scope(what: str) -> RunScope | None:
    """The run a trigger made here is the child of (None outside a run), asked before the
    trigger writes anything: every trigger form learns its parent here.

    A canceled run may ignore its stop and run on in its grace period; a child it
    triggered then would outlive it until something canceled it, and a pool process ended
    a moment after that child committed would leave it running. So a run whose signal
    says "canceled" triggers nothing: :class:`TriggerFromCanceledRunError` (a
    ``RunCanceledError``, so the attempt ends as the cancel it follows). A signal set for
    ``max_duration`` or a lost lease refuses nothing. An ``on_cancel`` hook's triggers
    are allowed, and have no parent (``RunScope.detached``)."""
    scope = _current.get()
    if scope is not None and scope.detached:
        return None
    if scope is not None and scope.ctx.signal.reason == "canceled":
        refused = TriggerFromCanceledRunError(scope.ctx.run.id, what)
        log.warning("%s", refused)
        raise refused
    return scope


def scope_in(context: contextvars.Context) -> RunScope | None:
    """The run scope of ``context`` (another thread's copy, as the monitor holds)."""
    return context.get(_current)


def enter(scope: RunScope) -> contextvars.Token[RunScope | None]:
    return _current.set(scope)


def leave(token: contextvars.Token[RunScope | None]) -> None:
    _current.reset(token)
