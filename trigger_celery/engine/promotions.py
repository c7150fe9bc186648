"""Runs that change status because time passed or a worker appeared (pump steps).

* DELAYED runs whose time has come become QUEUED and enter their queue;
* QUEUED runs not started within their ttl become EXPIRED;
* PENDING_VERSION runs become QUEUED (or DELAYED) once a worker knows their task.

Each step selects candidates, then moves each one with its fenced transition, so
several beats running the same step at once never move a run twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError

from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core.retry import RetryPolicy
from trigger_celery.core.statuses import RunStatus
from trigger_celery.db import write_transaction
from trigger_celery.engine import queueing, transitions, waitpoints
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.models import Run


def promote_delayed(now: datetime | None = None, *, limit: int = 500) -> int:
    """DELAYED runs whose time has come become QUEUED (and enter their queue)."""
    now = now or clock.now()
    due = list(Run.objects.due_delayed(now).values_list("id", "ttl")[:limit])
    promoted = [
        run_id for run_id, ttl in due if transitions.promote_delayed(run_id, now=now, ttl=ttl)
    ]
    if promoted:
        queueing.enqueue(Run.objects.filter(id__in=promoted))
    return len(promoted)


def expire_due(now: datetime | None = None, *, limit: int = 500) -> int:
    """QUEUED runs not started within their ttl become EXPIRED (never executed)."""
    now = now or clock.now()
    ids = list(
        # A run that started once never expires (its retries wait QUEUED too).
        Run.objects.filter(
            status=RunStatus.QUEUED, ttl_expires_at__lte=now, started_at__isnull=True
        ).values_list("id", flat=True)[:limit]
    )
    expired = [run_id for run_id in ids if transitions.expire(run_id)]
    if expired:
        store = get_store()
        for run_id in expired:
            store.remove(run_id)
        waitpoints.runs_finished(expired)  # a waiting parent resumes with an error
    return len(expired)


def promote_pending_versions(task_ids: Iterable[str]) -> int:
    """Runs waiting for a worker that knows their task become QUEUED (or DELAYED)."""
    task_ids = list(task_ids)
    now = clock.now()
    promoted = []
    for run in Run.objects.filter(status=RunStatus.PENDING_VERSION, task_identifier__in=task_ids):
        definition = registry.get_task(run.task_identifier)
        if definition is None:
            continue
        known = decided_by(definition, run)
        if run.delayed_until is not None and run.delayed_until > now:
            try:
                with write_transaction():
                    transitions.delay_pending_version(run.id, known=known)
            except IntegrityError:
                # Another DELAYED run holds its debounce key (two first triggers raced
                # while no worker knew the task): that one stays the key's pending run.
                transitions.delay_pending_version(run.id, known={**known, "debounce_key": None})
        elif transitions.queue_pending_version(run.id, known=known, ttl=run.ttl):
            promoted.append(run.id)
    if promoted:
        queueing.enqueue(Run.objects.filter(id__in=promoted))
    return len(promoted)


def decided_by(definition: TaskDefinition, run: Run) -> dict[str, Any]:
    """The fields of a run triggered before any process knew its task that the task's
    definition decides, unless the trigger gave them: its queue, attempts, machine and
    max_duration (the run was made with the project's defaults)."""
    given = run.options
    known: dict[str, Any] = {
        "queue": run.queue if given.get("queue") else definition.queue.name,
    }
    if given.get("max_attempts") is None:
        policy = definition.retry or RetryPolicy.from_value(get_settings().RETRY)
        known["max_attempts"] = policy.max_attempts
    if not given.get("machine") and definition.machine:
        known["machine"] = definition.machine
    if given.get("max_duration") is None and definition.max_duration:
        known["max_duration"] = definition.max_duration
    return known
