"""Waits that hold no worker (SPEC 7): ``trigger_and_wait``, batches and ``wait.for_``.

Python cannot checkpoint a running function, so a run that reaches a wait it cannot
satisfy yet *suspends*: the attempt ends with a ``Suspended`` outcome, the run becomes
WAITING and gives its slot back. When every waitpoint of the run is complete, the run
is queued again (with its original queue time) and, once it wins a slot, its function
is **replayed from the top**. Each wait call is a numbered step; a step that already has
a completed waitpoint row returns its recorded result at once, so the replay runs
through to the first unsatisfied wait. A step whose row records another task or kind
fails the run clearly (the code changed between suspend and resume).

Child triggers made by a wait are keyed by (parent run, step), so a replay never
triggers them twice. Code *between* waits runs again on every replay: make it
idempotent (``idempotency_keys.create`` for plain triggers).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from trigger_celery.errors import SubtaskUnwrapError, TriggerCeleryError
from trigger_celery.runtime.context import current_scope

# A timed wait this short (or shorter) stays in the worker instead of suspending the run.
IN_PROCESS_WAIT_SECONDS = 2.0


class SuspendRun(BaseException):
    """Raised inside a run to end the attempt at an unsatisfied wait.

    It derives from BaseException so a user's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason


class ReplayMismatchError(TriggerCeleryError):
    """On replay, a wait step differs from the one recorded before the suspension."""


@dataclass(frozen=True)
class Result:
    """The outcome of a child run: ``.ok``, ``.output`` or ``.error``, ``.unwrap()``."""

    ok: bool
    id: str
    task_identifier: str
    output: Any = None
    error: Any = None

    def unwrap(self) -> Any:
        if not self.ok:
            raise SubtaskUnwrapError(self.id, self.task_identifier, self.error)
        return self.output

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        return cls(
            data["ok"], data["id"], data["task_identifier"], data.get("output"), data.get("error")
        )


@dataclass(frozen=True)
class BatchResult:
    id: str
    runs: list[Result]


# -- steps ------------------------------------------------------------------------------


def _step(api: str, kind: str, label: str) -> tuple[Any, int, Any]:
    """The next step of the current run and its recorded waitpoint, if any."""
    from trigger_celery.models import Waitpoint

    scope = current_scope(api)
    step = scope.step
    scope.step += 1
    wp = Waitpoint.objects.filter(run_id=scope.ctx.run.id, step=step).first()
    if wp is not None and (wp.kind != kind or wp.label != label):
        raise ReplayMismatchError(
            f"wait step {step} of run {scope.ctx.run.id} was {wp.kind} {wp.label!r} before the "
            f"run suspended and is now {kind} {label!r}: the task's code changed between "
            "suspend and resume"
        )
    return scope, step, wp


def _child_key(run_id: str, step: int, index: int | None = None) -> str:
    from trigger_celery.core.idempotency import hash_key

    parts = ["wait-child", run_id, str(step)] + ([str(index)] if index is not None else [])
    return hash_key(parts)


def trigger_and_wait(
    task_id: str, payload: Any, options: Mapping[str, Any], *, validate: Any = None
) -> Result:
    from trigger_celery.client.idempotency import IdempotencyKey
    from trigger_celery.client.trigger import trigger_task
    from trigger_celery.models import Waitpoint

    scope, step, wp = _step(f"{task_id}.trigger_and_wait", "RUN", task_id)
    if wp is None:
        opts = dict(options)
        # Without a key of the user's, the child is keyed by (parent, step): a replay that
        # reaches this step again finds the same child instead of making another.
        opts.setdefault("idempotency_key", IdempotencyKey(_child_key(scope.ctx.run.id, step)))
        handle = trigger_task(task_id, payload, opts, {}, definition=validate)
        with transaction.atomic():
            wp, _ = Waitpoint.objects.get_or_create(
                run_id=scope.ctx.run.id,
                step=step,
                defaults={"kind": "RUN", "label": task_id, "child_run_id": handle.id},
            )
        _complete_if_child_done(wp)
        wp.refresh_from_db()
    if wp.completed_at is None:
        _wait_in_process_or_suspend(wp)
        wp.refresh_from_db()
    return Result.from_json(wp.result)


