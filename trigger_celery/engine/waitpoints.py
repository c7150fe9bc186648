"""Completing waitpoints and resuming the runs that wait on them (SPEC 7).

A waitpoint row is what a WAITING run waits for: a child run, a batch of runs, or an
instant. When the thing it waits for is done, the waitpoint is completed with its
result, and once a run has no pending waitpoint left it is queued again (and replayed
from the top when it starts; see :mod:`trigger_celery.worker.waits`).

Completing a waitpoint is a compare-and-set on ``completed_at``, so a child's own
completion and any repair pass may both try it: one wins, the other does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection

from trigger_celery.core import clock, faults
from trigger_celery.core.results import RunResult
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine import dispatch, queueing, transitions
from trigger_celery.engine.payloads import load_payload
from trigger_celery.models import Batch, Run, Waitpoint

_FINAL = sorted(s.value for s in FINAL_STATUSES)  # as in the index tc_run_batch_open


# What result_of reads: a parent's check of its child loads no other column.
RESULT_FIELDS = ("id", "task_identifier", "status", "output", "output_ref", "error")


def result_of(run: Run) -> RunResult:
    """The result a waiting parent gets for a finished ``run`` (``RESULT_FIELDS``)."""
    if run.status == RunStatus.COMPLETED:
        return RunResult(
            True, run.id, run.task_identifier, output=load_payload(run.output, run.output_ref)
        )
    error = run.error or {"type": run.status, "message": f"the run ended {run.status}"}
    return RunResult(False, run.id, run.task_identifier, error=error)


# A batch wait's results are one database value, which PostgreSQL caps (256 MB of
# jsonb): past this many bytes of outputs, and for any output kept in storage, an item's
# output stays in its run and is read when the parent resumes (``with_outputs``).
BATCH_RESULT_INLINE = 16 * 1024 * 1024
OUTPUT_IN_RUN = "output_in_run"


def batch_results(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """The results of a batch wait's runs, in order, within ``BATCH_RESULT_INLINE``."""
    results, room = [], BATCH_RESULT_INLINE
    for run in runs:
        size = 0 if run.output_ref else len(json.dumps(run.output, separators=(",", ":")))
        if run.status == RunStatus.COMPLETED and (run.output_ref or size > room):
            results.append(
                {
                    "ok": True,
                    "id": run.id,
                    "task_identifier": run.task_identifier,
                    OUTPUT_IN_RUN: True,
                }
            )
            continue
        room -= size
        results.append(result_of(run).to_json())
    return results


def with_outputs(results: list[dict[str, Any]]) -> list[RunResult]:
    """A batch wait's recorded results, the outputs left in their runs read back."""
    left = [r["id"] for r in results if r.get(OUTPUT_IN_RUN)]
    rows = Run.objects.filter(id__in=left).only("id", "output", "output_ref") if left else []
    outputs = {r.id: load_payload(r.output, r.output_ref) for r in rows}
    found = []
    for data in results:
        if data.get(OUTPUT_IN_RUN) and data["id"] not in outputs:
            found.append(_gone(data["id"], data["task_identifier"]))
        elif data.get(OUTPUT_IN_RUN):
            found.append(RunResult(True, data["id"], data["task_identifier"], outputs[data["id"]]))
        else:
            found.append(RunResult.from_json(data))
    return found


def _gone(run_id: str, task_id: str) -> RunResult:
    """The result of an item whose run was deleted: still one to inspect."""
    error = {"type": "NOT_FOUND", "message": f"the run {run_id} no longer exists"}
    return RunResult(False, run_id, task_id, error=error)


def complete_waitpoint(
    waitpoint_id: int, result: Any, *, run_id: str | None = None, kind: str | None = None
) -> None:
    """Record ``result`` on the waitpoint (once) and resume its run if nothing else is
    pending. ``run_id`` and ``kind``, when the caller has read them, save a query."""
    if run_id is None or kind is None:
        row = Waitpoint.objects.filter(id=waitpoint_id).values_list("run_id", "kind").first()
        if row is None:
            return
        run_id, kind = row
    if (
        Waitpoint.objects.pending()
        .filter(id=waitpoint_id)
        .update(completed_at=clock.now(), result=result)
    ):
        if kind == Waitpoint.Kind.DATETIME:
            faults.point("datetime-completed")
        resume_if_ready(run_id)


def complete_if_child_done(wp: Waitpoint) -> bool:
    """Complete a RUN waitpoint whose child has already finished; whether it was done."""
    child = Run.objects.filter(id=wp.child_run_id).order_by().only(*RESULT_FIELDS).first()
    if child is None or child.status not in FINAL_STATUSES:
        return False
    complete_waitpoint(wp.id, result_of(child).to_json(), run_id=wp.run_id, kind=wp.kind)
    return True


def complete_batch_if_done(batch_id: str | None) -> None:
    """Complete the BATCH waitpoint of ``batch_id`` once every run of the batch has finished."""
    if batch_id is not None:
        _complete_ready([], {batch_id})


def _complete_batch(wp: Waitpoint) -> None:
    if wp.item_runs is not None:
        _complete_listed_batch(wp, wp.item_runs)
        return
    children = list(
        Run.objects.filter(batch_id=wp.batch_id).order_by("batch_index").only(*RESULT_FIELDS)
    )
    # No runs: an empty batch (batch_trigger_and_wait([])) is done at once.
    if children or Batch.objects.filter(id=wp.batch_id, run_count=0).exists():
        results = batch_results(children)
        complete_waitpoint(wp.id, results, run_id=wp.run_id, kind=wp.kind)


