"""``retry.on_throw``: retry a block inside a run with the task retry policy's shape.

>>> charge = retry.on_throw(lambda: stripe.charge(order), max_attempts=5)
>>> @retry.on_throw(max_attempts=3, min_timeout_in_ms=200)
... def fetch(): ...

Unlike a run's own retries, these waits happen in the worker (like a loop with
``time.sleep``): use them for short, local retries; long backoffs belong to the run's
retry policy, which gives the worker back while it waits.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
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
            return lambda f: self._decorate(f, parsed)
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


retry = RetryAPI()
