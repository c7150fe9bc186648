"""Telling an outage of the store from a bug, so an outage logs one line, not a traceback.

While Redis is down or restarting, every pump pass and every trigger meets the same
connection error, and the engine recovers from it by design (reconcile, lease expiry).
A traceback each time would bury the one that matters.
"""

from __future__ import annotations

import logging
import sys

import redis

# Raised while the Redis store cannot be reached; the database store's equivalents are
# the database's own OperationalError, handled where the database is.
STORE_OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def log_failure(log: logging.Logger, message: str, *args: object) -> None:
    """Inside an ``except`` block: a warning naming the error for an outage of the store,
    the whole traceback for anything else."""
    err = sys.exc_info()[1]
    if isinstance(err, STORE_OUTAGES):
        log.warning(message + " (the store is unreachable: %s)", *args, err)
    else:
        log.exception(message, *args)
