"""``batch``: trigger runs of several tasks at once, and read a batch back (SPEC 5).

batch.trigger([{"id": "task-1", "payload": ...}, {"id": "task-2", "payload": ...}])
batch.trigger_by_task([{"task": task1, "payload": ...}])
batch.trigger_and_wait([...])              # inside a run
batch.retrieve(batch_id)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from trigger_celery.api.runs import RunRecord
from trigger_celery.core.serialization import text_problem
from trigger_celery.engine.batches import (
    BatchHandle,
    batch_options_of,
    create_batch,
    item_fields,
    items_of,
)
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.errors import RunNotFoundError
from trigger_celery.models import Batch, Run
from trigger_celery.off_loop import off_event_loop_methods
from trigger_celery.worker.waits import batch_trigger_and_wait


@dataclass(frozen=True)
class BatchRecord:
    id: str
    run_count: int
    created_at: datetime
    runs: list[RunRecord]


@off_event_loop_methods
class BatchAPI:
    def trigger(
        self,
        items: Iterable[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        **batch_options: Any,
    ) -> BatchHandle:
        """Items ``{"id": task_id, "payload": ..., "options": {...}}``; not validated.
        The batch's options as a dict, keyword arguments, or both."""

        def gen() -> Iterable[tuple[str, TaskDefinition | None, bool, Any, Mapping[str, Any]]]:
            for i, item in enumerate(items_of(items)):
                task_id, payload, options = item_fields(item, i, task_key="id")
                if not isinstance(task_id, str):
                    raise ValueError(
                        f"batch item {i}: 'id' must be a task id string, got {task_id!r}"
                    )
                yield task_id, registry.get_task(task_id), False, payload, options

        return create_batch(gen(), batch_options_of(options, batch_options))

    def trigger_by_task(
        self,
        items: Iterable[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        **batch_options: Any,
    ) -> BatchHandle:
        """Items ``{"task": my_task, "payload": ...}``; payloads are validated."""

        def gen() -> Iterable[tuple[str, TaskDefinition | None, bool, Any, Mapping[str, Any]]]:
            for i, item in enumerate(items_of(items)):
                definition, payload, options = item_fields(item, i, task_key="task")
                if not isinstance(definition, TaskDefinition):
                    raise ValueError(f"batch item {i}: 'task' must be a task, got {definition!r}")
                yield definition.id, definition, True, payload, options

        return create_batch(gen(), batch_options_of(options, batch_options))

    def trigger_and_wait(self, items: Iterable[Mapping[str, Any]]) -> Any:
        """Like :meth:`trigger`, then wait for every run; ``.runs`` in item order."""

        parsed = []
        for i, item in enumerate(items_of(items)):
            task_id, payload, options = item_fields(item, i, task_key="id")
            parsed.append((task_id, payload, options, None))
        return batch_trigger_and_wait("batch", parsed)

    def trigger_by_task_and_wait(self, items: Iterable[Mapping[str, Any]]) -> Any:
        """Like :meth:`trigger_by_task`, then wait for every run."""

        parsed = []
        for i, item in enumerate(items_of(items)):
            definition, payload, options = item_fields(item, i, task_key="task")
            if not isinstance(definition, TaskDefinition):
                raise ValueError(f"batch item {i}: 'task' must be a task, got {definition!r}")
            parsed.append((definition.id, payload, options, definition))
        return batch_trigger_and_wait("batch", parsed)

    def retrieve(self, batch_id: str) -> BatchRecord:
        if isinstance(batch_id, str) and text_problem(batch_id) is not None:
            raise RunNotFoundError(f"no batch with id {batch_id!r}")  # none has such an id
        row = Batch.objects.filter(id=batch_id).first()
        if row is None:
            raise RunNotFoundError(f"no batch with id {batch_id!r}")
        # Items whose key found a run not their own (another batch's, one triggered
        # alone, an earlier item's): that run is the item's.
        outside = {int(index): run_id for index, run_id in (row.outside_runs or {}).items()}
        rows = (
            Run.objects.filter(Q(batch_id=batch_id) | Q(id__in=outside.values()))
            .prefetch_related("attempts")
            .order_by("batch_index", "created_at", "id")
        )
        # One run per item: a batch triggered again under its idempotency key makes a new
        # run for an item whose run failed (its key was released); the newest stands, as
        # the handle of that trigger says.
        by_id = {r.id: r for r in rows}
        latest = {r.batch_index: r for r in rows if r.batch_id == batch_id}
        latest.pop(None, None)
        latest.update((i, by_id[run_id]) for i, run_id in outside.items() if run_id in by_id)
        listed = {r.id for r in latest.values()}
        unindexed = [
            r
            for r in rows
            if r.batch_id == batch_id and r.batch_index is None and r.id not in listed
        ]
        kept = [latest[i] for i in sorted(latest)] + unindexed
        return BatchRecord(
            row.id, row.run_count, row.created_at, [RunRecord.from_model(r) for r in kept]
        )


batch = BatchAPI()
