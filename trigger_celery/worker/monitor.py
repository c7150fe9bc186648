"""One thread per worker process that watches the attempts executing there.

It keeps their slot leases alive (heartbeats), notices cancel requests and passed
``max_duration`` deadlines, sets the run's abort signal, runs ``on_cancel`` hooks, and
then stops the attempt. Stopping works on every pool: the exception is raised inside
the thread running the attempt (prefork, threads and solo alike); a run function stuck
in a blocking C call that ignores it is, on a prefork pool child, ended by exiting the
child as Celery's hard time limit would, after its final status was written.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, close_old_connections, connections

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import log_failure
from trigger_celery.core.context import scope_in
from trigger_celery.core.hooks import stop_loop
from trigger_celery.core.statuses import RunStatus
from trigger_celery.errors import LeaseLostError, MaxDurationExceededError, RunCanceledError
from trigger_celery.models import Run
from trigger_celery.worker import abandon, log_fields
from trigger_celery.worker.cancel_hooks import call_cancel_hooks
from trigger_celery.worker.interrupts import (
    current_greenlet,
    is_pool_child,
    raise_in_thread,
    throw_in_greenlet,
    wake_from_blocking_call,
)
from trigger_celery.worker.user_code import running_thread

log = logging.getLogger("trigger_celery.monitor")

TICK = 0.1
CANCEL_POLL_SECONDS = 0.5
ON_CANCEL_GRACE_SECONDS = 30.0
COOPERATIVE_GRACE_SECONDS = 1.0  # after the signal, before the attempt is interrupted
HARD_GRACE_SECONDS = 5.0  # after the interrupt, before a prefork child exits


@dataclass
class Watched:
    run_id: str
    attempt: int
    thread_id: int
    ctx: Any
    definition: Any
    deadline: float | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # "canceled" | "max_duration" | "lease_lost"
    queue: str = ""
    concurrency_key: str | None = None
    interrupt_at: float | None = None
    interrupted_at: float | None = None
    beaten: bool = False  # the monitor has renewed its lease at least once
    abandoned: bool = False  # it ignored its stop, in a pool that cannot end it
    # The cancel of a given-up attempt's late children, on a thread of its own (``_swept``).
    sweeper: threading.Thread | None = None
    swept: bool = False
    sweep_again_at: float = 0.0  # time.monotonic; a failed cancel waits before its next try
    # When its lease was last known to be held (time.monotonic, which runs on while the
    # process is frozen): see ``after_return``.
    renewed_at: float = field(default_factory=time.monotonic)
    payload: Any = None  # as stored: the on_cancel hooks get it like every hook (SPEC 3)
    # Under Celery's gevent pool, the greenlet running the attempt (made where the
    # attempt is watched): a stop is thrown into it, as a thread's is raised in it.
    greenlet: Any = field(default_factory=lambda: current_greenlet())
    # The attempt thread's context (its run scope), made where the attempt is watched:
    # the on_cancel hooks run in it, so logger, metadata and tags know their run.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    span: Any = None  # the attempt's span, ended here if the process must exit

    def hold_span(self, span: Any) -> None:
        self.span = span

    def claim(self, lease_expires_at: float) -> Claim:
        return Claim(self.run_id, self.queue, self.concurrency_key, lease_expires_at, self.attempt)


def claim_stop(w: Watched, reason: str, *, running: bool = True) -> bool:
    """Make ``reason`` the attempt's stop and set its signal, unless it has a stop
    already (or, ``running``, its code has returned): one stop, whichever thread comes
    first (the monitor's passes, or the attempt's own when it returns late)."""
    with w.lock:
        if w.reason is not None or (running and w.done):
            return False
        w.reason = reason
    w.ctx.signal.set(reason)
    return True


def _deadline(w: Watched) -> float:
    """The attempt's ``max_duration`` deadline, moved by its short waits spent in place."""
    scope = scope_in(w.context)
    return (w.deadline or 0.0) + (scope.waited_in_place if scope is not None else 0.0)


