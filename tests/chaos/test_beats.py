"""Several beats share django-celery-beat's periodic tasks: one send per due time."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

from django.db import connection
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


def test_one_beat_sends_an_interval_task_at_each_due_time(transactional_db, monkeypatch):
    """Celery's tick reserves an entry (its last_run_at moves to now), then applies it,
    whose turn marked the send at the time of its own, later read: the next wake, due by
    the reserved time, found the stored one not yet due and skipped a whole interval as
    "another beat's" (a 3 s task sent 6 s apart, with one beat)."""
    from celery import current_app

    from trigger_celery.beat import SharedEntry

    every_1s, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="each second", task="tests.plain_periodic", interval=every_1s, args='["x"]'
    )
    real_now = SharedEntry._default_now
    entry = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    sent = []
    for _ in range(3):
        while not entry.is_due()[0]:  # the beat sleeps until its entry is due
            time.sleep(0.005)
        following = next(entry)  # Scheduler.tick: reserve(), then apply_entry()
        reserved = entry.model.last_run_at
        # The turn's read takes 0.3 s (a busy database): its clock has moved on.
        monkeypatch.setattr(
            SharedEntry, "_default_now", lambda self: real_now(self) + timedelta(seconds=0.3)
        )
        sent.append(entry.take_turn())
        monkeypatch.setattr(SharedEntry, "_default_now", real_now)
        assert PeriodicTask.objects.get(pk=task.pk).last_run_at == reserved
        entry = following
    assert sent == [True, True, True]


def _write_last_run_at_as_another_tool(task_id: int, instant: datetime) -> None:
    """last_run_at as a tool other than Django writes it: milliseconds and an offset (on
    SQLite, where a datetime is text, not the spelling Django compares with)."""
    table = PeriodicTask._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_run_at = %s WHERE id = %s",
            [instant.astimezone(UTC).isoformat(timespec="milliseconds"), task_id],
        )


def test_a_periodic_task_whose_last_run_another_tool_wrote_is_sent(transactional_db):
    from celery import current_app

    from trigger_celery.beat import SharedEntry

    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="written elsewhere", task="tests.plain_periodic", interval=every_5s, args='["x"]'
    )
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    _write_last_run_at_as_another_tool(task.pk, long_ago)
    entry = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    assert entry.take_turn()  # due, and nobody else sent it
    assert PeriodicTask.objects.get(pk=task.pk).last_run_at > long_ago
    again = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    assert not again.take_turn()  # one send for that due time


def test_a_real_beat_sends_a_periodic_task_whose_last_run_another_tool_wrote(own):
    every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="written elsewhere", task="tests.plain_periodic", interval=every_2s, args='["sql"]'
    )
    _write_last_run_at_as_another_tool(task.pk, datetime.now(UTC) - timedelta(minutes=5))
    own.worker(concurrency=1)
    own.beat(name="written-elsewhere-beat")
    wait_for(lambda: len(events.values("plain-periodic:sql")) >= 3, timeout=60, what="3 sends")


def test_two_beats_take_one_turn_of_a_clocked_one_off_task(transactional_db):
    """django-celery-beat's clocked schedule is due whenever its time has passed,
    whatever ``last_run_at`` says: the second beat found it due after the first had
    marked it sent, and sent it again (seen 4 of 4 times with two real beats)."""
    from celery import current_app
    from django_celery_beat.models import ClockedSchedule

    from trigger_celery.beat import SharedEntry

    clocked = ClockedSchedule.objects.create(clocked_time=datetime.now(UTC) - timedelta(seconds=1))
    task = PeriodicTask.objects.create(
        name="clocked once",
        task="tests.plain_periodic",
        clocked=clocked,
        one_off=True,
        args='["clocked"]',
    )
    beat_a = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    beat_b = SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app)
    assert beat_a.is_due()[0] and beat_b.is_due()[0]  # both beats wake for it
    assert [beat_a.take_turn(), beat_b.take_turn()] == [True, False]  # one send

    # Moved to a later time, it is sent once more, at that time.
    clocked.clocked_time = datetime.now(UTC) + timedelta(seconds=1)
    clocked.save()
    time.sleep(1.2)
    again = [SharedEntry(PeriodicTask.objects.get(pk=task.pk), app=current_app) for _ in range(2)]
    assert [entry.take_turn() for entry in again] == [True, False]
