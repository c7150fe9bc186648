"""The worker side of the ``django.tasks`` backend (``trigger_celery.django_tasks``):
the definition that runs a Django task, its signals, and ``TriggerCeleryTask``.

Django's ``task_finished`` is sent once per run, after the run's final status has
committed (a receiver's ``get_result`` reads it), by the run-event listener
:func:`send_task_finished`; a receiver that raises is logged and changes nothing. The
process that executed the run sends what it recorded (the return value, or the errors);
a run that ended outside its task (canceled, expired, crashed, timed out by the monitor)
is read from its row.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections import OrderedDict
from collections.abc import Mapping
from traceback import format_exception
from typing import Any

from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from trigger_celery.core import context as run_context
from trigger_celery.core.context import Context
from trigger_celery.core.hooks import run_coroutine
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.core.serialization import to_jsonable
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.django_task_results import (
    BACKEND_METADATA_KEY,
    ERRORS_METADATA_KEY,
    django_payload,
)
from trigger_celery.engine.registry import Queue, TaskDefinition, registry
from trigger_celery.errors import SerializationError
from trigger_celery.models import Run
from trigger_celery.worker.metadata import metadata

# Options of a run that Django's Task has no field for; queue, priority and run_after
# come from the Task itself.
TRIGGER_OPTIONS = frozenset(
    {
        "idempotency_key",
        "idempotency_key_ttl",
        "concurrency_key",
        "tags",
        "metadata",
        "ttl",
        "max_attempts",
        "max_duration",
        "machine",
        "region",
    }
)


def check_trigger_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate per-task trigger_celery options; returns them as a plain dict."""
    if not isinstance(options, Mapping):
        raise InvalidTask(f"trigger_options must be a dict, got {options!r}")
    unknown = sorted(set(options) - TRIGGER_OPTIONS)
    if unknown:
        raise InvalidTask(
            f"trigger_options: {', '.join(unknown)} not accepted here (queue, priority and "
            f"delay come from the Task's queue_name, priority and run_after); accepted: "
            f"{', '.join(sorted(TRIGGER_OPTIONS))}"
        )
    try:
        parse_trigger_options(dict(options))
    except ValueError as exc:  # "max_attempts: '3' is not an int"
        raise InvalidTask(f"trigger_options: {exc}") from None
    return dict(options)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TriggerCeleryTask(Task):
    """Django's Task plus ``trigger_options`` (idempotency key, tags, ttl, ...)."""

    trigger_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def using(  # type: ignore[override]
        self, *, trigger_options: Mapping[str, Any] | None = None, **changes: Any
    ) -> TriggerCeleryTask:
        """Django's ``using()``; ``trigger_options`` are merged into the task's own."""
        task: TriggerCeleryTask = Task.using(self, **changes)
        if trigger_options is None:
            return task
        merged = {**task.trigger_options, **check_trigger_options(trigger_options)}
        return dataclasses.replace(task, trigger_options=merged)


def as_json(value: Any, what: str) -> Any:
    """``value`` as JSON will carry it (a key 1 becomes "1"), by Django's normalisation
    and then ours; the error names what was not JSON."""
    try:
        return to_jsonable(normalize_json(value), what=what)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must be JSON: {exc} in {value!r:.200}") from None


def definition_for(task: TriggerCeleryTask) -> TaskDefinition:
    """The trigger_celery definition that runs ``task``, registered under its module path."""
    existing = registry.tasks.get(task.module_path)
    if existing is not None and getattr(existing.run_fn, "django_task_func", None) is task.func:
        return existing

    def run(payload: Any, ctx: Context) -> Any:
        return _execute(task, payload, ctx)

    # Named after the user's function, so a trigger_celery task with the same id clashes.
    run.__module__, run.__qualname__ = task.func.__module__, task.func.__qualname__
    run.django_task_func = task.func  # type: ignore[attr-defined]
    # Its queue is the task's queue_name, also for a run triggered by id (the dashboard's
    # test page, ``tasks.trigger``); a queue declared with queue(...) brings its limits.
    registry.add_queue(Queue(task.queue_name), declared=False)
    return TaskDefinition(
        id=task.module_path,
        run=run,
        queue=task.queue_name,
        schema=django_payload,  # checked in the worker also for a run triggered by id
        is_schema_task=True,
        description=(task.func.__doc__ or "").strip(),
        hooks={"on_failure": lambda ctx, error: _record_failure(task, ctx, error)},
    )


