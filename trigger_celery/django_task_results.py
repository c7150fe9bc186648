"""How a run reads as Django's ``TaskResult`` (``trigger_celery.django_tasks``).

Statuses map onto Django's four: READY (not started: delayed, queued, or waiting for a
worker that knows the task), RUNNING (dequeued, executing or waiting on a child),
SUCCESSFUL, and FAILED for every other end, Django having no canceled or expired status.
``errors`` has one ``TaskError`` per failed attempt, with the error's class path (a
class defined inside a function has a path no import finds, as with Django's backends).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import Task, TaskError

from trigger_celery import errors as package_errors
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine.payloads import load_payload
from trigger_celery.models import Run

# Where the worker notes each failed attempt's exception class path (run metadata).
ERRORS_METADATA_KEY = "django_tasks.errors"
# The ``TASKS`` alias a run was enqueued through (run metadata, written at enqueue), so
# the worker's signals carry the backend that ``get_result`` reads it with.
BACKEND_METADATA_KEY = "django_tasks.backend"

_READY = frozenset({RunStatus.PENDING_VERSION, RunStatus.DELAYED, RunStatus.QUEUED})
_RUNNING = frozenset({RunStatus.DEQUEUED, RunStatus.EXECUTING, RunStatus.WAITING})


def django_payload(value: Any) -> dict[str, Any]:
    """The payload of a Django task's run, ``{"args": [...], "kwargs": {...}}``: the schema
    its definition checks in the worker (a run triggered by id with another shape fails
    once, naming it) and at ``enqueue``."""
    shape = isinstance(value, Mapping) and set(value) <= {"args", "kwargs"}
    args, kwargs = (value.get("args", []), value.get("kwargs", {})) if shape else (None, None)
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise ValueError(
            f'a Django task\'s payload is {{"args": [...], "kwargs": {{...}}}}; got {value!r:.200}'
        )
    return {"args": args, "kwargs": dict(kwargs)}


def task_result(run: Run, task: Task, alias: str) -> TaskResult:
    """``run`` as Django's ``TaskResult`` of ``task`` (backend ``alias``)."""
    attempts = sorted(run.attempts.all(), key=lambda a: a.number)
    try:
        payload = django_payload(load_payload(run.payload, run.payload_ref) or {})
    except ValueError:  # triggered by id with another shape: its run failed saying so
        payload = {"args": [], "kwargs": {}}
    if run.status == RunStatus.COMPLETED:
        status = TaskResultStatus.SUCCESSFUL
    elif run.status in _RUNNING:
        status = TaskResultStatus.RUNNING
    elif run.status in _READY:
        status = TaskResultStatus.READY
    else:  # every other final status: failed, crashed, timed out, expired, canceled
        status = TaskResultStatus.FAILED
    result = TaskResult(
        task=task,
        id=run.id,
        status=status,
        enqueued_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at if run.status in FINAL_STATUSES else None,
        last_attempted_at=attempts[-1].started_at if attempts else None,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=alias,
        errors=_errors_of(run, attempts, failed=status == TaskResultStatus.FAILED),
        worker_ids=[a.worker for a in attempts],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", load_payload(run.output, run.output_ref))
    return result


# Error types a run records under a name that is not its class's (``errors`` has the rest).
_ERROR_CLASSES: dict[str, type[BaseException]] = {
    RunStatus.EXPIRED: package_errors.RunExpiredError,
    "WorkerLost": package_errors.WorkerLostError,
}


def _class_path(error: Mapping[str, Any], paths: Mapping[str, str], number: int | None) -> str:
    """The importable path of the error's class, as Django's ``TaskError`` wants it: the
    one the worker noted, a builtin, one of trigger_celery's, else ``builtins.Exception``."""
    if number is not None and str(number) in paths:
        return paths[str(number)]
    name = str(error.get("type") or "Exception")
    kind = (
        _ERROR_CLASSES.get(name)
        or getattr(builtins, name, None)
        or getattr(package_errors, name, None)
    )
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        kind = Exception
    return f"{kind.__module__}.{kind.__qualname__}"


def _errors_of(run: Run, attempts: list[Any], *, failed: bool) -> list[TaskError]:
    """One error per failed attempt, oldest first; a run that failed without an attempt
    error (expired, canceled, crashed) gets its own."""
    paths = (run.metadata or {}).get(ERRORS_METADATA_KEY) or {}
    errors = [
        TaskError(
            exception_class_path=_class_path(a.error, paths, a.number),
            traceback=a.error.get("stack") or str(a.error.get("message", "")),
        )
        for a in attempts
        if a.error
    ]
    if failed and not errors:
        error = run.error or {"type": "Exception", "message": f"run {run.status.lower()}"}
        errors.append(
            TaskError(
                exception_class_path=_class_path(error, paths, None),
                traceback=error.get("stack") or str(error.get("message", "")),
            )
        )
    return errors
