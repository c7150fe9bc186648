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
(``myapp.jobs.send_welcome``); workers import that module when a run of it arrives, if it
belongs to an installed app or to the project package (else the task is refused).
Options ``django.tasks`` has no words for are given per task:

>>> send_welcome.using(trigger_options={"concurrency_key": "tenant-1", "max_attempts": 5})

Needs Django 6.0 or newer. The ``django-tasks`` backport (for Django 5.2) is not
supported: its classes live in another package, and a backend written for one does
not plug into the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import django

try:
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued
except ImportError as exc:  # Django 5.2 has no django.tasks
    raise ImportError(
        "trigger_celery.django_tasks needs django.tasks, which Django 6.0 added; this "
        f"project runs Django {django.get_version()}. Upgrade Django, or trigger "
        "trigger_celery tasks directly (the django-tasks backport is not supported)."
    ) from exc

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

if apps.apps_ready and not apps.is_installed("trigger_celery"):
    # Said before the models are imported, whose own error names a model, not the fix.
    raise ImproperlyConfigured(
        "TASKS names trigger_celery.django_tasks.TriggerCeleryBackend, but 'trigger_celery' "
        "is not in INSTALLED_APPS: add 'trigger_celery' and 'django_celery_beat' to it"
    )
from django.utils import timezone
from django.utils.module_loading import import_string

from trigger_celery.core import run_events
from trigger_celery.core.durations import MAX_SECONDS
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.core.queue_names import queue_name_problem
from trigger_celery.db import write_transaction
from trigger_celery.django_task_results import BACKEND_METADATA_KEY, task_result
from trigger_celery.django_task_worker import (
    TRIGGER_OPTIONS,
    TriggerCeleryTask,
    as_json,
    check_trigger_options,
    definition_for,
    enqueued_through,
    send_task_finished,
)
from trigger_celery.engine.registry import Queue, project_packages, registry, worker_imports
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.models import Run

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


def _queue_problems(queues: Any) -> list[str]:
    """What is wrong with ``QUEUES``: Django makes a set of it, so a string would be a set
    of its letters and every enqueue would be refused without a word about the setting."""
    if not isinstance(queues, list | tuple | set | frozenset):
        return [f"QUEUES must be a list of queue names, got {queues!r}"]
    problems = []
    for name in queues:
        try:
            parse_trigger_options({"queue": name})
        except ValueError as exc:
            problems.append(f"QUEUES: {str(exc).removeprefix('queue: ')}")
    return problems


def _option_problems(options: Any) -> list[str]:
    if not isinstance(options, Mapping):
        return [f"OPTIONS must be a dict, got {options!r}"]
    problems = [
        f"unknown OPTIONS key {key!r}; accepted: {', '.join(sorted(BACKEND_OPTIONS))}"
        for key in sorted(set(options) - BACKEND_OPTIONS)
    ]
    seconds = options.get("PRIORITY_SECONDS", 1)
    # Django's top priority (100) times it is the priority option a run gets: at most
    # the 10 years any duration may be (inf and nan failed every enqueue naming neither).
    most = MAX_SECONDS / 100
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= most  # False for nan too
    ):
        problems.append(
            f"OPTIONS['PRIORITY_SECONDS'] must be a number above 0 and at most {most:.0f} "
            f"(priority 100 is then 10 years), got {seconds!r}"
        )
    return problems


class TriggerCeleryBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks as trigger_celery runs (see the module docstring)."""

    task_class = TriggerCeleryTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        queues = params.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME])
        self.problems = _queue_problems(queues) + _option_problems(params.get("OPTIONS", {}))
        if not isinstance(queues, list | tuple | set | frozenset):  # Django would set() it
            params = {**params, "QUEUES": [DEFAULT_TASK_QUEUE_NAME]}  # checks say why
        super().__init__(alias, params)
        run_events.subscribe(send_task_finished)  # once per process
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
        if self.queues and task.queue_name not in self.queues:
            raise InvalidTask(
                f"queue_name {task.queue_name!r} is not in TASKS[{self.alias!r}]['QUEUES'] "
                f"({', '.join(sorted(map(str, self.queues)))})"
            )
        super().validate_task(task)
        if not isinstance(task, TriggerCeleryTask):
            raise InvalidTask(
                f"{task.module_path}: a {type(task).__name__}, not a TriggerCeleryTask; "
                "define it with django.tasks.task so the backend's task class is used"
            )
        check_trigger_options(task.trigger_options)
        _check_module(task)
        # Registered under its module path, so a worker that imports the module knows it.
        definition_for(task)

    # -- enqueue -------------------------------------------------------------------------
    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        if self.problems:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: {'; '.join(self.problems)}")
        self.validate_task(task)
        assert isinstance(task, TriggerCeleryTask)
        args, kwargs = as_json(list(args), "args"), as_json(dict(kwargs), "kwargs")
        _ensure_queue(task.queue_name)
        options = {
            **task.trigger_options,
            "queue": task.queue_name,
            "priority": run_priority(task.priority, self.priority_seconds),
            # The alias goes with the run: the worker's task_started / task_finished
            # then carry the backend get_result reads it through.
            "metadata": {
                **(task.trigger_options.get("metadata") or {}),
                BACKEND_METADATA_KEY: self.alias,
            },
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
        task = None
        # Only from the deployment's own code, as a worker would: a run row cannot make
        # this process import an arbitrary module.
        if worker_imports(run.task_identifier.rpartition(".")[0]):
            try:
                task = import_string(run.task_identifier)
            except ImportError:
                pass
        if not isinstance(task, TriggerCeleryTask):
            raise TaskResultDoesNotExist(
                f"run {run.id} ({run.task_identifier!r}) is not a django.tasks run"
            )
        # Every trigger_celery backend reads the same runs: a task enqueued through
        # another alias (``using(backend=...)``) is read here as this backend's, so its
        # result's ``refresh()`` asks this backend again.
        # Its priority in the terms of the alias it was enqueued through, whose
        # PRIORITY_SECONDS made the run's (``priority=5`` at 10 s was read as 50).
        through = enqueued_through(task, (run.metadata or {}).get(BACKEND_METADATA_KEY))
        seconds = getattr(through, "priority_seconds", self.priority_seconds)
        try:  # the task as it was enqueued: queue, priority and run_after of the run
            priority = django_priority(run.priority, seconds)
            return task.using(
                queue_name=run.queue,
                priority=priority,
                run_after=run.delayed_until,
                backend=self.alias,
            )
        except InvalidTask:  # settings changed since; the task's own values will do
            return task


def _check_fields(task: Task) -> None:
    """Django's priority, run_after and queue_name with a message that names the value."""
    if isinstance(task.priority, bool) or not isinstance(task.priority, int):
        raise InvalidTask(f"priority must be a whole number, got {task.priority!r}")
    if not TASK_MIN_PRIORITY <= task.priority <= TASK_MAX_PRIORITY:
        raise InvalidTask(
            f"priority must be between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}, "
            f"got {task.priority!r}"
        )
    if task.run_after is not None and not isinstance(task.run_after, datetime):
        raise InvalidTask(f"run_after must be a datetime, got {task.run_after!r}")
    if task.run_after is not None and timezone.is_aware(task.run_after):
        try:  # the delay option's rule (at most 10 years ahead), named as Django names it
            parse_trigger_options({"delay": task.run_after})
        except ValueError as exc:
            raise InvalidTask(str(exc).replace("delay:", "run_after:", 1)) from None
    try:
        parse_trigger_options({"queue": task.queue_name})
    except ValueError as exc:  # the queue option's own rule, and its message
        raise InvalidTask(str(exc).replace("queue:", "queue_name:", 1)) from None


def _check_module(task: Task) -> None:
    """A task whose module no worker would import: refused, its runs would wait forever."""
    if not apps.apps_ready:  # decorated while apps load; checked again at enqueue
        return
    module = task.module_path.rpartition(".")[0]
    if not worker_imports(module):
        packages = ", ".join(project_packages()) or "none"
        raise InvalidTask(
            f"{task.module_path}: workers import a Django task's module only from an "
            f"installed app or the project package ({packages}), and {module!r} is "
            "neither: move the task into an installed app (e.g. myapp/tasks.py) or the "
            "project package, or add its app to INSTALLED_APPS"
        )


def name_configured_queues(configs: list[dict[str, Any]]) -> None:
    """Make the queues that ``TASKS[...]["QUEUES"]`` names known to this process from its
    start, declared in code or not: the dashboard lists them and ``queues.pause`` finds
    them before any task of theirs was imported here."""
    for config in configs:
        names = config.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME])
        for name in names if isinstance(names, list | tuple | set) else ():
            ok = isinstance(name, str) and name.strip() and len(name) <= 255
            if ok and queue_name_problem(name) is None:  # else its check says why
                registry.add_queue(Queue(name), declared=False)


def _ensure_queue(name: str) -> None:
    """A queue named in TASKS[...]['QUEUES'] need not be declared with ``queue()``; one
    declared in code brings its limits."""
    registry.ensure_discovered()
    if name not in registry.queues:
        registry.add_queue(Queue(name), declared=False)


__all__ = [
    "TRIGGER_OPTIONS",
    "TriggerCeleryBackend",
    "TriggerCeleryTask",
    "check_trigger_options",
    "send_task_finished",
]
