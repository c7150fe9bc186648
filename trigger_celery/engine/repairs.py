"""Repairs: every step that follows a commit, redone from the rows alone.

Completing waitpoints, resuming parents and completing batches run in process right
after the commit that makes them due. A process killed between the two commits (a
worker SIGKILLed after a child's final write, a beat killed after completing a timed
wait) would leave a parent WAITING forever. The pump therefore runs :func:`repair`
every few seconds; it finds what is due but not done, and does it:

* a RUN waitpoint whose child is final is completed;
* a BATCH waitpoint whose batch has runs, all final, is completed (one that lists its
  items' runs, when every listed run is final);
* a WAITING run none of whose waitpoints is pending is queued again.

(Due DATETIME waitpoints and dispatching ready runs are pump steps of their own.) Each
repair goes through the same compare-and-set as the in-process path, so both may try
it: one wins, the other does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import Exists, OuterRef, QuerySet

from trigger_celery.coordination.outages import is_outage
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine import waitpoints
from trigger_celery.models import Run, Waitpoint

_FINAL = [s.value for s in FINAL_STATUSES]
log = logging.getLogger("trigger_celery.engine.repairs")


def repair(limit: int = 200) -> dict[str, int]:
    """One sweep; returns how many of each repair it made."""
    return {
        "run_waitpoints": complete_finished_children(limit),
        "batch_waitpoints": complete_finished_batches(limit),
        "resumed": resume_ready_runs(limit),
    }


def complete_finished_children(limit: int) -> int:
    pending = Waitpoint.objects.pending().filter(
        kind=Waitpoint.Kind.RUN, child_run__status__in=_FINAL
    )
    done = 0
    for wp in pending[:limit]:
        with _one_repair(f"waitpoint {wp.id} of run {wp.run_id}"):
            waitpoints.complete_if_child_done(wp)
            done += 1
    return done


def complete_finished_batches(limit: int) -> int:
    unfinished = Run.objects.filter(batch_id=OuterRef("batch_id")).exclude(status__in=_FINAL)
    any_run = Run.objects.filter(batch_id=OuterRef("batch_id"))
    pending = Waitpoint.objects.pending().filter(kind=Waitpoint.Kind.BATCH, batch_id__isnull=False)
    batch_ids = list(
        pending.filter(Exists(any_run), ~Exists(unfinished)).values_list("batch_id", flat=True)[
            :limit
        ]
    )
    batch_ids += _listed_batches(pending, limit)
    for batch_id in batch_ids:
        with _one_repair(f"the wait on batch {batch_id}"):
            waitpoints.complete_batch_if_done(batch_id)
    return len(batch_ids)


@contextmanager
def _one_repair(what: str) -> Iterator[None]:
    """One repair whose row fails (an output storage no longer has, a result the
    database refuses) is logged, and the sweep goes on to the others; an outage ends
    the sweep (every other repair would meet it too)."""
    try:
        yield
    except Exception as err:
        if is_outage(err):
            raise
        log.exception("repairs: %s could not be repaired; the others go on", what)


# The id after which the next sweep looks at listed batch waits (0: from the start).
_listed_after = 0


def _listed_batches(pending: QuerySet[Waitpoint], limit: int) -> list[str]:
    """The batches of the next ``limit`` pending waits on keyed items, by id, each sweep
    going on where the last one stopped: such a wait may wait on runs of other batches,
    whose ends do not look at it, so it is checked here until they have ended, and the
    sweeps go round all of them however many wait (the first ``limit`` alone would keep
    a wait behind them waiting while they do)."""
    global _listed_after
    rows = list(
        pending.filter(item_runs__isnull=False, id__gt=_listed_after)
        .order_by("id")
        .values_list("id", "batch_id")[:limit]
    )
    _listed_after = rows[-1][0] if len(rows) == limit else 0
    return [batch_id for _, batch_id in rows if batch_id is not None]


def resume_ready_runs(limit: int) -> int:
    pending = Waitpoint.objects.pending().filter(run_id=OuterRef("id"))
    ids = list(
        Run.objects.filter(status=RunStatus.WAITING)
        .filter(~Exists(pending))
        .values_list("id", flat=True)[:limit]
    )
    return sum(1 for run_id in ids if waitpoints.resume_if_ready(run_id))