def batch_trigger_and_wait(
    label: str, items: list[tuple[str, Any, Mapping[str, Any], Any]]
) -> BatchResult:
    """``items``: (task id, payload, options, definition to validate with or None)."""
    from trigger_celery.client.batches import create_batch
    from trigger_celery.client.idempotency import IdempotencyKey
    from trigger_celery.models import Run, Waitpoint

    scope, step, wp = _step("batch_trigger_and_wait", "BATCH", label)
    if wp is None:
        if len(items) > 1000:
            raise ValueError(f"a batch takes at most 1000 items; this one has {len(items)}")

        def gen() -> Iterable[tuple[str, Any, bool, Any, Mapping[str, Any]]]:
            for index, (task_id, payload, options, definition) in enumerate(items):
                opts = dict(options)
                opts.setdefault(
                    "idempotency_key", IdempotencyKey(_child_key(scope.ctx.run.id, step, index))
                )
                yield task_id, definition, definition is not None, payload, opts

        handle = create_batch(gen(), {})
        with transaction.atomic():
            wp, _ = Waitpoint.objects.get_or_create(
                run_id=scope.ctx.run.id,
                step=step,
                defaults={"kind": "BATCH", "label": label, "batch_id": handle.id},
            )
            # Children that were already finished (cached by their keys) count too.
            Run.objects.filter(id__in=[h.id for h in handle.runs], batch_id__isnull=True).update(
                batch_id=handle.id
            )
        _complete_batch_if_done(wp.batch_id)
        wp.refresh_from_db()
    if wp.completed_at is None:
        _wait_in_process_or_suspend(wp)
        wp.refresh_from_db()
    return BatchResult(wp.batch_id, [Result.from_json(r) for r in wp.result])


def _wait_in_process_or_suspend(wp: Any) -> None:
    """A short timed wait continues in place; anything else not yet done suspends.

    A child run is not waited for in place: under load it may sit behind other runs,
    and holding the worker meanwhile is what waits exist to avoid.
    """
    if wp.kind == "DATETIME" and wp.resume_at is not None:
        remaining = (wp.resume_at - datetime.now(UTC)).total_seconds()
        if remaining <= IN_PROCESS_WAIT_SECONDS:
            time.sleep(max(0.0, remaining))
            complete_waitpoint(wp.id, {"ok": True})
            return
    raise SuspendRun(wp.step)


class WaitAPI:
    """``wait.for_(seconds=10)``, ``wait.until(datetime)`` inside a run."""

    def for_(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
    ) -> None:
        total = seconds + minutes * 60 + hours * 3600 + days * 86400 + weeks * 604800
        if total < 0:
            raise ValueError(f"wait.for_ needs a duration >= 0, got {total} seconds")
        self._until(datetime.now(UTC) + timedelta(seconds=total), "wait.for_")

    def until(self, when: datetime) -> None:
        if not isinstance(when, datetime):
            raise ValueError(f"wait.until needs a datetime, got {when!r}")
        self._until(when if when.tzinfo else when.replace(tzinfo=UTC), "wait.until")

    def _until(self, when: datetime, api: str) -> None:
        from trigger_celery.models import Waitpoint

        scope, step, wp = _step(api, "DATETIME", "wait")
        if wp is None:
            wp, _ = Waitpoint.objects.get_or_create(
                run_id=scope.ctx.run.id,
                step=step,
                defaults={"kind": "DATETIME", "label": "wait", "resume_at": when},
            )
        if wp.completed_at is None:
            _wait_in_process_or_suspend(wp)


wait = WaitAPI()


# -- completing waitpoints and resuming runs ------------------------------------------------


def result_of(run: Any) -> dict[str, Any]:
    from trigger_celery.client.payloads import load_payload

    data: dict[str, Any] = {
        "ok": run.status == "COMPLETED",
        "id": run.id,
        "task_identifier": run.task_identifier,
    }
    if data["ok"]:
        data["output"] = load_payload(run.output, run.output_ref)
    else:
        data["error"] = run.error or {"type": run.status, "message": f"the run ended {run.status}"}
    return data


