"""The environments a deployment can be (``TRIGGER_CELERY["ENVIRONMENT"]``), and the
rule for their limits (``CONCURRENCY_LIMIT``, ``BURST_FACTOR``) and DEVELOPMENT's
default ttl (``DEVELOPMENT_TTL``)."""

from __future__ import annotations

import math
from typing import Any

from trigger_celery.core.durations import MAX_SECONDS

ENVIRONMENTS = ("PRODUCTION", "STAGING", "PREVIEW", "DEVELOPMENT")


def concurrency_limit_problem(value: Any) -> str | None:
    """What is wrong with a ``CONCURRENCY_LIMIT`` setting, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"TRIGGER_CELERY['CONCURRENCY_LIMIT'] is {value!r}; it must be an int >= 1"
    return None


def burst_factor_problem(value: Any) -> str | None:
    """What is wrong with a ``BURST_FACTOR`` setting, or None (NaN and inf are wrong:
    NaN compares false with every bound, so it would lift the environment's cap)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 1
    ):
        return f"TRIGGER_CELERY['BURST_FACTOR'] is {value!r}; it must be a number >= 1"
    return None


def development_ttl_problem(value: Any) -> str | None:
    """What is wrong with a ``DEVELOPMENT_TTL`` setting, or None (None itself: no ttl)."""
    if value is None or (
        not isinstance(value, bool) and isinstance(value, int) and 0 < value <= MAX_SECONDS
    ):
        return None
    return (
        f"TRIGGER_CELERY['DEVELOPMENT_TTL'] is {value!r}; it must be a whole number of "
        f"seconds above 0 and at most {MAX_SECONDS} (10 years), or None"
    )
