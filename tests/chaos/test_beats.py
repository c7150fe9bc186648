"""Several beats share django-celery-beat's periodic tasks: one send per due time."""

from __future__ import annotations

import itertools
import time

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.integration.harness import wait_for
from tests.taskapp import events


def test_two_beats_send_a_five_second_periodic_task_once_per_due_time(own):
    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="every five seconds", task="tests.plain_periodic", interval=every_5s, args='["two"]'
    )
    own.worker(concurrency=2)
    beats = [own.beat(name="shared-beat-a"), own.beat(name="shared-beat-b")]
    wait_for(lambda: events.values("plain-periodic:two"), timeout=30, what="the first send")
    first = events.values("plain-periodic:two")[0]
    time.sleep(60)  # the window the executions are counted in; both beats stay up
    assert all(b.alive() for b in beats)
    sends = [t for t in events.values("plain-periodic:two") if t < first + 60]
    assert 11 <= len(sends) <= 13, sends
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert min(gaps) > 2.5, gaps  # never two sends for one due time
