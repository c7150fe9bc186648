"""Bulk cancel and replay from the dashboard: a ``BulkAction`` row worked off in chunks.

The request that confirms a bulk action only writes the row; a background thread of
the web process then takes the runs newest first, a chunk at a time, and records its
progress on the row, which the progress page polls. If that process goes away mid-way,
the next look at the progress page picks the work up where the row's cursor says it
stopped. Each run's cancel or replay commits with the row's progress past it, so a
resumed action neither does a run twice nor counts it wrong; and runs made after the
action was confirmed (its own replays among them) are never part of it.

A cancel is about the runs that have not finished yet: ``total`` counts those when the
action is confirmed, ``done`` the runs it actually canceled, and a run that finished on
its own before its turn came is skipped (``skipped``: what is left of ``total`` once
the action has finished). A replay is about every matching run.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from trigger_celery.core.statuses import FINAL_STATUSES
from trigger_celery.db import write_transaction
from trigger_celery.engine.actions import cancel_run, replay_run
from trigger_celery.models import BulkAction, Run
from trigger_celery.views.run_filters import RunFilters

log = logging.getLogger("trigger_celery.bulk")

CHUNK = 100
# A row not advanced for this long while unfinished has lost its thread.
STALE = timedelta(seconds=15)

_active: set[int] = set()
_active_lock = threading.Lock()


def matching(action: BulkAction) -> Any:
    """The runs ``action`` is about, newest first (not yet limited by its cursor): for a
    cancel only those not finished yet."""
    return selected(action).exclude(**_finished(action)).order_by("-id")


def selected(action: BulkAction) -> Any:
    """Every run ``action`` was asked about, finished or not: by a filter, only the runs
    made before it was confirmed (its own replays match the filter too)."""
    if action.run_ids:
        return Run.objects.filter(id__in=action.run_ids)
    runs = RunFilters.from_query(action.filters).runs()
    if action.created_at is not None:
        runs = runs.filter(created_at__lte=action.created_at)
    return runs


def _finished(action: BulkAction) -> dict[str, Any]:
    if action.action == BulkAction.Action.CANCEL:
        return {"status__in": [s.value for s in FINAL_STATUSES]}
    return {}


def skipped(action: BulkAction) -> int:
    """Runs of a finished cancel that had ended on their own before it got to them."""
    if action.finished_at is None:
        return 0
    return max(action.total - action.done - action.failed, 0)


def create(action: str, *, run_ids: list[str], filters: dict[str, Any], user: str) -> BulkAction:
    if action not in BulkAction.Action.values:
        raise ValueError(f"unknown bulk action {action!r}; use cancel or replay")
    row = BulkAction(action=action, run_ids=run_ids, filters=filters, created_by=user)
    row.total = matching(row).count()
    row.save()
    transaction.on_commit(lambda: start(row.pk))
    return row


def start(action_id: int) -> None:
    """Work ``action_id`` off in a thread of this process (once at a time)."""
    with _active_lock:
        if action_id in _active:
            return
        _active.add(action_id)
    threading.Thread(
        target=_work, args=(action_id,), name=f"tc-bulk-{action_id}", daemon=True
    ).start()


def resume_if_stale(action: BulkAction) -> None:
    if action.finished_at is None and timezone.now() - action.updated_at > STALE:
        start(action.pk)


def _work(action_id: int) -> None:
    try:
        close_old_connections()
        while process_chunk(action_id):
            pass
    except Exception:
        log.exception("bulk action %s stopped; it resumes when its page is looked at", action_id)
    finally:
        with _active_lock:
            _active.discard(action_id)
        connection.close()


def process_chunk(action_id: int) -> bool:
    """Do one chunk; True while there is more to do."""
    action = BulkAction.objects.get(pk=action_id)
    if action.finished_at is not None:
        return False
    left = action.total - action.done - action.failed
    qs = matching(action)
    if action.cursor:
        qs = qs.filter(id__lt=action.cursor)
    ids = list(qs.values_list("id", flat=True)[: max(min(CHUNK, left), 0)])
    for run_id in ids:
        _one(action, run_id)
    action.refresh_from_db()
    more = bool(ids) and action.done + action.failed < action.total
    if not more:
        action.finished_at = timezone.now()
        action.save(update_fields=["finished_at", "updated_at"])
    return more


def _one(action: BulkAction, run_id: str) -> None:
    """Cancel or replay one run, and move the row's progress past it in the same commit."""
    try:
        with write_transaction():  # SQLite's write lock from the start, as each call takes it
            if action.action == BulkAction.Action.CANCEL:
                # False: it finished between the query and here, nothing was canceled.
                done = int(cancel_run(run_id))
            else:
                replay_run(run_id, {})
                done = 1
            _advance(action.pk, run_id, done=done)
    except Exception as exc:  # one bad run does not stop the rest
        log.warning("bulk %s of %s failed: %s", action.action, run_id, exc)
        _advance(action.pk, run_id, failed=1)


def _advance(action_id: int, run_id: str, *, done: int = 0, failed: int = 0) -> None:
    BulkAction.objects.filter(pk=action_id).update(
        done=F("done") + done,
        failed=F("failed") + failed,
        cursor=run_id,
        updated_at=timezone.now(),
    )
