"""``tasks``: trigger by id, and register global hooks and middleware."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trigger_celery.core.handles import RunHandle
from trigger_celery.core.hooks import HOOK_NAMES, Hook, global_hooks, middleware_name
from trigger_celery.core.options import task_id_problem
from trigger_celery.core.results import BatchResult, RunResult
from trigger_celery.engine.batches import (
    BatchHandle,
    batch_options_of,
    item_fields,
    items_of,
    trigger_batch_of_task,
)
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.off_loop import off_event_loop_methods
from trigger_celery.worker import waits


@off_event_loop_methods
class TasksAPI:
    """``tasks.trigger("hello-world", payload)``; ``tasks.on_success(fn)``; ...

    Triggering by id does not import the task's module and does not validate a schema
    task's payload (the worker validates it before every attempt).
    """

    def trigger(
        self, task_id: str, payload: Any = None, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunHandle:
        bad_id = task_id_problem(task_id)
        if bad_id is not None:  # the rule task() applies: a run no task could ever serve
            raise ValueError(bad_id)
        return trigger_task(task_id, payload, options, kw)

    def batch_trigger(
        self,
        task_id: str,
        items: Any,
        options: Mapping[str, Any] | None = None,
        **batch_options: Any,
    ) -> BatchHandle:
        """Trigger up to 1,000 runs of ``task_id``; payloads are not validated here."""
        return trigger_batch_of_task(task_id, None, items, batch_options_of(options, batch_options))

    def trigger_and_wait(
        self, task_id: str, payload: Any = None, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunResult:
        """Inside a run: trigger a child run of ``task_id`` and wait for its result
        without holding a worker (SPEC 7), as ``my_task.trigger_and_wait`` does."""
        bad_id = task_id_problem(task_id)
        if bad_id is not None:
            raise ValueError(bad_id)
        return waits.trigger_and_wait(task_id, payload, {**(options or {}), **kw})

    def batch_trigger_and_wait(self, task_id: str, items: Any) -> BatchResult:
        """Inside a run: trigger up to 1,000 child runs of ``task_id`` (``{"payload",
        "options"}`` items) and wait for all; ``.runs`` are results in item order."""
        bad_id = task_id_problem(task_id)
        if bad_id is not None:
            raise ValueError(bad_id)
        parsed = []
        for i, item in enumerate(items_of(items)):
            _, payload, options = item_fields(item, i, task_key=None)
            parsed.append((task_id, payload, options, None))
        return waits.batch_trigger_and_wait(task_id, parsed)

    def middleware(self, name: str | Hook, fn: Hook | None = None) -> Any:
        """Register global middleware: ``tasks.middleware("db", fn)``, or as a decorator:
        ``@tasks.middleware("db")``, or bare (``@tasks.middleware``: named by the function)."""
        label, given = middleware_name(name, fn)
        if given is None:
            return lambda f: global_hooks.add_middleware(label, f)
        return global_hooks.add_middleware(label, given)

    def __getattr__(self, name: str) -> Callable[[Hook], Hook]:
        if name in HOOK_NAMES:
            return lambda fn: global_hooks.add(name, fn)
        raise AttributeError(name)


tasks = TasksAPI()
