"""The beat scheduler class: ``CELERY_BEAT_SCHEDULER = "trigger_celery.beat:Scheduler"``.

It is django-celery-beat's database scheduler (so existing periodic tasks keep
working) plus trigger_celery's pump: cron schedules (``schedules.task``), delayed runs,
retries that are due, ttl expiry, crash recovery and reconciliation.

Several beats at once are safe. Each schedule tick makes exactly one run (the schedule
engine's compare-and-set), and each django-celery-beat periodic task is sent once per
due time: before sending, a beat re-reads the task's ``last_run_at`` from the database
and moves it with a compare-and-set; a beat that finds the task no longer due (another
beat sent it) or loses the race skips its turn.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery.utils.time import maybe_make_aware
from django.db import DatabaseError
from django.db.models import TextField
from django.db.models.functions import Cast
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from trigger_celery.coordination.outages import log_failure
from trigger_celery.db import heal_connections
from trigger_celery.engine.pump import Pump

log = logging.getLogger("trigger_celery.beat")
# How soon beat tries again after the database failed it.
OUTAGE_RETRY_SECONDS = 1.0


class SharedEntry(ModelEntry):  # type: ignore[misc]
    """A periodic task whose ``last_run_at`` only the send's compare-and-set writes."""

    # A beat's periodic sync must not move last_run_at back to its own older view.
    save_fields = ["total_run_count", "no_changes"]

    def save(self) -> None:
        # One column: django-celery-beat's save() reads the row and saves all of it, and
        # a send another beat marked in between was undone (then sent again). An
        # update() sends no signal, as ``no_changes`` asked of that save().
        PeriodicTask.objects.filter(pk=self.model.pk).update(
            total_run_count=self.model.total_run_count
        )

    def take_turn(self) -> bool:
        """True when this beat may send the task now (and it is marked sent)."""
        # The fence is last_run_at as stored, compared as text: on SQLite a datetime is
        # text, and one another tool wrote in another spelling never equals the one
        # Django would send back, so the task would never be sent again.
        rows = PeriodicTask.objects.filter(pk=self.model.pk).annotate(
            stored=Cast("last_run_at", TextField())
        )
        last, stored = rows.values_list("last_run_at", "stored").first() or (None, None)
        if last is not None:
            if self._sent_for_its_clock(maybe_make_aware(last)):
                return False  # another beat sent this clocked task
            in_zone = maybe_make_aware(last).astimezone(self.app.timezone)
            if not self.schedule.is_due(in_zone)[0]:
                return False  # another beat sent it for this due time
        # Marked sent at the time this beat reserved the entry (Celery's tick moves the
        # entry's last_run_at to it before it applies the entry), so the next due time
        # this beat waits for is the one the stored value says. Marked at the later time
        # of this read, the next turn came before it was due by the stored value, and
        # was skipped as "another beat's": a whole interval lost.
        reserved = self.model.last_run_at
        now = self._default_now()
        if reserved is not None:
            at = maybe_make_aware(reserved)
            if (last is None or maybe_make_aware(last) < at) and at <= maybe_make_aware(now):
                now = reserved
        fence = {"last_run_at__isnull": True} if last is None else {"stored": stored}
        return bool(rows.filter(**fence).update(last_run_at=now))

    def _sent_for_its_clock(self, last: datetime) -> bool:
        """True when this clocked task was sent for its time: the send marked is at or
        after it. A clocked schedule is due whenever its time has passed, whatever
        ``last_run_at`` says, so without this every beat sent it once."""
        clocked = getattr(self.model, "clocked", None)
        return clocked is not None and last >= maybe_make_aware(clocked.clocked_time)


class Scheduler(DatabaseScheduler):  # type: ignore[misc]
    Entry = SharedEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pump = Pump()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval = super().tick(*args, **kwargs)
        except DatabaseError:
            # django-celery-beat reads its periodic tasks here (all of them every few
            # minutes): an unreachable database must not end beat, and with it every
            # schedule, delayed run and repair of the pump.
            log_failure(log, "beat could not read its periodic tasks; trying again")
            heal_connections()
            interval = OUTAGE_RETRY_SECONDS
        return min(interval, self._pump.tick())

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        try:
            if isinstance(entry, SharedEntry) and not entry.take_turn():
                return
        except DatabaseError as err:  # its turn comes again at the next tick
            log.warning("beat: could not take %s's turn (%s); trying again", entry.name, err)
            return
        super().apply_entry(entry, producer=producer)