class AttemptMonitor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[str, Watched] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._used_database = False  # by the loop's thread, since it was last idle
        self._stopped = threading.Event()  # a test's own monitor ends its thread

    def watch(self, w: Watched) -> None:
        # The first heartbeat is the loop's, on its next tick (a lease may have run low
        # while the message waited in a prefetch buffer): an attempt that ends sooner
        # needs none, and the attempt's own thread never waits for one.
        with self._lock:
            self._watched[w.run_id] = w
            # A forked pool child inherits this object but not the thread.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._watched = {w.run_id: w}
                self._thread = threading.Thread(
                    target=self._loop, name="trigger-monitor", daemon=True
                )
                self._thread.start()

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            self._watched.pop(run_id, None)

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        last_beat = last_poll = time.monotonic()
        while not self._stopped.wait(TICK):
            now = time.monotonic()
            with self._lock:
                watched = list(self._watched.values())
            if not watched:
                # Idle: no connection of this thread's outlives the attempts that needed
                # it (a test database could not be dropped under it).
                if self._used_database:
                    self._used_database = False
                    connections.close_all()
                continue
            # Each step on its own: a store that stalls (a heartbeat waits out its socket
            # timeout, then fails) must not keep the cancels, in the database, from being
            # polled, nor the deadlines from being enforced.
            try:
                settings = get_settings()
            except Exception:
                log_failure(log, "attempt monitor: the settings")
                continue
            if now - last_beat >= settings.HEARTBEAT_SECONDS:
                self._step(self._heartbeat, watched, settings.LEASE_SECONDS)
                last_beat = time.monotonic()  # after a stalled one, the next in full
            elif fresh := [w for w in watched if not (w.beaten or w.done)]:
                self._step(self._heartbeat, fresh, settings.LEASE_SECONDS)
            now = time.monotonic()
            if now - last_poll >= CANCEL_POLL_SECONDS:
                last_poll = now
                self._step(self._poll_cancels, watched)
            self._step(self._deadlines, watched, now)

    def _step(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            log_failure(log, "attempt monitor pass failed")

    def _deadlines(self, watched: list[Watched], now: float) -> None:
        for w in watched:  # each on its own: one that fails does not hold the others up
            try:
                if w.deadline is not None and now >= _deadline(w) and claim_stop(w, "max_duration"):
                    w.interrupt_at = now + COOPERATIVE_GRACE_SECONDS
                self._enforce(w, now)
            except Exception:
                log_failure(log, "attempt monitor: run %s's deadline", w.run_id)

    def _heartbeat(self, watched: list[Watched], lease_seconds: float) -> None:
        """Extend every lease. An attempt whose lease is gone is looked up: it is stopped
        as canceled if its run was canceled, as lost if its run moved on (the reaper
        retried it), and holds its slot again if the run is still its own."""
        store = get_store()
        gone = []
        for w in watched:
            w.beaten = True
            if store.heartbeat(w.run_id, None, lease_seconds, attempt=w.attempt):
                w.renewed_at = time.monotonic()
                continue
            if not (w.reason or w.done):
                gone.append(w)
            elif w.reason != "lease_lost":
                self._hold_while_stopping(w, store, lease_seconds)
        if gone:
            self._check_rows(gone, lease_seconds=lease_seconds)

    def _hold_while_stopping(self, w: Watched, store: Any, lease_seconds: float) -> None:
        """A stopped attempt whose code still runs (a cancel's grace, or code its pool
        cannot end) uses its slot until it returns: when the store has forgotten that
        slot (flushed, restarted), it holds it again, as a running attempt does. One
        that has returned is settling and gives the slot back itself."""
        with w.lock:
            if w.done:
                return
            store.adopt(w.claim(store.time() + lease_seconds))
        w.renewed_at = time.monotonic()

    def _poll_cancels(self, watched: list[Watched]) -> None:
        """One query for every attempt still running here: was its run canceled, or
        taken over by another attempt (the reaper retried it while this one was frozen)?"""
        pending = [w for w in watched if w.reason is None and not w.done]
        if pending:
            self._check_rows(pending)

    def _check_rows(self, watched: list[Watched], *, lease_seconds: float | None = None) -> None:
        """Act on the rows of ``watched``: a canceled run gets its signal and its
        ``on_cancel`` hooks, whatever else happened to its slot; a run another attempt
        took over is stopped. With ``lease_seconds`` (the store has forgotten their
        slots), a run still executing this attempt holds its slot again."""
        close_old_connections()
        self._used_database = True
        rows = {
            run_id: (status, attempt, cancel_at)
            for run_id, status, attempt, cancel_at in Run.objects.filter(
                id__in=[w.run_id for w in watched]
            ).values_list("id", "status", "attempt_count", "cancel_requested_at")
        }
        store = get_store()
        for w in watched:
            status, attempt, cancel_at = rows.get(w.run_id, (None, None, None))
            if w.reason is not None or w.done:
                continue
            if cancel_at is not None:
                if not claim_stop(w, "canceled"):
                    continue  # it returned meanwhile: its settle sees the cancel
                w.interrupt_at = time.monotonic() + ON_CANCEL_GRACE_SECONDS
                hooks = threading.Thread(target=w.context.run, args=(self._on_cancel, w))
                hooks.daemon = True
                hooks.start()
            elif (status, attempt) != (RunStatus.EXECUTING, w.attempt):
                self._lost(w)
            elif lease_seconds is not None:
                # Still ours (the store forgot it, or the reaper is mid-way): hold it again.
                store.adopt(w.claim(store.time() + lease_seconds))
                w.renewed_at = time.monotonic()

    def after_return(self, w: Watched) -> str | None:
        """What became of the run of an attempt that just returned, when its lease was
        last renewed over half a lease ago (the process was frozen, or a stalled store
        held the passes up), so the monitor may not have seen it: "moved on" when the
        reaper gave it to another attempt (nothing is settled), "canceled" when it was
        canceled in this attempt and the cancel never reached it (now the attempt's stop
        reason: its on_cancel hooks are the caller's to run); None otherwise, or when
        the lease was fresh (nothing is asked)."""
        lease = get_settings().LEASE_SECONDS
        if w.reason is not None or time.monotonic() - w.renewed_at < lease / 2:
            return None
        try:
            row = Run.objects.filter(id=w.run_id).values_list("status", "attempt_count").first()
        except DatabaseError:  # unreachable too: the settle's fenced writes wait and decide
            return None
        if row == (RunStatus.EXECUTING, w.attempt):
            return None
        if row == (RunStatus.CANCELED, w.attempt):
            return "canceled" if claim_stop(w, "canceled", running=False) else None
        log.warning(
            "run %s attempt %d ended after its run moved on (%s); not settled",
            w.run_id,
            w.attempt,
            row[0] if row else "deleted",
            extra=log_fields.of(w.run_id, w.definition.id, w.attempt),
        )
        return "moved on"

    def _lost(self, w: Watched) -> None:
        log.warning(
            "run %s attempt %d lost its lease; stopping it",
            w.run_id,
            w.attempt,
            extra=log_fields.of(w.run_id, w.definition.id, w.attempt),
        )
        w.reason = "lease_lost"
        w.ctx.signal.set("lease_lost")
        w.interrupt_at = time.monotonic() + COOPERATIVE_GRACE_SECONDS

    def _on_cancel(self, w: Watched) -> None:
        try:
            call_cancel_hooks(w.definition, w.ctx, w.finished, payload=w.payload)
        finally:
            # Hooks done (or given up on): stop the attempt now, unless it ended already.
            w.interrupt_at = min(w.interrupt_at or 0, time.monotonic())

    def _enforce(self, w: Watched, now: float) -> None:
        if w.interrupt_at is None or now < w.interrupt_at:
            return
        exc = STOPS[w.reason or "canceled"]
        if w.interrupted_at is None:
            with w.lock:
                if w.done:
                    return
                w.interrupted_at = now
                target = running_thread(w.thread_id)
                if stop_loop(target, exc()):  # an async run waits at an await
                    pass
                elif w.greenlet is not None:
                    throw_in_greenlet(w.greenlet, exc, lambda: w.done)
                else:
                    raise_in_thread(target, exc)
                    wake_from_blocking_call(target)
            return
        if now - w.interrupted_at < HARD_GRACE_SECONDS or w.abandoned:
            return
        with w.lock:
            if w.done:
                # Its code returned; it is settling (hooks, the final write), which ends
                # the run itself: neither end its process nor write over its outcome.
                return
        if is_pool_child():
            log.error(
                "run %s ignored its stop for %.0fs; ending this pool process",
                w.run_id,
                HARD_GRACE_SECONDS,
                extra=log_fields.of(w.run_id, w.definition.id, w.attempt),
            )
            try:
                abandon.stop_unresponsive_attempt(w, exc)
            finally:  # its writes failing (the database down) must not keep it alive
                os._exit(1)
        # Threads, solo, gevent: the attempt shares its process with others, which
        # cannot be ended for it. The run ends now all the same; its code goes on until
        # its blocking call returns, so its slot stays held until then (``settle``).
        if exc is MaxDurationExceededError:
            abandon.end_timed_out(w)
        elif exc is RunCanceledError and not self._swept(w):
            return  # under way, or tried again: its heartbeat keeps the lease from the reaper
        w.abandoned = True  # so far: its settle cancels the later ones
        log.error(
            "run %s ignored its stop for %.0fs and this pool cannot end it: the run is "
            "ended (%s), its slot is held until its code returns",
            w.run_id,
            HARD_GRACE_SECONDS,
            w.reason,
            extra=log_fields.of(w.run_id, w.definition.id, w.attempt),
        )

    def _swept(self, w: Watched) -> bool:
        """Whether the late children of a canceled attempt this pool gives up on are
        canceled. The cancel runs on a short-lived thread, not this one: a run with many
        late children, or a slow database, must not stop the heartbeats of every other
        attempt of the process past their leases. A try that failed is started again on
        a later tick (a prefork child cancels them inline: its process is ending)."""
        if w.swept:
            return True
        idle = w.sweeper is None or not w.sweeper.is_alive()
        if idle and time.monotonic() >= w.sweep_again_at:
            w.sweeper = threading.Thread(
                target=_sweep, args=(w,), name="trigger-late-children", daemon=True
            )
            w.sweeper.start()
        return False


SWEEP_RETRY_SECONDS = 2.0  # a database that is down is not asked every tick


def _sweep(w: Watched) -> None:
    try:
        w.swept = abandon.cancel_late_children(w, retried=True)
        if not w.swept:
            w.sweep_again_at = time.monotonic() + SWEEP_RETRY_SECONDS
    finally:
        connections.close_all()  # this thread's own: it ends here


# What the attempt's thread is interrupted with, by reason.
STOPS: dict[str, type[BaseException]] = {
    "canceled": RunCanceledError,
    "max_duration": MaxDurationExceededError,
    "lease_lost": LeaseLostError,
}


monitor = AttemptMonitor()
