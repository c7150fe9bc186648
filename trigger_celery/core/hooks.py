"""Lifecycle hooks (SPEC 3): names, registration, and calling with named arguments.

A hook receives only the keyword arguments it names (``payload``, ``ctx``, ``output``,
``error``, ``signal``, ``task``, ``init``, ``wait``, ``result``...), or all of them when it
takes ``**kwargs``; so ``def on_success(output): ...`` and ``def on_success(ctx, **kw)``
both work. Async hooks are awaited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
from collections.abc import Callable
from typing import Any

from trigger_celery.errors import ConfigurationError

HOOK_NAMES = (
    "on_start_attempt",
    "on_start",
    "init",
    "cleanup",
    "on_wait",
    "on_resume",
    "on_success",
    "on_failure",
    "on_complete",
    "catch_error",
    "on_cancel",
)

Hook = Callable[..., Any]


# The keyword arguments each hook is called with (worker/user_code.py, worker/settle.py).
_COMMON = ("payload", "ctx", "signal", "task", "init")
HOOK_ARGUMENTS: dict[str, frozenset[str]] = {
    **{name: frozenset(_COMMON) for name in ("on_start_attempt", "on_start", "init", "cleanup")},
    "on_wait": frozenset((*_COMMON, "wait")),
    "on_resume": frozenset((*_COMMON, "wait")),
    "on_success": frozenset((*_COMMON, "output")),
    "on_failure": frozenset((*_COMMON, "error")),
    "on_complete": frozenset((*_COMMON, "result", "output", "error")),
    "catch_error": frozenset((*_COMMON, "error", "retry", "retry_at", "retry_delay_in_ms")),
    "on_cancel": frozenset((*_COMMON, "run_finished")),
    "middleware": frozenset(("payload", "ctx", "signal", "task", "next")),
}


def check_hook(name: str, fn: Any) -> Hook:
    """Validate a hook at definition time, so a typo fails at import, not in a worker:
    also a parameter it must be given that the hook is never called with."""
    if name not in HOOK_NAMES and name != "middleware":
        raise ConfigurationError(f"unknown hook {name!r}; known hooks: {', '.join(HOOK_NAMES)}")
    if not callable(fn):
        raise ConfigurationError(f"hook {name} must be callable, got {fn!r}")
    unknown = _unknown_required(fn, HOOK_ARGUMENTS[name])
    if unknown:
        raise ConfigurationError(
            f"hook {name} {getattr(fn, '__qualname__', fn)!r} takes "
            f"{', '.join(repr(p) for p in unknown)}, which {name} is never given; it is "
            f"called with keyword arguments, and takes those it names of: "
            f"{', '.join(sorted(HOOK_ARGUMENTS[name]))}"
        )
    if name == "middleware" and not _can_take(fn, "next"):
        raise ConfigurationError(
            f"middleware {getattr(fn, '__qualname__', fn)!r} takes no 'next' parameter, so "
            "it can never call the rest of the attempt and every run would fail; it is "
            "called as middleware(ctx=..., payload=..., next=..., task=..., signal=...)"
        )
    hook: Hook = fn
    return hook


def _can_take(fn: Any, keyword: str) -> bool:
    """Whether a call may pass ``keyword`` to ``fn`` (True when its signature is unknown)."""
    signature = signature_to_check(fn)
    if signature is None:
        return True
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind is not p.POSITIONAL_ONLY)
        for p in signature.parameters.values()
    )


def middleware_name(name: Any, fn: Hook | None) -> tuple[str, Hook | None]:
    """``(name, fn)`` for ``middleware(name, fn)``, also when it is used as a bare
    decorator (``@tasks.middleware``): the function came as ``name``, and is named by its
    dotted path, as ``MIDDLEWARE`` names it (two ``timing`` functions of two modules are
    two middleware). Any other name that is not a string is refused, naming it."""
    if fn is None and callable(name) and not isinstance(name, str):
        qualname = getattr(name, "__qualname__", None)
        if qualname is None:  # a partial, an instance: nothing names it but itself
            raise ConfigurationError(
                f"middleware {name!r} has no name of its own; register it with one: "
                "tasks.middleware('name', fn)"
            )
        return f"{name.__module__}.{qualname}", name
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"middleware name must be a non-empty string, got {name!r}")
    return name, fn


def signature_to_check(fn: Any) -> inspect.Signature | None:
    """The signature a definition may hold ``fn`` to, or None when there is none to
    hold it to: a builtin without one, or a wrapper taking ``*args``/``**kwargs`` around
    the function it names (``functools.wraps``), which may pass arguments of its own (a
    decorator giving the function a database session, say)."""
    try:
        outer = inspect.signature(fn, follow_wrapped=False)
        inner = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kinds = {p.kind for p in outer.parameters.values()}
    if outer != inner and kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
        return None
    return inner


def _unknown_required(fn: Any, given: frozenset[str]) -> list[str]:
    """Parameters of ``fn`` without a default that a call with keywords from ``given``
    cannot fill (positional-only ones included)."""
    signature = signature_to_check(fn)
    if signature is None:
        return []  # it is called as it is
    params = signature.parameters.values()
    return [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and (p.kind is p.POSITIONAL_ONLY or p.name not in given)
    ]


def call_hook(fn: Hook, **available: Any) -> Any:
    """Call ``fn`` with the subset of ``available`` it accepts; run coroutines to the end."""
    result = fn(**_accepted_kwargs(fn, available))
    if inspect.isawaitable(result):
        result = run_coroutine(result)
    return result


def run_coroutine(awaitable: Any) -> Any:
    """Run an awaitable from sync code, also when called inside a running loop's thread."""
    if not loop_running():
        return _run_loop(awaitable)
    # A loop already runs in this thread (an async run function calling a sync API):
    # run the awaitable on a private loop in a helper thread.
    # The run's context variables (its scope, run_locals) go with it.
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, _run_loop, awaitable).result()