def enqueued_through(task: Task, alias: Any) -> BaseTaskBackend:
    """The backend of ``TASKS[alias]``, the alias a run was enqueued through (its
    metadata), or the task's own when that is missing or no longer a backend of ours."""
    if isinstance(alias, str) and alias != task.backend:
        try:
            backend = task_backends[alias]
        except InvalidTaskBackend:  # settings changed since the run was enqueued
            return task.get_backend()
        if isinstance(backend, type(task.get_backend())):
            return backend
    return task.get_backend()


def _current_result(task: Task, ctx: Context) -> TaskResult:
    """The run as ``get_result`` of the backend it was enqueued through reads it."""
    backend = enqueued_through(task, ctx.run.metadata.get(BACKEND_METADATA_KEY))
    return backend.get_result(ctx.run.id)


def _execute(task: TriggerCeleryTask, payload: Any, ctx: Context) -> Any:
    """One attempt: Django's task_started before the call, the error's class path noted,
    the result kept for task_finished (sent once the run's end has committed)."""
    result = _current_result(task, ctx)
    scope = run_context.optional_scope()
    if scope is None or not scope.resumed:  # a resume continues the attempt that started
        task_started.send(type(result.task.get_backend()), task_result=result)
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    try:
        if task.takes_context:
            args = [TaskContext(task_result=result), *args]
        value = task.func(*args, **kwargs)
        if inspect.isawaitable(value):  # on our loop, which the run-time API knows
            value = run_coroutine(value)
        value = as_json(value, "the return value")  # never retried: it would be the same
    except Exception as exc:
        paths = dict(metadata.get(ERRORS_METADATA_KEY) or {})
        paths[str(ctx.attempt.number)] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        metadata.set(ERRORS_METADATA_KEY, paths)
        raise
    done = dataclasses.replace(
        result, status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now()
    )
    object.__setattr__(done, "_return_value", value)
    _record(done)
    return value


def _record_failure(task: Task, ctx: Context, error: BaseException) -> None:
    """The on_failure hook (retries spent): the failed result, as the run will record it."""
    result = _current_result(task, ctx)
    errors = list(result.errors)  # the hook runs before the run and its attempt settle
    if len(errors) < ctx.attempt.number:
        kind = type(error)
        errors.append(
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(format_exception(error)),
            )
        )
    _record(
        dataclasses.replace(
            result, status=TaskResultStatus.FAILED, finished_at=timezone.now(), errors=errors
        )
    )


# Results of runs this process executed, by run id, until their end commits. Bounded: a
# run whose end this process never writes (a lost lease) leaves its entry, and the
# oldest entries go first.
MAX_RECORDED = 1000
_recorded: OrderedDict[str, TaskResult] = OrderedDict()
_recorded_lock = threading.Lock()


def _record(result: TaskResult) -> None:
    with _recorded_lock:
        _recorded[result.id] = result
        _recorded.move_to_end(result.id)
        while len(_recorded) > MAX_RECORDED:
            _recorded.popitem(last=False)


_FINAL_EVENTS = frozenset(s.value for s in FINAL_STATUSES)
# Final statuses no hook of the task sees: a cancel (web process), an expiry or a crash
# found by recovery (pump), a time-out written by the monitor. Read from the run's row.
_ENDED_OUTSIDE_THE_TASK = frozenset(
    s.value for s in FINAL_STATUSES - {RunStatus.COMPLETED, RunStatus.FAILED}
)


def send_task_finished(run_id: str, event: str) -> None:
    """A ``run_events`` listener, called once a run's change has committed: Django's
    ``task_finished`` for a django.tasks run that ended (FAILED for every end but
    COMPLETED, Django having no canceled status). No query for a run of another task."""
    if event not in _FINAL_EVENTS:
        return
    with _recorded_lock:
        recorded = _recorded.pop(run_id, None)
    successful = event == RunStatus.COMPLETED.value
    if recorded is not None and successful == (recorded.status == TaskResultStatus.SUCCESSFUL):
        task_finished.send(type(recorded.task.get_backend()), task_result=recorded)
    elif recorded is not None or event in _ENDED_OUTSIDE_THE_TASK:
        _send_from_row(run_id)


def _send_from_row(run_id: str) -> None:
    run = Run.objects.filter(id=run_id).first()
    try:
        task = import_string(run.task_identifier) if run is not None else None
    except ImportError:  # a trigger_celery task id, not a module path
        return
    if run is None or not isinstance(task, TriggerCeleryTask):
        return
    backend = enqueued_through(task, (run.metadata or {}).get(BACKEND_METADATA_KEY))
    task_finished.send(type(backend), task_result=backend.get_result(run.id))
