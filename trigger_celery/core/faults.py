"""Fault injection for the chaos tests: kill this process at a named point.

Off unless the environment names a point::

    TRIGGER_CELERY_KILL_AT=child-final              # the point to die at
    TRIGGER_CELERY_KILL_MARK=/tmp/killed-once       # created just before dying

The process SIGKILLs itself the first time it passes that point, so a test can prove
the fault happened (the mark file exists) before it asserts that the system recovered.
With the mark file already there, the point does nothing: one fault per test. With
``TRIGGER_CELERY_KILL_ACTION=raise`` the point raises :class:`InjectedFault` instead (an
error where one may happen, such as "database is locked"), once as well.
"""

from __future__ import annotations

import os
import signal

ENV_POINT = "TRIGGER_CELERY_KILL_AT"
ENV_MARK = "TRIGGER_CELERY_KILL_MARK"
ENV_ACTION = "TRIGGER_CELERY_KILL_ACTION"


class InjectedFault(RuntimeError):
    """Raised at a fault point when the tests ask for an error instead of a kill."""


# Every point the engine and the worker pass; a test names one of these.
POINTS = frozenset(
    {
        "child-final",  # a run's final status committed, its waitpoints not completed yet
        "parent-waiting",  # a run's WAITING committed, before it re-checks its waitpoints
        "batch-children-created",  # batch_trigger_and_wait made its children, no waitpoint yet
        "datetime-completed",  # a DATETIME waitpoint completed, its run not resumed yet
        "run-kept",  # a worker kept the run a freed slot went to, not started yet
    }
)


def point(name: str) -> None:
    """Die here if the environment says so (and this is the first time)."""
    if os.environ.get(ENV_POINT) != name:
        return
    mark = os.environ.get(ENV_MARK)
    if mark:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{name} {os.getpid()}\n".encode())
        os.close(fd)
    if os.environ.get(ENV_ACTION) == "raise":
        raise InjectedFault(f"fault injected at {name}")
    os.kill(os.getpid(), signal.SIGKILL)
