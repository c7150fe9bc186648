"""What ``runs.cancel``, ``runs.replay`` and ``runs.reschedule`` do to the rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.outages import log_failure
from trigger_celery.core import clock
from trigger_celery.core.durations import parse_delay
from trigger_celery.core.handles import RunHandle
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine import dispatch, transitions, waitpoints
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.errors import InvalidRunStateError, RunNotFoundError
from trigger_celery.models import Run

log = logging.getLogger("trigger_celery.engine")

# Options a replay does not copy: the key and debounce belonged to the first trigger,
# and the delay has passed.
_NOT_REPLAYED = ("idempotency_key", "idempotency_key_ttl", "debounce", "delay")
_FINAL = [s.value for s in FINAL_STATUSES]


def cancel_run(run_id: str) -> bool:
    """Cancel ``run_id`` and its unfinished descendants; False if it had already ended
    (then nothing changes, unless it had ended CANCELED: its descendants are canceled).

    A run that never started never will; an executing run is stopped by its worker,
    which polls ``cancel_requested_at``.
    """
    run = Run.objects.filter(id=run_id).only("id", "queue").first()
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    left = _cancel(run_id)
    if left is not None:
        try:
            get_store().remove(run_id)
        except Exception:
            # CANCELED is committed, so no claim can start it (the dequeue refuses it);
            # reconcile drops the stale entry. The children and waiters go on below.
            log_failure(log, "could not take run %s out of its queue in the store", run_id)
        if left in (RunStatus.DEQUEUED, RunStatus.WAITING):
            # No worker will settle it: give its slot back here (a no-op if none).
            dispatch.release_and_dispatch(run_id, run.queue, unstarted=left == RunStatus.DEQUEUED)
    elif not Run.objects.filter(id=run_id, status=RunStatus.CANCELED).exists():
        # It ended some other way (COMPLETED, FAILED, ...): cancel is a no-op, and the
        # children it left running are its own work, not a cancel's to stop. A run that
        # is CANCELED already goes on to its children: a cancel cut short gets finished.
        return False
    for child_id in (
        Run.objects.filter(parent_id=run_id).exclude(status__in=_FINAL).values_list("id", flat=True)
    ):
        cancel_run(child_id)
    if left is not None:
        waitpoints.runs_finished([run_id])  # a parent waiting on this run resumes with an error
    return left is not None


def _cancel(run_id: str) -> RunStatus | None:
    """``transitions.cancel`` from whatever status the run is in; the status it left, or
    None if it had ended (or does not exist)."""
    while True:
        row = Run.objects.filter(id=run_id).values_list("status", "attempt_count").first()
        if row is None or RunStatus(row[0]) in FINAL_STATUSES:
            return None
        if transitions.cancel(run_id, RunStatus(row[0]), row[1]):
            return RunStatus(row[0])
        # It moved between the read and the write: look again.


def cancel_late_children(run_id: str) -> int:
    """Cancel the unfinished children of ``run_id`` if it is CANCELED; how many.

    :func:`cancel_run` cancels the children it finds, but the canceled attempt's code
    runs on until it is stopped and may trigger more meanwhile (a ``trigger_and_wait``
    in its grace period). Whatever ends that attempt calls this once its code has
    stopped, or is about to be: its settle, the monitor before it ends a pool process
    that ignored its stop, the reaper when a dead worker's lease on it expires. Each
    cancel is fenced as ``runs.cancel``'s is, so a child ending at the same moment
    keeps its own end, and a late end of the parent cannot overwrite its cancel."""
    if not Run.objects.filter(id=run_id, status=RunStatus.CANCELED).exists():
        return 0
    children = Run.objects.filter(parent_id=run_id).exclude(status__in=_FINAL)
    return sum(cancel_run(child_id) for child_id in children.values_list("id", flat=True))


_SAME_PAYLOAD: Any = object()


def replay_run(
    run_id: str, overrides: Mapping[str, Any], payload: Any = _SAME_PAYLOAD
) -> RunHandle:
    """A new run of the same task with the same options (and payload, unless one is
    given: the dashboard's replay lets it be edited first), linked to ``run_id``."""
    run = Run.objects.filter(id=run_id).first()
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    options = {k: v for k, v in run.options.items() if k not in _NOT_REPLAYED}
    options.update(overrides)
    if payload is _SAME_PAYLOAD:
        payload = load_payload(run.payload, run.payload_ref)
    return trigger_task(
        run.task_identifier,
        payload,
        options,
        {},
        replayed_from=run.id,
    )


def reschedule_run(run_id: str, delay: Any) -> None:
    """Move a DELAYED run's start (any other status is an ``InvalidRunStateError``)."""
    now = clock.now()
    when = parse_delay(delay, now=now)
    run = Run.objects.filter(id=run_id).only("id", "status").first()
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    # Not a status change: the run stays DELAYED, only its start moves.
    updated = Run.objects.filter(id=run_id, status=RunStatus.DELAYED).update(
        delayed_until=when or now
    )
    if not updated:
        raise InvalidRunStateError(
            f"run {run_id} is {run.status}; only a DELAYED run can be rescheduled"
        )
