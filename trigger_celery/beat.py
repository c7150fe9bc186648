"""The beat scheduler class: ``CELERY_BEAT_SCHEDULER = "trigger_celery.beat:Scheduler"``.

It is django-celery-beat's database scheduler (so existing periodic tasks keep
working) plus trigger_celery's pump: cron schedules (``schedules.task``), delayed runs,
retries that are due, ttl expiry, crash recovery and reconciliation. Several beats at
once are safe: each schedule tick makes exactly one run.
"""

from __future__ import annotations

from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler

from trigger_celery.engine.pump import Pump


class Scheduler(DatabaseScheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pump = Pump()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        return min(interval, self._pump.tick())
