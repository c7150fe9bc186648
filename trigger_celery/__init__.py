"""trigger_celery: durable, observable background tasks for Django, on Celery.

>>> from trigger_celery import task
>>> @task(id="hello-world")
... def hello_world(payload, ctx):
...     return {"message": payload["message"]}
>>> handle = hello_world.trigger({"message": "hi"})

Names are loaded lazily so ``import trigger_celery`` is safe before Django is set up
(for example from ``INSTALLED_APPS``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "task": "trigger_celery.api.definitions",
    "schema_task": "trigger_celery.api.definitions",
    "queue": "trigger_celery.api.definitions",
    "Queue": "trigger_celery.engine.registry",
    "TaskDefinition": "trigger_celery.engine.registry",
    "Task": "trigger_celery.api.definitions",
    "tasks": "trigger_celery.api.tasks",
    "runs": "trigger_celery.api.runs",
    "schedules": "trigger_celery.api.schedules",
    "ScheduledPayload": "trigger_celery.core.schedules",
    "queues": "trigger_celery.api.queues",
    "batch": "trigger_celery.api.batches",
    "wait": "trigger_celery.worker.waits",
    "idempotency_keys": "trigger_celery.api.idempotency",
    "RunHandle": "trigger_celery.core.handles",
    "logger": "trigger_celery.worker.logger",
    "metadata": "trigger_celery.worker.metadata",
    "tags": "trigger_celery.worker.metadata",
    "run_locals": "trigger_celery.worker.run_locals",
    "errors": "trigger_celery.errors",
    "AbortTaskRunError": "trigger_celery.errors",
    "TaskPayloadParsedError": "trigger_celery.errors",
    "SubtaskUnwrapError": "trigger_celery.errors",
    "RetryPolicy": "trigger_celery.core.retry",
    "retry": "trigger_celery.worker.retry_block",
    "RunResult": "trigger_celery.core.results",
    "BatchResult": "trigger_celery.core.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trigger_celery' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "errors" else getattr(mod, name)
    globals()[name] = value
    return value
