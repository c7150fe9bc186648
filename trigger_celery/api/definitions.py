"""What users write in ``tasks.py``: ``task``, ``schema_task``, ``schedules.task``, ``queue``.

>>> @task(id="hello-world", retry={"max_attempts": 5})
... def hello_world(payload, ctx):
...     return {"ok": True}
>>> handle = hello_world.trigger({"message": "hi"})

The definition itself is data (:class:`trigger_celery.engine.registry.TaskDefinition`);
:class:`Task` adds the trigger methods a user calls on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from trigger_celery.core.handles import RunHandle
from trigger_celery.core.hooks import HOOK_NAMES, middleware_name
from trigger_celery.core.options import QueueOptions
from trigger_celery.core.results import BatchResult, RunResult
from trigger_celery.core.schedules import ScheduleSpec
from trigger_celery.engine.batches import (
    BatchHandle,
    batch_options_of,
    item_fields,
    items_of,
    trigger_batch_of_task,
)
from trigger_celery.engine.registry import Queue, RunFunction, TaskDefinition, registry
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.errors import ConfigurationError
from trigger_celery.off_loop import off_event_loop_methods
from trigger_celery.worker import waits


@off_event_loop_methods
class Task(TaskDefinition):
    """A task as users hold it: its definition plus ``trigger`` and the wait variants."""

    def trigger(
        self, payload: Any = None, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunHandle:
        """Create a run of this task; returns its handle at once.

        >>> handle = hello_world.trigger({"message": "hi"}, tags=["user_1"])
        """
        return trigger_task(self.id, payload, options, kw, definition=self)

    def batch_trigger(
        self,
        items: Iterable[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        **batch_options: Any,
    ) -> BatchHandle:
        """Trigger up to 1,000 runs: items ``{"payload": ..., "options": {...}}``; the
        batch's own options as a dict, keyword arguments, or both."""
        return trigger_batch_of_task(self.id, self, items, batch_options_of(options, batch_options))

    def trigger_and_wait(
        self, payload: Any = None, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunResult:
        """Trigger a child run and wait for it without holding a worker (SPEC 7).

        >>> result = child.trigger_and_wait({"n": 1})
        >>> result.ok, result.output, result.unwrap()
        """
        return waits.trigger_and_wait(self.id, payload, {**(options or {}), **kw}, validate=self)

    def batch_trigger_and_wait(self, items: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Trigger children (``{"payload", "options"}`` items) and wait for all; ``.runs``
        are results in item order."""
        parsed = []
        for i, item in enumerate(items_of(items)):
            _, payload, options = item_fields(item, i, task_key=None)
            parsed.append((self.id, payload, options, self))
        return waits.batch_trigger_and_wait(self.id, parsed)


def queue(
    name: str,
    concurrency_limit: int | None = None,
    *,
    total_limit: int | None = None,
    rate_limit: str | None = None,
    concurrency_key_limit: int | None = None,
) -> Queue:
    """Declare a queue shared by several tasks.

    >>> emails = queue(name="emails", concurrency_limit=5, rate_limit="100/m")
    >>> tenants = queue(name="tenants", concurrency_key_limit=2, total_limit=10)

    ``concurrency_key_limit`` is ``concurrency_limit`` by the name that says what it
    limits once runs carry a ``concurrency_key``: each key's runs, ``total_limit`` all.
    """
    opts = QueueOptions(
        name=name,
        concurrency_limit=concurrency_limit,
        total_limit=total_limit,
        rate_limit=rate_limit,
        concurrency_key_limit=concurrency_key_limit,
    )
    assert opts.name is not None
    q = Queue(opts.name, opts.concurrency_limit, opts.total_limit, opts.rate_limit)
    return registry.add_queue(q, declared=True)


_TASK_OPTIONS = frozenset(
    {"retry", "queue", "machine", "max_duration", "description", "middleware", *HOOK_NAMES}
)


def _build(
    id: str,
    run: RunFunction | None,
    options: dict[str, Any],
    *,
    schema: Any,
    is_schema: bool,
    scheduled: bool = False,
) -> Task | Callable[[RunFunction], Task]:
    allowed = _TASK_OPTIONS | {"cron"} if scheduled else _TASK_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"task {id!r}: unknown option(s) {', '.join(unknown)}; "
            f"accepted: id, run, {', '.join(sorted(allowed))}"
            + (", schema" if is_schema and not scheduled else "")
        )
    hooks = {k: v for k, v in options.items() if k in HOOK_NAMES}
    middleware = options.get("middleware")
    if callable(middleware) or (
        isinstance(middleware, list | tuple) and all(callable(m) for m in middleware)
    ):
        # One function (as Trigger.dev's option takes it), or a list of them: each named
        # by its dotted path, as a bare ``@my_task.middleware`` names it.
        named = [
            middleware_name(m, None)
            for m in (middleware if isinstance(middleware, list | tuple) else [middleware])
        ]
        middleware = {label: fn for label, fn in named}
    if middleware is not None and not isinstance(middleware, Mapping):
        raise ConfigurationError(
            f"task {id!r}: middleware must be a function, a list of functions or a dict of "
            f"name -> function, got {middleware!r}"
        )

    def make(fn: RunFunction) -> Task:
        with _naming_the_task(id):
            return _make(fn)

    def _make(fn: RunFunction) -> Task:
        return Task(
            id=id,
            run=fn,
            retry=options.get("retry"),
            queue=options.get("queue"),
            machine=options.get("machine"),
            max_duration=options.get("max_duration"),
            description=options.get("description", ""),
            schema=schema,
            is_schema_task=is_schema,
            hooks=hooks,
            middleware=list((middleware or {}).items()),
            scheduled=scheduled,
            cron=options.get("cron"),
        )

    if scheduled and "cron" in options:
        # Validate the declared schedule now, even before the decorator is applied.
        ScheduleSpec.from_declaration(options["cron"], task_id=id)
    return make(run) if run is not None else make


@contextmanager
def _naming_the_task(task_id: str) -> Iterator[None]:
    """An option's error names the task it was given to (a note when its own message
    does not), so a module of many tasks says which one is wrong."""
    try:
        yield
    except ValueError as exc:  # ConfigurationError, pydantic's, a duration's
        if repr(task_id) not in str(exc):
            exc.add_note(f"(in the definition of task {task_id!r})")
        raise


def task(id: str, run: RunFunction | None = None, **options: Any) -> Any:
    """Define a task, as a decorator or with ``run=``.

    >>> @task(id="hello-world", retry={"max_attempts": 5})
    ... def hello_world(payload, ctx):
    ...     return {"ok": True}
    """
    return _build(id, run, options, schema=None, is_schema=False)


def schema_task(id: str, schema: Any = None, run: RunFunction | None = None, **options: Any) -> Any:
    """Define a task whose payload is validated by ``schema`` (pydantic model, TypeAdapter
    or callable) at ``.trigger()`` and again in the worker before every attempt."""
    if schema is None:
        raise ConfigurationError(f"schema task {id!r} needs schema=...")
    return _build(id, run, options, schema=schema, is_schema=True)


def scheduled_task(id: str, run: RunFunction | None = None, **options: Any) -> Any:
    """Define a task that schedules trigger (``schedules.task``).

    ``cron="0 * * * *"`` or ``cron={"pattern": ..., "timezone": ..., "environments": [...]}``
    declares a schedule that is kept in step with the code; without it, attach schedules
    with ``schedules.create``. The run receives a :class:`ScheduledPayload`.
    """
    return _build(id, run, options, schema=None, is_schema=False, scheduled=True)
