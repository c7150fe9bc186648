"""Telling an outage from a bug, so an outage logs a line now and then, not a traceback.

While Redis or the database is down or restarting, every pump pass, monitor pass and
trigger meets the same connection error, and the engine recovers from it by design
(reconcile, lease expiry, retried writes). A traceback each time would bury the one
that matters.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import redis
from django.db import InterfaceError, OperationalError

# Raised while the Redis store cannot be reached.
STORE_OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
# Raised while the database cannot be reached (or dropped the connection).
DATABASE_OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
# One line per message this often while an outage lasts.
OUTAGE_LINE_EVERY = 10.0
_said: dict[tuple[str, str], float] = {}
_said_lock = threading.Lock()


def log_failure(log: logging.Logger, message: str, *args: object) -> None:
    """Inside an ``except`` block: for an outage of the store or the database, a warning
    naming the error (the same message at most once per ``OUTAGE_LINE_EVERY``); the
    whole traceback for anything else."""
    err = sys.exc_info()[1]
    if isinstance(err, STORE_OUTAGES):
        what = "the store is unreachable"
    elif isinstance(err, DATABASE_OUTAGES):
        what = "the database is unreachable"
    else:
        log.exception(message, *args)
        return
    text = message % args if args else message
    now, key = time.monotonic(), (log.name, text)
    with _said_lock:
        if now - _said.get(key, float("-inf")) < OUTAGE_LINE_EVERY:
            return
        _said[key] = now
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    log.warning("%s (%s: %s)", text, what, first_line)


def forget() -> None:
    """Say the next outage line of every message at once (tests)."""
    with _said_lock:
        _said.clear()
