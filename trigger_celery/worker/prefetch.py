"""Runs reserved by a busy worker go back to their queue instead of holding its slot.

On a Redis broker the worker reserves runs only for free processes (Celery's
``worker_disable_prefetch``, turned on here unless the project's settings choose).

A Celery worker reserves messages ahead of its pool (prefetch). A run reserved by a
worker whose processes are all busy (with a long run, or with a task of the project's
own that acked early) holds its queue's slot while nothing executes it; a limit-1 queue
would stall until the lease ran out, and the run would then be sent again and again.

The worker's main process therefore watches the ``execute_run`` messages it reserves.
One that no pool process accepted within :data:`HOLD_SECONDS` is handed back
(``dispatch.return_unstarted``): the run is QUEUED again under the same attempt number,
its slot is released, and it is dispatched to a worker that can start it. The copy left
in the buffer is fenced like any duplicate: whichever copy starts first runs the
attempt, the other is ignored as stale. A busy worker keeps at most its prefetch count
of such copies, so a run is sent again only while a free worker takes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from celery import signals
from django.conf import settings as django_settings

from trigger_celery.db import heal_connections
from trigger_celery.engine import dispatch

log = logging.getLogger("trigger_celery.worker")

HOLD_SECONDS = 1.0

_reserved: deque[tuple[float, Any]] = deque()
_wake = threading.Condition()
_thread: threading.Thread | None = None
_notes: list[str] = []  # said once the worker's logging is set up


def on_task_received(request: Any = None, **_: Any) -> None:
    """Celery's ``task_received``, in the worker's main process: note the reservation."""
    if request is None or request.name != dispatch.EXECUTE_RUN:
        return
    with _wake:
        _reserved.append((time.monotonic() + HOLD_SECONDS, request))
        _wake.notify()
    _ensure_thread()


def _ensure_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_watch, name="trigger-prefetch", daemon=True)
        _thread.start()


def _watch() -> None:
    while True:
        with _wake:
            while not _reserved:
                _wake.wait()
            due, request = _reserved[0]
            wait = due - time.monotonic()
            if wait > 0:
                _wake.wait(wait)
                continue
            _reserved.popleft()
        if _waiting_in_buffer(request):
            _hand_back(request)


def _waiting_in_buffer(request: Any) -> bool:
    """Reserved, and not started by a pool process, finished, revoked or rejected."""
    return (
        request.time_start is None
        and not request.acknowledged
        and not getattr(request, "_already_revoked", False)
    )


def _hand_back(request: Any) -> None:
    try:
        kwargs = request.kwargs
        run_id, attempt = kwargs["run_id"], int(kwargs["attempt"])
        heal_connections()
        if dispatch.return_unstarted(run_id, attempt):
            log.info(
                "run %s attempt %d waited %.1fs in this busy worker's prefetch buffer; "
                "handed back to its queue",
                run_id,
                attempt,
                HOLD_SECONDS,
            )
    except Exception:
        log.warning("could not hand back a reserved run; its lease will expire", exc_info=True)


def limit_prefetch(app: Any, pool: Any = None) -> bool:
    """On a Redis broker, reserve messages only for free pool processes.

    This is Celery's ``worker_disable_prefetch``, turned on unless the project's
    settings choose (``CELERY_WORKER_DISABLE_PREFETCH``). Other brokers prefetch by
    ``worker_prefetch_multiplier`` (check W006 asks for 1); the hand-back above covers
    what they reserve. Not under the gevent pool (``pool``: the worker's ``-P``), where
    the option makes Celery reserve nothing. Returns whether it turned the option on.
    """
    if _counts_busy_workers(pool):
        # Celery's gevent pool counts its busy greenlets as its processes: with the
        # option on, an idle worker has room for none and never reserves a message.
        if app.conf.worker_disable_prefetch:
            app.conf.worker_disable_prefetch = False
            _notes.append(
                "trigger_celery: worker_disable_prefetch turned off: under the gevent pool "
                "Celery would reserve no message at all (runs reserved by a busy worker are "
                "handed back after 1 s instead)"
            )
        return False
    if hasattr(django_settings, "CELERY_WORKER_DISABLE_PREFETCH"):
        return False
    try:
        driver = app.connection_for_read().transport.driver_type
    except Exception:  # an unknown transport: leave Celery's settings alone
        return False
    if driver != "redis" or app.conf.worker_disable_prefetch:
        return False
    app.conf.worker_disable_prefetch = True
    return True


def _counts_busy_workers(pool: Any) -> bool:
    """Whether ``pool`` (a name or a class, as the worker was given it) is Celery's
    gevent pool, whose ``num_processes`` is its number of busy greenlets."""
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    return "gevent" in name


def on_worker_init(sender: Any = None, **_: Any) -> None:
    if sender is not None and hasattr(sender, "app"):
        limit_prefetch(sender.app, getattr(sender, "pool_cls", None))


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    # Logged here: at worker_init Celery's logging is not set up yet.
    while _notes:
        log.warning(_notes.pop(0))
    if sender is not None and sender.app.conf.worker_disable_prefetch:
        log.info(
            "trigger_celery: worker_disable_prefetch on; runs are reserved only for free processes"
        )


def connect() -> None:
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tc_prefetch_log")
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tc_prefetch_limit")
    signals.task_received.connect(on_task_received, weak=False, dispatch_uid="tc_prefetch")
