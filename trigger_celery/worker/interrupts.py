"""How the monitor stops an attempt from outside it: an exception raised in the thread
that runs it (and, in a prefork pool child, a signal that wakes that thread from a
blocking call), or thrown into its greenlet under Celery's gevent pool; and whether this
process is a prefork pool child, the one kind of process it may end for an attempt."""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from billiard.process import current_process


def raise_in_thread(thread_id: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in another thread at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


# The signal that wakes a pool child's main thread from a blocking call: ignored by
# default, used by no pool, and never sent to these processes by anything else.
WAKE_SIGNAL = signal.SIGURG
_wake_installed = False


def _woken(signum: int, frame: Any) -> None:
    """Nothing: the stop raised in the thread comes out of this handler's frame."""


def install_wake_handler() -> None:
    """In a prefork pool child (its main thread runs the attempts): a handler for
    ``WAKE_SIGNAL``, unless the project set one of its own."""
    global _wake_installed
    if not is_pool_child():  # solo sends worker_process_init too: its main thread is
        return  # the worker's own, left as it was
    if signal.getsignal(WAKE_SIGNAL) in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.signal(WAKE_SIGNAL, _woken)
        _wake_installed = True


def wake_from_blocking_call(thread_id: int) -> None:
    """After :func:`raise_in_thread`: a thread in a blocking call (``time.sleep``, a
    socket read with no timeout) runs no Python instruction until it returns, so the
    stop waited for it, and a prefork child was ended without its hooks. A signal makes
    the call return (PEP 475 runs the handler first), and the stop is raised there. Only
    the main thread runs Python signal handlers, so only it can be woken this way."""
    if _wake_installed and thread_id == threading.main_thread().ident:
        signal.pthread_kill(thread_id, WAKE_SIGNAL)


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
