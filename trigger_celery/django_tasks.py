"""A ``django.tasks`` backend: functions decorated with Django's ``@task`` run as
trigger_celery runs, with attempts, retries, queue limits and the dashboard.

>>> TASKS = {
...     "default": {
...         "BACKEND": "trigger_celery.django_tasks.TriggerCeleryBackend",
...         "QUEUES": ["default", "emails"],
...         "OPTIONS": {"PRIORITY_SECONDS": 1},
...     }
... }
>>> from django.tasks import task
>>> @task(queue_name="emails")
... def send_welcome(user_id): ...
>>> result = send_welcome.enqueue(42)             # a QUEUED run, dispatched on commit
>>> send_welcome.get_result(result.id).status     # READY, RUNNING, SUCCESSFUL or FAILED

A Django task is a trigger_celery task whose id is its module path
(``myapp.jobs.send_welcome``); workers import that module when a run of it arrives.
Options ``django.tasks`` has no words for are given per task:

>>> send_welcome.using(trigger_options={"concurrency_key": "tenant-1", "max_attempts": 5})

Needs Django 6.0 or newer. The ``django-tasks`` backport (for Django 5.2) is not
supported: its classes live in another package, and a backend written for one does
not plug into the other.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from datetime import datetime
from traceback import format_exception
from typing import Any

import django

try:
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError as exc:  # Django 5.2 has no django.tasks
    raise ImportError(
        "trigger_celery.django_tasks needs django.tasks, which Django 6.0 added; this "
        f"project runs Django {django.get_version()}. Upgrade Django, or trigger "
        "trigger_celery tasks directly (the django-tasks backport is not supported)."
    ) from exc

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string
from pydantic import ValidationError

from trigger_celery.core import context as run_context
from trigger_celery.core import run_events
from trigger_celery.core.context import Context
from trigger_celery.core.hooks import run_coroutine
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.db import write_transaction
from trigger_celery.django_task_results import ERRORS_METADATA_KEY, django_payload, task_result
from trigger_celery.engine.registry import Queue, TaskDefinition, registry
from trigger_celery.engine.triggering import trigger_task
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
BACKEND_OPTIONS = frozenset({"PRIORITY_SECONDS"})
# A negative Django priority as run priority: milliseconds, not PRIORITY_SECONDS. A run's
# priority is seconds taken off its place in the queue, so a negative one puts that place
# in the future (SPEC 4); Django's -100 is then 0.1 s, which keeps Django's order among
# runs queued together without holding a run back for any noticeable time.
NEGATIVE_PRIORITY_SECONDS = 0.001


def run_priority(django_priority: int, priority_seconds: float) -> float:
    """Django's priority (-100..100) as a run's priority in seconds."""
    step = priority_seconds if django_priority >= 0 else NEGATIVE_PRIORITY_SECONDS
    return django_priority * step


def django_priority(run_priority: float, priority_seconds: float) -> int:
    """The inverse of :func:`run_priority`."""
    step = priority_seconds if run_priority >= 0 else NEGATIVE_PRIORITY_SECONDS
    return round(run_priority / step)


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
    except ValueError as exc:
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


def _option_problems(options: Any) -> list[str]:
    if not isinstance(options, Mapping):
        return [f"OPTIONS must be a dict, got {options!r}"]
    problems = [
        f"unknown OPTIONS key {key!r}; accepted: {', '.join(sorted(BACKEND_OPTIONS))}"
        for key in sorted(set(options) - BACKEND_OPTIONS)
    ]
    seconds = options.get("PRIORITY_SECONDS", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        problems.append(f"OPTIONS['PRIORITY_SECONDS'] must be a number above 0, got {seconds!r}")
    return problems


class TriggerCeleryBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks as trigger_celery runs (see the module docstring)."""

    task_class = TriggerCeleryTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        run_events.subscribe(finished_outside_the_task)  # once per process
        self.problems = _option_problems(self.options)
        self.priority_seconds = (
            1.0 if self.problems else float(self.options.get("PRIORITY_SECONDS", 1))
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [
            checks.Error(f"TASKS[{self.alias!r}]: {problem}", id="trigger_celery.E201")
            for problem in self.problems
        ]

    # -- definitions ---------------------------------------------------------------------
    def validate_task(self, task: Task) -> None:
        _check_fields(task)  # before Django's own checks, which fail on a wrong type
        super().validate_task(task)
        if not isinstance(task, TriggerCeleryTask):
            raise InvalidTask(
                f"{task.module_path}: a {type(task).__name__}, not a TriggerCeleryTask; "
                "define it with django.tasks.task so the backend's task class is used"
            )
        check_trigger_options(task.trigger_options)
        # Registered under its module path, so a worker that imports the module knows it.
        definition_for(task)

    # -- enqueue -------------------------------------------------------------------------
    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        if self.problems:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: {'; '.join(self.problems)}")
        self.validate_task(task)
        assert isinstance(task, TriggerCeleryTask)
        args, kwargs = _json(list(args), "args"), _json(dict(kwargs), "kwargs")
        _ensure_queue(task.queue_name)
        options = {
            **task.trigger_options,
            "queue": task.queue_name,
            "priority": run_priority(task.priority, self.priority_seconds),
        }
        if task.run_after is not None:
            options["delay"] = task.run_after
        # Like every trigger: the row is written now, the run dispatched on commit. The
        # signal goes inside the transaction, so it precedes the run's start.
        with write_transaction():
            handle = trigger_task(
                task.module_path,
                {"args": args, "kwargs": kwargs},
                options,
                {},
                definition=definition_for(task),
            )
            if handle.is_cached:  # an idempotency key returned an existing run: nothing
                return self.get_result(handle.id)  # was enqueued, so no task_enqueued
            else:
                result = TaskResult(
                    task=task,
                    id=handle.id,
                    status=TaskResultStatus.READY,
                    enqueued_at=timezone.now(),
                    started_at=None,
                    finished_at=None,
                    last_attempted_at=None,
                    args=args,
                    kwargs=kwargs,
                    backend=self.alias,
                    errors=[],
                    worker_ids=[],
                )
            task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        run = Run.objects.filter(id=result_id).first() if isinstance(result_id, str) else None
        if run is None:
            raise TaskResultDoesNotExist(f"no run {result_id!r}")
        task = self._task_of(run)
        return task_result(run, task, self.alias)

    def _task_of(self, run: Run) -> TriggerCeleryTask:
        try:
            task = import_string(run.task_identifier)
        except ImportError:
            task = None
        if not isinstance(task, TriggerCeleryTask) or task.backend != self.alias:
            raise TaskResultDoesNotExist(
                f"run {run.id} ({run.task_identifier!r}) is not a django.tasks run of "
                f"backend {self.alias!r}"
            )
        try:  # the task as it was enqueued: queue, priority and run_after of the run
            priority = django_priority(run.priority, self.priority_seconds)
            return task.using(queue_name=run.queue, priority=priority, run_after=run.delayed_until)
        except InvalidTask:  # settings changed since; the task's own values will do
            return task


def _check_fields(task: Task) -> None:
    """Django's priority, run_after and queue_name with a message that names the value."""
    if isinstance(task.priority, bool) or not isinstance(task.priority, int):
        raise InvalidTask(f"priority must be a whole number, got {task.priority!r}")
    if task.run_after is not None and not isinstance(task.run_after, datetime):
        raise InvalidTask(f"run_after must be a datetime, got {task.run_after!r}")
    try:
        parse_trigger_options({"queue": task.queue_name})
    except ValidationError as exc:  # the queue option's own rule, and its message
        reason = str(exc.errors()[0]["ctx"]["error"])  # "queue: '' is not ..."
        raise InvalidTask(reason.replace("queue:", "queue_name:", 1)) from None


def _json(value: Any, what: str) -> Any:
    """Django's JSON normalisation, its error naming what was not JSON."""
    try:
        return normalize_json(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must be JSON: {exc} in {value!r:.200}") from None


def name_configured_queues(configs: list[dict[str, Any]]) -> None:
    """Make the queues that ``TASKS[...]["QUEUES"]`` names known to this process from its
    start, declared in code or not: the dashboard lists them and ``queues.pause`` finds
    them before any task of theirs was imported here."""
    for config in configs:
        names = config.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME])
        for name in names if isinstance(names, list | tuple | set) else ():
            if isinstance(name, str) and name.strip() and len(name) <= 255:
                registry.add_queue(Queue(name), declared=False)


