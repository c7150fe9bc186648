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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from trigger_celery.core.retry import RetryPolicy, next_delay_ms

T = TypeVar("T")


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
            except Exception:
                delay = next_delay_ms(policy, attempt)
                if delay is None:
                    raise
                time.sleep(delay / 1000)
                attempt += 1

    async def _call_async(self, fn: Callable[[], Any], policy: RetryPolicy) -> Any:
        attempt = 1
        while True:
            try:
                return await fn()
            except Exception:
                delay = next_delay_ms(policy, attempt)
                if delay is None:
                    raise
                await asyncio.sleep(delay / 1000)
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
        if isinstance(error, Exception):
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
            time.sleep(seconds)
            number += 1

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        number = 1
        while True:
            attempt = Attempt(number)
            yield attempt
            if (seconds := self._pause_after(attempt)) is None:
                return
            await asyncio.sleep(seconds)
            number += 1

    def _pause_after(self, attempt: Attempt) -> float | None:
        """Seconds before the next try; None once the block passed. Raises the block's
        error when the policy leaves no try."""
        if attempt.error is None:
            return None
        delay = next_delay_ms(self._policy, attempt.number)
        if delay is None:
            raise attempt.error
        return delay / 1000

    def __enter__(self) -> None:
        raise TypeError(
            "retry.on_throw(...) cannot retry a plain `with` block (Python runs it once); "
            "write `for attempt in retry.on_throw(...):` and `with attempt:` inside it"
        )

    def __exit__(self, *exc: object) -> None:  # never reached: __enter__ raised
        return None


retry = RetryAPI()
