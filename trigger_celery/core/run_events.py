"""What happened to runs, for whoever listens (metrics): ``publish(run_id, event)``.

The engine publishes once a change has committed: ``TRIGGERED``, ``STARTED``,
``RETRIED``, or the status a run moved to (``COMPLETED``, ``FAILED``, ``EXPIRED``...).
A listener that fails is logged and never breaks the run's way through the system.

A batch publishes its runs with ``publish_many``: a listener subscribed with a
``many`` form gets them in one call (the metrics recorder reads them in one query and
counts them in one Redis round trip, not one of each per run); the others get one call
per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("trigger_celery.run_events")

TRIGGERED = "TRIGGERED"
STARTED = "STARTED"
RETRIED = "RETRIED"

Listener = Callable[[str, str], None]
ManyListener = Callable[[list[str], str], None]
_listeners: list[Listener] = []
_many: dict[Listener, ManyListener] = {}


def subscribe(listener: Listener, *, many: ManyListener | None = None) -> None:
    """Call ``listener(run_id, event)`` after every committed change (once per listener);
    ``many(run_ids, event)``, when given, for the runs of one batch."""
    if listener not in _listeners:
        _listeners.append(listener)
    if many is not None:
        _many[listener] = many


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)
    _many.pop(listener, None)


def publish(run_id: str, event: str) -> None:
    for listener in list(_listeners):
        publish_to(listener, run_id, event)


def publish_many(run_ids: list[str], event: str) -> None:
    """``publish`` for each of ``run_ids`` (one event, many runs: a batch's triggers)."""
    if not run_ids:
        return
    for listener in list(_listeners):
        many = _many.get(listener)
        if many is None:
            for run_id in run_ids:
                publish_to(listener, run_id, event)
            continue
        try:
            many(run_ids, event)
        except Exception:
            log.warning(
                "%d runs: listener %r failed on %s", len(run_ids), many, event, exc_info=True
            )


def publish_to(listener: Listener, run_id: str, event: str) -> None:
    try:
        listener(run_id, event)
    except Exception:
        log.warning("run %s: listener %r failed on %s", run_id, listener, event, exc_info=True)