def _ensure_queue(name: str) -> None:
    """A queue named in TASKS[...]['QUEUES'] need not be declared with ``queue()``; one
    declared in code brings its limits."""
    registry.ensure_discovered()
    if name not in registry.queues:
        registry.add_queue(Queue(name), declared=False)


# -- in the worker -------------------------------------------------------------------------
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
        hooks={"on_failure": lambda ctx, error: _finished_after_failure(task, ctx, error)},
    )


def _backend_of(task: Task) -> TriggerCeleryBackend:
    backend = task.get_backend()
    assert isinstance(backend, TriggerCeleryBackend)
    return backend


def _current_result(task: Task, run_id: str) -> TaskResult:
    backend = _backend_of(task)
    run = Run.objects.get(id=run_id)
    return task_result(run, task, backend.alias)


def _execute(task: TriggerCeleryTask, payload: Any, ctx: Context) -> Any:
    """One attempt: Django's signals around the call, the error's class path noted."""
    backend = _backend_of(task)
    result = _current_result(task, ctx.run.id)
    scope = run_context.optional_scope()
    if scope is None or not scope.resumed:  # a resume continues the attempt that started
        task_started.send(type(backend), task_result=result)
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    try:
        if task.takes_context:
            args = [TaskContext(task_result=result), *args]
        value = task.func(*args, **kwargs)
        if inspect.isawaitable(value):  # on our loop, which the run-time API knows
            value = run_coroutine(value)
        value = _json(value, "the return value")  # never retried: it would be the same
    except Exception as exc:
        paths = dict(metadata.get(ERRORS_METADATA_KEY) or {})
        paths[str(ctx.attempt.number)] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        metadata.set(ERRORS_METADATA_KEY, paths)
        raise
    done = dataclasses.replace(
        result, status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now()
    )
    object.__setattr__(done, "_return_value", value)
    task_finished.send(type(backend), task_result=done)
    return value


