"""``retry.on_throw``: retry a block inside a run with the task retry policy's shape.

>>> charge = retry.on_throw(lambda: stripe.charge(order), max_attempts=5)
>>> @retry.on_throw(max_attempts=3, min_timeout_in_ms=200)
... def fetch(): ...
>>> for attempt in retry.on_throw(max_attempts=3):   # a block (``async for`` too)
...     with attempt:
...         charge = stripe.charge(order)

A plain ``with retry.on_throw(...)`` cannot be: a ``with`` statement runs its block once.

Unlike a run's own retries, these waits happen in the worker (like a loop with
``time.sleep``): use them for short, local retries; long backoffs belong to the run's
retry policy, which gives the worker back while it waits.

A block is not tried again once its run is told to stop (canceled, past its
``max_duration``, its lease lost: the stop's error and ``ctx.signal``), when it raises
``AbortTaskRunError``, or an error that came out of a replayed wait step that differed
from its record (``ReplayMismatchError``, also raised from or grouped with another;
each try would take the next step): the error goes on at once, as it would without
the block. So do the errors a run is never retried for because another try gives the
same answer: a child's payload that is not JSON (``SerializationError``) or over the
size limit (``PayloadTooLargeError``). (A child's payload its schema refuses raises the
schema's own error, which the block cannot tell from a passing one: it is tried again.)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from trigger_celery.core import context as run_context
from trigger_celery.core.decisions import NEVER_RETRIED, aborted_in_group, mismatch_in
from trigger_celery.core.retry import RetryPolicy, next_delay_ms
from trigger_celery.errors import LeaseLostError, MaxDurationExceededError, RunCanceledError

T = TypeVar("T")

# Errors after which a block is never tried again: the run must stop, or fail at once,
# or another try is bound to fail the same way (the errors a run is never retried for).
ENDS_THE_RUN: tuple[type[BaseException], ...] = (
    RunCanceledError,
    MaxDurationExceededError,
    LeaseLostError,
    *NEVER_RETRIED,
)


def _delay_before_next_try(policy: RetryPolicy, attempt: int, error: Exception) -> int | None:
    """Milliseconds before the next try of a block that raised ``error``; None when there
    is none: the policy has no try left, the error ends the run, or the run's abort
    signal is set."""
    if isinstance(error, ENDS_THE_RUN) or _stopping():
        return None
    if aborted_in_group(error) or mismatch_in(error) is not None:  # wrapped, as final
        return None
    return next_delay_ms(policy, attempt)


def _stopping() -> bool:
    scope = run_context.optional_scope()
    return scope is not None and scope.ctx.signal.is_set()


def _pause(seconds: float) -> None:
    """Sleep between tries; inside a run, the run's abort signal ends the pause early."""
    scope = run_context.optional_scope()
    if scope is None:
        time.sleep(seconds)
    else:
        scope.ctx.signal.wait(seconds)


async def _pause_async(seconds: float) -> None:
    """``_pause`` for async code: the run's abort signal ends it early here too, so a
    canceled run does not sit out the rest of a long backoff before it stops."""
    scope = run_context.optional_scope()
    if scope is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(scope.ctx.signal.wait_async(), seconds)
    except TimeoutError:
        pass


class RetryAPI:
    def on_throw(self, fn: Callable[[], Any] | None = None, /, **policy: Any) -> Any:
        """Call ``fn`` until it returns, retrying on exceptions per ``policy``.

        Without ``fn``, returns a decorator. Async functions are awaited.
        """
        parsed = RetryPolicy.from_value(policy or None)
        if fn is None:
            return Retrying(self, parsed)
        return self._call(fn, parsed)

    def _decorate(self, fn: Callable[..., Any], policy: RetryPolicy) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self._call_async(lambda: fn(*args, **kwargs), policy)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self._call(lambda: fn(*args, **kwargs), policy)

        return wrapper

    def _call(self, fn: Callable[[], Any], policy: RetryPolicy) -> Any:
        if inspect.iscoroutinefunction(fn):
            return self._call_async(fn, policy)
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as error:
                delay = _delay_before_next_try(policy, attempt, error)
                if delay is None:
                    raise
                _pause(delay / 1000)
                if _stopping():
                    raise
                attempt += 1

    async def _call_async(self, fn: Callable[[], Any], policy: RetryPolicy) -> Any:
        attempt = 1
        while True:
            try:
                return await fn()
            except Exception as error:
                delay = _delay_before_next_try(policy, attempt, error)
                if delay is None:
                    raise
                await _pause_async(delay / 1000)
                if _stopping():
                    raise
                attempt += 1


class Attempt:
    """One try of a block (``with attempt:``): an exception in it is kept, not raised,
    until the policy says no more tries are left."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.error: Exception | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        if isinstance(error, Exception) and not isinstance(error, ENDS_THE_RUN):
            self.error = error
            return True
        return False


class Retrying:
    """What ``retry.on_throw(**policy)`` returns: a decorator, and the tries of a block
    (``for attempt in ...: with attempt: ...``, or ``async for``)."""

    def __init__(self, api: RetryAPI, policy: RetryPolicy) -> None:
        self._api, self._policy = api, policy

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._api._decorate(fn, self._policy)

    def __iter__(self) -> Iterator[Attempt]:
        number = 1
        while True:
            attempt = Attempt(number)
            yield attempt
            if (seconds := self._pause_after(attempt)) is None:
                return
            _pause(seconds)
            self._raise_if_stopping(attempt)
            number += 1

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        number = 1
        while True:
            attempt = Attempt(number)
            yield attempt
            if (seconds := self._pause_after(attempt)) is None:
                return
            await _pause_async(seconds)
            self._raise_if_stopping(attempt)
            number += 1

    def _pause_after(self, attempt: Attempt) -> float | None:
        """Seconds before the next try; None once the block passed. Raises the block's
        error when the policy leaves no try."""
        if attempt.error is None:
            return None
        delay = _delay_before_next_try(self._policy, attempt.number, attempt.error)
        if delay is None:
            raise attempt.error
        return delay / 1000

    @staticmethod
    def _raise_if_stopping(attempt: Attempt) -> None:
        if attempt.error is not None and _stopping():
            raise attempt.error

    def __enter__(self) -> None:
        raise TypeError(
            "retry.on_throw(...) cannot retry a plain `with` block (Python runs it once); "
            "write `for attempt in retry.on_throw(...):` and `with attempt:` inside it"
        )

    def __exit__(self, *exc: object) -> None:  # never reached: __enter__ raised
        return None


retry = RetryAPI()