def complete_waitpoint(waitpoint_id: int, result: Any) -> None:
    from trigger_celery.models import Waitpoint

    now = datetime.now(UTC)
    wp = Waitpoint.objects.filter(id=waitpoint_id).first()
    if wp is None:
        return
    if Waitpoint.objects.filter(id=waitpoint_id, completed_at__isnull=True).update(
        completed_at=now, result=result
    ):
        resume_if_ready(wp.run_id)


def _complete_if_child_done(wp: Any) -> None:
    from trigger_celery.core.statuses import FINAL_STATUSES
    from trigger_celery.models import Run

    child = Run.objects.filter(id=wp.child_run_id).first()
    if child is not None and child.status in FINAL_STATUSES:
        complete_waitpoint(wp.id, result_of(child))


def _complete_batch_if_done(batch_id: str | None) -> None:
    from trigger_celery.core.statuses import FINAL_STATUSES
    from trigger_celery.models import Run, Waitpoint

    if batch_id is None:
        return
    wp = Waitpoint.objects.filter(
        batch_id=batch_id, kind="BATCH", completed_at__isnull=True
    ).first()
    if wp is None:
        return
    final = [s.value for s in FINAL_STATUSES]
    # Cheap check first: this runs once per finished child, so a fan-out of N children
    # must not load the whole batch N times.
    if Run.objects.filter(batch_id=batch_id).exclude(status__in=final).exists():
        return
    children = list(Run.objects.filter(batch_id=batch_id).order_by("batch_index"))
    if children:
        complete_waitpoint(wp.id, [result_of(c) for c in children])


def runs_finished(run_ids: Iterable[str]) -> None:
    """Complete the waitpoints of runs that just reached a final status."""
    from trigger_celery.models import Run, Waitpoint

    run_ids = list(run_ids)
    if not run_ids:
        return
    for wp in Waitpoint.objects.filter(child_run_id__in=run_ids, completed_at__isnull=True):
        _complete_if_child_done(wp)
    for batch_id in set(
        Run.objects.filter(id__in=run_ids, batch_id__isnull=False).values_list(
            "batch_id", flat=True
        )
    ):
        _complete_batch_if_done(batch_id)


def resume_if_ready(run_id: str) -> bool:
    """Queue a WAITING run again once none of its waitpoints is pending."""
    from django.db.models import F

    from trigger_celery import dispatch
    from trigger_celery.models import Run, Waitpoint

    if Waitpoint.objects.filter(run_id=run_id, completed_at__isnull=True).exists():
        return False
    # attempt_count goes back by one: the resumed execution continues the same attempt.
    resumed = Run.objects.filter(id=run_id, status="WAITING").update(
        status="QUEUED", attempt_count=F("attempt_count") - 1, available_at=None
    )
    if resumed:
        from trigger_celery import realtime

        realtime.notify(run_id)
        dispatch.enqueue([Run.objects.get(id=run_id)])
        dispatch.dispatch_ready()
    return bool(resumed)


def complete_due_datetimes(limit: int = 500) -> int:
    """Pump step: DATETIME waitpoints whose time has come resume their runs."""
    from trigger_celery.models import Waitpoint

    now = datetime.now(UTC)
    ids = list(
        Waitpoint.objects.filter(
            kind="DATETIME", completed_at__isnull=True, resume_at__lte=now
        ).values_list("id", flat=True)[:limit]
    )
    for waitpoint_id in ids:
        complete_waitpoint(waitpoint_id, {"ok": True})
    return len(ids)


def settle_suspended(run: Any, ctx: Any, definition: Any, elapsed_ms: int) -> None:
    """EXECUTING -> WAITING (fenced), on_wait hooks, and resume at once if already done."""
    from trigger_celery.core.statuses import AttemptStatus
    from trigger_celery.models import Attempt
    from trigger_celery.runtime.executor import _call_recorded, _fenced

    now = datetime.now(UTC)
    with transaction.atomic():
        if not _fenced(
            run.id, ctx.attempt.number, status="WAITING", execution_ms=run.execution_ms + elapsed_ms
        ):
            return
        Attempt.objects.filter(run_id=run.id, number=ctx.attempt.number).update(
            status=AttemptStatus.SUSPENDED, finished_at=now
        )
    _call_recorded(
        definition, run.id, ctx.attempt.number, "on_wait", ctx=ctx, task=definition.id, wait=True
    )
    # A child may have finished between the wait and the suspension.
    resume_if_ready(run.id)
