"""What happened to runs, for whoever listens (metrics): ``publish(run_id, event)``.

The engine publishes once a change has committed: ``TRIGGERED``, ``STARTED``,
``RETRIED``, or the status a run moved to (``COMPLETED``, ``FAILED``, ``EXPIRED``...).
A listener that fails is logged and never breaks the run's way through the system.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("trigger_celery.run_events")

TRIGGERED = "TRIGGERED"
STARTED = "STARTED"
RETRIED = "RETRIED"

Listener = Callable[[str, str], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Call ``listener(run_id, event)`` after every committed change (once per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def publish(run_id: str, event: str) -> None:
    for listener in list(_listeners):
        try:
            listener(run_id, event)
        except Exception:
            log.warning("run %s: listener %r failed on %s", run_id, listener, event, exc_info=True)