def _complete_listed_batch(wp: Waitpoint, item_runs: list[str]) -> None:
    """A batch wait whose items were keyed: one result per item, from the run each item's
    key found, once every one of them has finished (wherever it belongs)."""
    found = {r.id: r for r in Run.objects.filter(id__in=set(item_runs)).only(*RESULT_FIELDS)}
    if any(r.status not in FINAL_STATUSES for r in found.values()):
        return
    listed = iter(batch_results(found[run_id] for run_id in item_runs if run_id in found))
    results = []
    for run_id in item_runs:
        if run_id not in found:  # deleted meanwhile: the item still gets a result to inspect
            results.append(_gone(run_id, "").to_json())
        else:
            results.append(next(listed))
    complete_waitpoint(wp.id, results, run_id=wp.run_id, kind=wp.kind)


def runs_finished(run_ids: Iterable[str]) -> None:
    """Complete the waitpoints of runs that just reached a final status."""
    run_ids = list(run_ids)
    if run_ids:
        batches = Run.objects.filter(id__in=run_ids, batch_id__isnull=False)
        _complete_ready(run_ids, set(batches.values_list("batch_id", flat=True)))


def run_finished(run_id: str, batch_id: str | None) -> None:
    """:func:`runs_finished` for one run whose batch the caller knows (the worker, after
    its final write): one query finds what is ready. (A final write given
    ``resume_with`` has done this itself: ``transitions.complete`` and ``end``.)"""
    _complete_ready([run_id], {batch_id} if batch_id else set())


def _complete_ready(run_ids: list[str], batch_ids: set[str]) -> None:
    """Complete the pending RUN waitpoints on ``run_ids``, and the pending BATCH
    waitpoints of ``batch_ids`` whose batch has no unfinished run left."""
    for wp_id, run_id, kind, child_run_id, batch_id, item_runs in _ready(
        run_ids, sorted(batch_ids)
    ):
        if isinstance(item_runs, str):  # a JSON column read raw: text on some backends
            item_runs = json.loads(item_runs)
        wp = Waitpoint(
            id=wp_id,
            run_id=run_id,
            kind=kind,
            child_run_id=child_run_id,
            batch_id=batch_id,
            item_runs=item_runs,
        )
        if kind == Waitpoint.Kind.BATCH:
            _complete_batch(wp)
        else:
            complete_if_child_done(wp)


def _ready(run_ids: list[str], batch_ids: list[str]) -> list[tuple[Any, ...]]:
    """What :func:`_complete_ready` completes, in one query. Raw SQL: this runs once per
    finished child, and compiling it through the ORM cost twice its round trip. A
    batch's check runs only when someone waits on it, and reads ``tc_run_batch_open``."""
    if not run_ids and not batch_ids:
        return []
    shape = (len(run_ids), len(batch_ids))
    sql = _READY_SQL.get(shape)
    if sql is None:
        wp, run = (connection.ops.quote_name(m._meta.db_table) for m in (Waitpoint, Run))
        final = ", ".join(f"'{status}'" for status in _FINAL)
        ready = []
        if run_ids:
            ready.append(f"child_run_id IN ({', '.join(['%s'] * len(run_ids))})")
        if batch_ids:
            ready.append(
                f"(kind = 'BATCH' AND batch_id IN ({', '.join(['%s'] * len(batch_ids))}) "
                f"AND NOT EXISTS (SELECT 1 FROM {run} r WHERE r.batch_id = {wp}.batch_id "
                f"AND NOT (r.status IN ({final}))))"
            )
        sql = (
            f"SELECT id, run_id, kind, child_run_id, batch_id, item_runs FROM {wp} "
            f"WHERE completed_at IS NULL AND ({' OR '.join(ready)})"
        )
        if sum(shape) <= 4:  # the worker's shapes; a sweep's long lists are not kept
            _READY_SQL[shape] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, [*run_ids, *batch_ids])
        return cursor.fetchall()


_READY_SQL: dict[tuple[int, int], str] = {}


def resume_if_ready(run_id: str) -> bool:
    """Queue a WAITING run again once none of its waitpoints is pending."""
    run = transitions.resume(run_id, queueing.ENTRY_FIELDS)
    if run is None:
        return False
    enqueue_resumed([run])
    return True


def enqueue_resumed(runs: list[Run]) -> None:
    """Put runs just resumed (read with ``queueing.ENTRY_FIELDS``) in their queues and
    start what can start."""
    if not runs:
        return
    # Their queues only: a resume frees no slot, so no other queue can start anything now.
    queues = {run.queue for run in runs}
    queue = queues.pop() if len(queues) == 1 else None
    dispatch.dispatch_ready(queue, entries=queueing.entries_of(runs))


def forget_failed_children(run_id: str) -> int:
    """Before a failed attempt's retry: remove the run's child waits whose child did not
    succeed, so the retry triggers those children again (their idempotency keys were
    released when they failed) instead of replaying the same failure; a child that
    succeeded is still replayed. Returns how many were removed."""
    failed = Waitpoint.objects.filter(
        run_id=run_id, kind=Waitpoint.Kind.RUN, completed_at__isnull=False, result__ok=False
    )
    return failed.delete()[0]


def complete_due_datetimes(limit: int = 500) -> int:
    """Pump step: DATETIME waitpoints whose time has come resume their runs."""
    ids = list(
        Waitpoint.objects.pending()
        .filter(kind=Waitpoint.Kind.DATETIME, resume_at__lte=clock.now())
        .values_list("id", flat=True)[:limit]
    )
    for waitpoint_id in ids:
        complete_waitpoint(waitpoint_id, {"ok": True})
    return len(ids)
