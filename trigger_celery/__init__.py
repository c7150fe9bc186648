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
    "task": "trigger_celery.definition",
    "schema_task": "trigger_celery.definition",
    "queue": "trigger_celery.definition",
    "Queue": "trigger_celery.definition",
    "TaskDefinition": "trigger_celery.definition",
    "tasks": "trigger_celery.client.tasks_api",
    "runs": "trigger_celery.client.runs",
    "schedules": "trigger_celery.client.schedules",
    "ScheduledPayload": "trigger_celery.core.schedules",
    "queues": "trigger_celery.client.queues",
    "batch": "trigger_celery.client.batches",
    "wait": "trigger_celery.runtime.waits",
    "idempotency_keys": "trigger_celery.client.idempotency",
    "RunHandle": "trigger_celery.client.handles",
    "logger": "trigger_celery.runtime.run_logger",
    "metadata": "trigger_celery.runtime.metadata",
    "tags": "trigger_celery.runtime.metadata",
    "run_locals": "trigger_celery.runtime.run_locals",
    "errors": "trigger_celery.errors",
    "AbortTaskRunError": "trigger_celery.errors",
    "TaskPayloadParsedError": "trigger_celery.errors",
    "SubtaskUnwrapError": "trigger_celery.errors",
    "RetryPolicy": "trigger_celery.core.retry",
    "retry": "trigger_celery.runtime.retry_block",
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