# Final statuses no hook of the task sees: a cancel (web process), an expiry or a crash
# found by recovery (pump), a time-out (monitor). FAILED has the on_failure hook above.
_ENDED_OUTSIDE_THE_TASK = frozenset(
    s.value for s in FINAL_STATUSES - {RunStatus.COMPLETED, RunStatus.FAILED}
)


def finished_outside_the_task(run_id: str, event: str) -> None:
    """A ``run_events`` listener: Django's ``task_finished`` (FAILED, Django having no
    canceled status) for a django.tasks run canceled, expired, crashed, timed out or
    ended by a system failure, sent by the process that committed the change."""
    if event not in _ENDED_OUTSIDE_THE_TASK:
        return
    run = Run.objects.filter(id=run_id).first()
    try:
        task = import_string(run.task_identifier) if run is not None else None
    except ImportError:  # a trigger_celery task id, not a module path
        return
    if run is None or not isinstance(task, TriggerCeleryTask):
        return
    backend = _backend_of(task)
    task_finished.send(type(backend), task_result=backend.get_result(run.id))


def _finished_after_failure(task: Task, ctx: Context, error: BaseException) -> None:
    """The run failed for good (retries spent): Django's ``task_finished``."""
    result = _current_result(task, ctx.run.id)
    # The hook runs before the run and its attempt settle: add what they will record.
    errors = list(result.errors)
    if len(errors) < ctx.attempt.number:
        kind = type(error)
        errors.append(
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(format_exception(error)),
            )
        )
    result = dataclasses.replace(
        result, status=TaskResultStatus.FAILED, finished_at=timezone.now(), errors=errors
    )
    task_finished.send(type(_backend_of(task)), task_result=result)


__all__ = [
    "TRIGGER_OPTIONS",
    "TriggerCeleryBackend",
    "TriggerCeleryTask",
    "check_trigger_options",
]
