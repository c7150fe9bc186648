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
# SQLSTATE classes of an outage: a connection's (08), the server shutting down or not
# yet up (57), out of resources such as connections (53), a deadlock or serialization
# failure a retry gets past (40). Another class (PostgreSQL's 54000 "total size of jsonb
# array elements exceeds the maximum", a program limit) is the row's, not an outage:
# psycopg raises it as an OperationalError all the same.
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "57", "53", "40"})


def is_outage(err: BaseException) -> bool:
    """Whether ``err`` says the store or the database cannot be reached (or is busy),
    which the next try may get past, rather than something wrong with what was asked."""
    if isinstance(err, STORE_OUTAGES):
        return True
    if not isinstance(err, DATABASE_OUTAGES):
        return False
    sqlstate = getattr(err.__cause__, "sqlstate", None)  # psycopg's error, under Django's
    return not isinstance(sqlstate, str) or sqlstate[:2] in _OUTAGE_SQLSTATE_CLASSES


# One line per message this often while an outage lasts.
OUTAGE_LINE_EVERY = 10.0
_said: dict[tuple[str, str], float] = {}
_said_lock = threading.Lock()


def log_failure(log: logging.Logger, message: str, *args: object) -> None:
    """Inside an ``except`` block: for an outage of the store or the database, a warning
    naming the error (the same message at most once per ``OUTAGE_LINE_EVERY``); the
    whole traceback for anything else."""
    err = sys.exc_info()[1]
    if err is not None and is_outage(err):
        what = (
            "the store is unreachable"
            if isinstance(err, STORE_OUTAGES)
            else "the database is unreachable"
        )
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
