"""Ending an attempt that ignored its stop (a cancel, a passed ``max_duration``, a lost
lease) for longer than the monitor's grace: the final writes a settle would have made,
before a prefork pool child exits, or while another pool's code goes on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from trigger_celery.coordination.outages import log_failure
from trigger_celery.core import tracing
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import actions, dispatch, transitions, waitpoints
from trigger_celery.errors import LeaseLostError, MaxDurationExceededError
from trigger_celery.models import Run

if TYPE_CHECKING:
    from trigger_celery.worker.monitor import Watched

log = logging.getLogger("trigger_celery.monitor")


def stop_unresponsive_attempt(w: Watched, exc: type[BaseException]) -> None:
    """Final writes for an attempt whose process is about to exit because it ignored a
    stop: a passed ``max_duration`` ends the run TIMED_OUT (a cancel already ended it,
    and what its code triggered since is canceled). The attempt's span is ended and
    exported first."""
    try:
        tracing.abandon(w.span, *_abandoned_outcome(exc))
    except Exception:
        log.warning("run %s: could not end its attempt's span", w.run_id, exc_info=True)
    if exc is MaxDurationExceededError:
        end_timed_out(w)
    if exc is LeaseLostError:
        return  # a lost slot belongs to the run's next attempt now
    # Canceled, also one canceled past its max_duration stop: that stop refuses no
    # trigger, so its code may have left children (a no-op for a run not CANCELED).
    if not cancel_late_children(w):
        return  # its slot is kept: the reaper cancels them when the lease ends
    dispatch.release_and_dispatch(w.run_id, attempt=w.attempt)


def cancel_late_children(w: Watched, *, retried: bool = False) -> bool:
    """Cancel what a canceled attempt that ignored its stop triggered after the cancel
    (no settle follows for it); False if that failed. Who tries again: this monitor's
    next tick (``retried``: threads, solo and gevent, where the abandoned attempt's
    heartbeat keeps its lease), else the reaper, when the lease on the canceled run ends
    (a pool process that exits, or died before getting here)."""
    try:
        actions.cancel_late_children(w.run_id)
    except Exception:
        who = "the monitor tries again" if retried else "the reaper will when its lease ends"
        log_failure(log, "run %s: could not cancel its late children; %s", w.run_id, who)
        return False
    return True


def end_timed_out(w: Watched) -> None:
    """TIMED_OUT for an attempt that ignored its ``max_duration`` stop, with the
    waitpoints of a parent waiting on it completed (the settle of an attempt that never
    returns would have done it)."""
    error = {
        "type": "MaxDurationExceededError",
        "message": "max_duration exceeded",
        "code": "MAX_DURATION_EXCEEDED",
    }
    won, _ = transitions.end(w.run_id, w.attempt, RunStatus.TIMED_OUT, error=error)
    if won:
        row = Run.objects.filter(id=w.run_id).values_list("parent_id", "batch_id").first()
        if row and (row[0] or row[1]):
            waitpoints.run_finished(w.run_id, row[1])


def _abandoned_outcome(exc: type[BaseException]) -> tuple[str, BaseException | None]:
    if exc is MaxDurationExceededError:
        return "TimedOut", MaxDurationExceededError("the attempt ignored its max_duration stop")
    if exc is LeaseLostError:
        return "LeaseLost", None
    return "Canceled", None
