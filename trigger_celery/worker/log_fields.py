"""Every log record made while a run executes carries the run as structured fields.

``record.trigger_run_id``, ``record.trigger_task_id`` and ``record.trigger_attempt`` are
set on each record created inside a run (Celery's, Django's, the project's own
loggers), so a JSON formatter picks them up like ``extra``. They are namespaced so a
project's own ``extra={"run_id": ...}`` never collides with them (``logging`` refuses an
``extra`` key a record already has).

A record made outside a run has none of them, so a formatter string such as
``%(trigger_run_id)s`` needs the :class:`RunFields` filter on its handler, which sets
the fields missing from a record to None (in every process, in or out of a run):

>>> LOGGING["filters"] = {"run": {"()": "trigger_celery.worker.log_fields.RunFields"}}
>>> LOGGING["handlers"]["console"]["filters"] = ["run"]
"""

from __future__ import annotations

import logging
from typing import Any

from trigger_celery.core.context import optional_scope

FIELDS = ("trigger_run_id", "trigger_task_id", "trigger_attempt")
_installed = False


def install() -> None:
    """Wrap the process's log record factory, once."""
    global _installed
    if _installed:
        return
    _installed = True
    inner = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        scope = optional_scope()
        if scope is not None:
            record.trigger_run_id = scope.ctx.run.id
            record.trigger_task_id = scope.ctx.task.id
            record.trigger_attempt = scope.ctx.attempt.number
        return record

    logging.setLogRecordFactory(factory)


class RunFields(logging.Filter):
    """A handler filter: the fields on every record, None on one made outside a run."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


def of(run_id: str, task_id: str | None, attempt: int) -> dict[str, Any]:
    """The fields as ``extra``, for a line about a run logged outside its scope (the
    attempt monitor's thread, a message refused before its run is loaded). Inside a
    run's scope there are none to give: the record factory sets them, and ``logging``
    refuses an ``extra`` key a record already has (a KeyError instead of the line)."""
    if _installed and optional_scope() is not None:
        return {}
    return dict(zip(FIELDS, (run_id, task_id, attempt), strict=True))
