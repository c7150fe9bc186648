"""Retry policy and backoff (SPEC 2).

After attempt ``n`` fails (1-based; none once ``n >= max_attempts``) the next attempt
waits ``round(min(max_timeout, r * min_timeout * factor ** (n - 1)))`` ms, with ``r``
uniform in [1, 2) when ``randomize`` and 1 otherwise; the cap applies after the jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from trigger_celery.core.durations import MAX_SECONDS

MAX_ATTEMPTS_CAP = 250
# The longest wait between attempts: 10 years, the cap of every duration option
# (``core.durations.MAX_SECONDS``). A longer one would overflow the retry's date.
MAX_TIMEOUT_MS = MAX_SECONDS * 1000


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    factor: float = 2.0
    min_timeout_in_ms: int = 1000
    max_timeout_in_ms: int = 60_000
    randomize: bool = True

    def __post_init__(self) -> None:
        _check_int("max_attempts", self.max_attempts, 1)
        if self.max_attempts > MAX_ATTEMPTS_CAP:
            raise ValueError(
                f"retry.max_attempts is {self.max_attempts}; the cap is {MAX_ATTEMPTS_CAP}"
            )
        if (
            isinstance(self.factor, bool)
            or not isinstance(self.factor, int | float)
            or not 0 < self.factor < math.inf
        ):
            raise ValueError(f"retry.factor must be a finite number > 0, got {self.factor!r}")
        _check_int("min_timeout_in_ms", self.min_timeout_in_ms, 0)
        _check_int("max_timeout_in_ms", self.max_timeout_in_ms, 0)
        if self.max_timeout_in_ms > MAX_TIMEOUT_MS:
            raise ValueError(
                f"retry.max_timeout_in_ms is {self.max_timeout_in_ms}; the cap is "
                f"{MAX_TIMEOUT_MS} (10 years)"
            )
        if self.min_timeout_in_ms > self.max_timeout_in_ms:
            raise ValueError(
                f"retry.min_timeout_in_ms ({self.min_timeout_in_ms}) is above "
                f"retry.max_timeout_in_ms ({self.max_timeout_in_ms})"
            )
        if not isinstance(self.randomize, bool):
            raise ValueError(f"retry.randomize must be True or False, got {self.randomize!r}")

    @classmethod
    def from_value(cls, value: Any, *, default: RetryPolicy | None = None) -> RetryPolicy:
        """Normalise ``None | int | dict | RetryPolicy`` into one policy."""
        base = default or cls()
        if value is None:
            return base
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return replace(base, max_attempts=value)
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(
                    f"unknown retry option(s) {', '.join(map(repr, unknown))}; "
                    f"accepted: {', '.join(sorted(known))}"
                )
            return replace(base, **dict(value))
        raise ValueError(
            f"retry must be a dict like {{'max_attempts': 3}}, an int or a RetryPolicy, got {value!r}"
        )

    def with_max_attempts(self, max_attempts: int) -> RetryPolicy:
        return replace(self, max_attempts=max_attempts)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"retry.{name} must be an int >= {minimum}, got {value!r}")


def next_delay_ms(
    policy: RetryPolicy, attempt: int, *, rand: Callable[[], float] = random.random
) -> int | None:
    """Milliseconds before the attempt after ``attempt``; None when no retry is left."""
    if attempt >= policy.max_attempts:
        return None
    r = 1.0 + rand() if policy.randomize else 1.0
    try:
        raw = r * policy.min_timeout_in_ms * policy.factor ** (attempt - 1)
    except OverflowError:  # a large factor: past any cap
        return policy.max_timeout_in_ms
    return round(min(policy.max_timeout_in_ms, raw))
