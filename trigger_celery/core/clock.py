"""The one clock of the package.

Every module asks this module for the time (``clock.now()``, ``clock.timestamp()``), never
``datetime.now`` or ``time.time`` directly, so a test can move or stop time for the whole
system at once with :func:`travel` or :func:`freeze`. Durations measured inside one process (timeouts, elapsed
compute time) use ``time.monotonic`` and are not affected.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_offset = 0.0
_frozen: float | None = None


def timestamp() -> float:
    """Seconds since the epoch, as ``time.time()`` (moved by :func:`travel` and
    :func:`freeze`)."""
    if _frozen is not None:
        return _frozen
    return time.time() + _offset


def now() -> datetime:
    """The current instant, aware, in UTC."""
    if not _offset and _frozen is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(timestamp(), UTC)


@contextmanager
def travel(seconds: float) -> Iterator[None]:
    """Move this process's clock ``seconds`` ahead (or back) while the block runs.

    >>> with clock.travel(3600):
    ...     promote_delayed()   # sees an instant one hour from now
    """
    global _offset
    previous = _offset
    _offset = previous + seconds
    try:
        yield
    finally:
        _offset = previous


@contextmanager
def freeze(at: datetime) -> Iterator[None]:
    """Stop this process's clock at ``at`` (an aware datetime) while the block runs."""
    global _frozen
    previous = _frozen
    _frozen = at.timestamp()
    try:
        yield
    finally:
        _frozen = previous
