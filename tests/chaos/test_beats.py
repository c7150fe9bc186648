"""Several beats share django-celery-beat's periodic tasks: one send per due time."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

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


def test_a_beat_saving_its_counters_keeps_the_send_another_beat_marked(transactional_db):
    """django-celery-beat's entry save re-reads the row and saves all of it: a send
    another beat marked between that read and that write was undone, and the next beat
    sent the task again for the same due time (seen once in ~190 sends of two beats)."""
    from celery import current_app
    from django.db.models.signals import pre_save

    from trigger_celery.beat import SharedEntry

    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="counted", task="tests.plain_periodic", interval=every_5s, args='["counted"]'
    )
    mine = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    assert mine.take_turn()  # this beat sent it; its counters are saved at its next sync
    PeriodicTask.objects.filter(pk=task.pk).update(
        last_run_at=PeriodicTask.objects.get(pk=task.pk).last_run_at - timedelta(seconds=6)
    )  # ... and the next due time has come
    other_sent = []

    def other_beat_sends(**_):
        if not other_sent:  # another beat's turn lands while this beat saves
            other = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
            other_sent.append(other.take_turn())

    pre_save.connect(other_beat_sends, sender=PeriodicTask, dispatch_uid="other-beat")
    try:
        mine.model.total_run_count += 1
        mine.save()
    finally:
        pre_save.disconnect(sender=PeriodicTask, dispatch_uid="other-beat")
    other_beat_sends()  # a save that sends no signal: the other beat's turn comes after
    assert other_sent == [True]
    third = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    assert not third.take_turn()  # one send for that due time
    assert PeriodicTask.objects.get(pk=task.pk).total_run_count == 1
