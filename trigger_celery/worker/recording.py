"""Recording an attempt's end through a database outage.

The user's code has run; what it produced must reach the run row. When the database is
unreachable (restarted, failed over, a network blip), the attempt keeps its lease - the
monitor still renews it in the store - and retries the write with backoff until the
database answers, instead of failing and leaving the reaper to run the code again.
Each transition is one fenced transaction, so a retry after a commit whose
acknowledgement was lost writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError

from trigger_celery.db import heal_connections

log = logging.getLogger("trigger_celery.worker")

T = TypeVar("T")

# How long an attempt waits for the database before it gives up and lets its lease
# lapse (the reaper then retries the run).
BUDGET_SECONDS = 300.0
FIRST_DELAY = 0.2
MAX_DELAY = 5.0


def until_recorded(write: Callable[[], T], *, what: str, budget: float = BUDGET_SECONDS) -> T:
    """Call ``write`` until the database takes it; re-raise once ``budget`` is spent."""
    deadline = time.monotonic() + budget
    delay = FIRST_DELAY
    while True:
        heal_connections()
        try:
            return write()
        except (OperationalError, InterfaceError) as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("could not record %s (%s); retrying in %.1fs", what, err, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
