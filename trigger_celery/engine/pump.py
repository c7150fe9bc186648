"""The periodic work of the system, run by beat (and by ``trigger_dev``).

One pass: schedules whose tick has come fire, DELAYED runs that are due become QUEUED,
timed waits that are due resume their runs, runs past their ttl expire, dead workers'
leases are reaped, ready runs are dispatched, and every few seconds the store is
reconciled with the database and every after-commit step a killed process may have
missed is repaired (``engine.repairs``). Every step is safe with several beats at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import is_outage, log_failure
from trigger_celery.core import clock
from trigger_celery.db import heal_connections
from trigger_celery.engine import dispatch, promotions, recovery, repairs
from trigger_celery.engine.schedules import ScheduleTicker
from trigger_celery.engine.waitpoints import complete_due_datetimes

log = logging.getLogger("trigger_celery.engine.pump")

RECONCILE_EVERY = 5.0
FULL_RECONCILE_EVERY = 300.0
REPAIR_EVERY = 2.0


class Pump:
    """Call :meth:`tick` in a loop; it returns how long to sleep before the next call."""

    def __init__(self) -> None:
        self._last_reconcile = 0.0
        self._last_full_reconcile = 0.0
        self._last_repair = 0.0
        self._schedules = ScheduleTicker()

    def tick(self) -> float:
        settings = get_settings()
        now_ts = clock.timestamp()
        steps: list[tuple[str, Callable[[], object]]] = [("connections", heal_connections)]
        if now_ts - self._last_reconcile >= RECONCILE_EVERY:
            self._last_reconcile = now_ts
            full = now_ts - self._last_full_reconcile >= FULL_RECONCILE_EVERY
            if full:
                self._last_full_reconcile = now_ts
            steps.append(("reconcile", partial(recovery.reconcile, full=full)))
        if now_ts - self._last_repair >= REPAIR_EVERY:
            self._last_repair = now_ts
            steps.append(("repairs", repairs.repair))
        steps += [
            ("schedules", self._schedules.tick),
            ("delayed runs", promotions.promote_delayed),
            ("timed waits", complete_due_datetimes),
            ("ttls", promotions.expire_due),
            ("leases", recovery.reap_expired_leases),
            ("dispatch", dispatch.dispatch_ready),
        ]
        failed = False
        for name, step in steps:
            try:
                step()
            except Exception as err:
                if is_outage(err):  # the rest would meet it too, each after a timeout
                    log_failure(log, "trigger_celery pump pass failed; retrying")
                    return settings.PUMP_INTERVAL
                # One step's bug or one row the database refuses must not hold back the
                # others: delays, timed waits, ttls and leases go on (a batch result the
                # database would not store kept every pass from getting past repairs).
                log.exception("trigger_celery pump: %s failed; the other steps go on", name)
                failed = True
        try:
            next_ready = None if failed else get_store().next_ready_at()
        except Exception:
            log_failure(log, "trigger_celery pump pass failed; retrying")
            return settings.PUMP_INTERVAL
        if next_ready is None:
            return settings.PUMP_INTERVAL
        return max(0.0, min(settings.PUMP_INTERVAL, next_ready - clock.timestamp()))
