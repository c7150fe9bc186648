"""The run-time API from an ``async def`` run function: database work off the event loop.

An async run function runs on an event loop in the attempt's thread (``core.hooks``).
Django refuses database work in a thread whose event loop is running
(``SynchronousOnlyOperation``), yet ``metadata.set``, ``logger.info``, ``trigger``,
``trigger_and_wait``, ``wait.for_`` and the other calls a run makes are plain blocking
calls. Each of them is wrapped with :func:`off_event_loop`: called with no loop running,
it runs as it is; called from a running loop, it runs in the thread's helper thread (one
per thread, started on first use, with its own database connection) while the caller
waits, as the user wrote it. The run's context variables go with it.

When the loop ends (``core.hooks.run_coroutine``), the helper closes its connections and
stops (:func:`release_helper`, registered in ``core.hooks.LOOP_EXIT_CALLBACKS``).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections

from trigger_celery.core import hooks

F = TypeVar("F", bound=Callable[..., Any])

_local = threading.local()


def off_event_loop(fn: F) -> F:
    """``fn`` as is, or, in a thread whose event loop runs, in that thread's helper."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not hooks.loop_running():
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return _helper().submit(context.run, fn, *args, **kwargs).result()

    return call  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def off_event_loop_methods(cls: C) -> C:
    """:func:`off_event_loop` on every public method of an API class (not on generators:
    a generator's body runs where it is iterated)."""
    for name, value in list(vars(cls).items()):
        if (
            not name.startswith("_")
            and inspect.isfunction(value)
            and not inspect.isgeneratorfunction(value)
        ):
            setattr(cls, name, off_event_loop(value))
    return cls


def _helper() -> concurrent.futures.ThreadPoolExecutor:
    helper: concurrent.futures.ThreadPoolExecutor | None = getattr(_local, "helper", None)
    if helper is None:
        helper = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="trigger-celery-off-loop"
        )
        _local.helper = helper
    return helper


def release_helper() -> None:
    """Stop this thread's helper, if it has one, closing its database connections."""
    helper: concurrent.futures.ThreadPoolExecutor | None = getattr(_local, "helper", None)
    if helper is None:
        return
    _local.helper = None
    try:
        helper.submit(connections.close_all).result()
    finally:
        helper.shutdown(wait=True)


hooks.LOOP_EXIT_CALLBACKS.append(release_helper)