def loop_running() -> bool:
    """Whether an event loop runs in this thread. (Asked without leaving asyncio's
    RuntimeError as the context of whatever the caller raises next.)"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# Called in the thread of an event loop this module ran, once the loop has ended
# (``off_loop.release_helper``: the thread's helper for database work stops).
LOOP_EXIT_CALLBACKS: list[Callable[[], None]] = []


def _run_loop(awaitable: Any) -> Any:
    try:
        return asyncio.run(_as_coroutine(awaitable))
    finally:
        for callback in LOOP_EXIT_CALLBACKS:
            callback()


# thread id -> (its running loop, the task this module runs on it, the stop asked for).
_LOOPS: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any], list[BaseException]]] = {}


async def _as_coroutine(awaitable: Any) -> Any:
    me = threading.get_ident()
    task = asyncio.current_task()
    assert task is not None
    stops: list[BaseException] = []
    _LOOPS[me] = (asyncio.get_running_loop(), task, stops)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if stops:  # stopped from outside (stop_loop): the stop's own error, not a cancel
            raise stops[0] from None
        raise
    finally:
        _LOOPS.pop(me, None)


def stop_loop(thread_id: int, error: BaseException) -> bool:
    """Cancel the coroutine this module runs in ``thread_id`` (an async run function, or
    a hook), so it ends with ``error`` at the ``await`` it waits in; an exception raised
    into the thread would not arrive until that await returns. False if that thread runs
    none."""
    entry = _LOOPS.get(thread_id)
    if entry is None:
        return False
    loop, task, stops = entry
    stops.append(error)
    loop.call_soon_threadsafe(task.cancel)
    return True


def _accepted_kwargs(fn: Hook, available: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return available
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return available
    return {k: v for k, v in available.items() if k in params}


class HookSet:
    """Hooks of one scope (a task, or the global set), in registration order."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {name: [] for name in HOOK_NAMES}
        self.middleware: list[tuple[str, Hook]] = []

    def add(self, name: str, fn: Hook) -> Hook:
        check_hook(name, fn)
        self._hooks[name].append(fn)
        return fn

    def add_middleware(self, name: str, fn: Hook) -> Hook:
        check_hook("middleware", fn)
        self.middleware = [(n, f) for n, f in self.middleware if n != name] + [(name, fn)]
        return fn

    def get(self, name: str) -> list[Hook]:
        return list(self._hooks[name])

    def clear(self) -> None:
        for hooks in self._hooks.values():
            hooks.clear()
        self.middleware.clear()


global_hooks = HookSet()
