"""How the monitor stops an attempt from outside it: an exception raised in the thread
that runs it, or thrown into its greenlet under Celery's gevent pool; and whether this
process is a prefork pool child, the one kind of process it may end for an attempt."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

from billiard.process import current_process


def raise_in_thread(thread_id: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in another thread at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def current_greenlet() -> Any:
    """The greenlet running this code when gevent has patched ``threading`` (Celery's
    gevent pool), else None: there, every attempt of the process shares one thread."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    return sys.modules["gevent"].getcurrent()


def throw_in_greenlet(greenlet: Any, exc: type[BaseException], ended: Callable[[], bool]) -> None:
    """Throw ``exc`` into ``greenlet`` where it waits (a patched sleep, socket or lock),
    from the hub, unless its attempt has ``ended`` by then."""

    def throw() -> None:
        if not ended() and not greenlet.dead:
            greenlet.throw(exc)

    sys.modules["gevent"].get_hub().loop.run_callback(throw)


def is_pool_child() -> bool:
    """Whether this process is a child of Celery's prefork pool."""
    try:
        return (
            current_process()._config.get("semprefix") is not None
            and current_process().name != "MainProcess"
        )
    except Exception:
        return False
