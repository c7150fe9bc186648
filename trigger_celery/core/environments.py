"""The environments a deployment can be (``TRIGGER_CELERY["ENVIRONMENT"]``), and the
rule for their limits (``CONCURRENCY_LIMIT``, ``BURST_FACTOR``)."""

from __future__ import annotations

import math
from typing import Any

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
