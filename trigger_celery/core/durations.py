"""Durations and dates, parsed once at the edge.

>>> parse_duration("1h52m18s", name="ttl")
datetime.timedelta(seconds=6738)
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
# Whole numbers with units, largest first: "1h52m18s". No fractions, no milliseconds.
_GROUP = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?")
ACCEPTED = "a number of seconds, a timedelta, or a string like '88s', '1h52m18s', '2d', '1w'"
# Longer than this is a mistake, not a plan (and overflows datetimes soon after).
MAX_SECONDS = 10 * 365 * 86_400


class BeyondHorizonError(ValueError):
    """A duration longer than 10 years, or a date further away than that."""


def _named(value: Any) -> str:
    """``value`` as a message names it: a date or datetime in ISO 8601, not its repr."""
    if isinstance(value, date):
        return repr(value.isoformat())
    return repr(value)


def parse_duration(value: Any, *, name: str, minimum: float = 0) -> timedelta:
    """Turn ``value`` into a timedelta, or raise ValueError naming ``name`` and the value."""
    seconds: float
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name}: {value!r} is not a duration; use {ACCEPTED}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text or not _WHOLE.fullmatch(text):
            raise ValueError(f"{name}: {value!r} is not a duration; use {ACCEPTED}")
        seconds = sum(float(n) * _UNITS[u] for n, u in _GROUP.findall(text))
    else:
        raise ValueError(
            f"{name}: {value!r} ({type(value).__name__}) is not a duration; use {ACCEPTED}"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name}: {value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{name}: {value!r} is negative; durations must be >= 0")
    if seconds > MAX_SECONDS:
        raise BeyondHorizonError(f"{name}: {value!r} is longer than the maximum of 10 years")
    if seconds < minimum:
        raise ValueError(f"{name}: {value!r} is below the minimum of {format_duration(minimum)}")
    return timedelta(seconds=seconds)


def parse_delay(value: Any, *, now: datetime) -> datetime | None:
    """When a delayed run may start, or None if that is not in the future.

    Takes what :func:`parse_duration` takes (from ``now``), ISO 8601 date/datetime
    strings and ``datetime`` objects (naive ones are UTC).
    """
    when: datetime
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str) and not (value.strip() and _WHOLE.fullmatch(value.strip().lower())):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"delay: {value!r} is neither a duration nor an ISO 8601 date; use {ACCEPTED}, "
                "an ISO date such as '2026-01-31T09:00:00Z', or a datetime"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    else:
        when = now + parse_duration(value, name="delay")
    try:
        when = when.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the end of the calendar in UTC
        raise BeyondHorizonError(
            f"delay: {_named(value)} is more than the maximum of 10 years from now"
        ) from None
    refuse_beyond_horizon(when, now, name="delay", value=value)
    return when if when > now else None


def refuse_beyond_horizon(when: datetime, now: datetime, *, name: str, value: Any) -> None:
    """A ValueError naming ``value`` if ``when`` is more than 10 years after ``now``:
    what a duration may not be longer than, a date may not be further away."""
    if (when - now).total_seconds() > MAX_SECONDS:
        raise BeyondHorizonError(
            f"{name}: {_named(value)} is more than the maximum of 10 years ({MAX_SECONDS} "
            "seconds) from now"
        )


def format_duration(seconds: float) -> str:
    """The shortest unit string for ``seconds``, e.g. 6738 -> '1h52m18s'."""
    if seconds <= 0:
        return "0s"
    parts = []
    rest = seconds
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        count = int(rest // size) if unit != "s" else rest
        if unit == "s":
            if count:
                parts.append(f"{count:g}s")
        elif count:
            parts.append(f"{count}{unit}")
            rest -= count * size
    return "".join(parts) or "0s"
