"""Schedules fired by real ``celery beat`` processes and run by a real worker (SPEC 8).

One scenario, several minutes long because cron has minute resolution: two beats run
side by side, one of them is killed half way, and every kind of schedule row is present
at once - a healthy one, a deactivated one, corrupt ones, ones edited while beat runs (one
in SQL with ``updated_at`` in another spelling, then through the API) and a
deduplication-key upsert - next to a django-celery-beat periodic task.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.integration.harness import wait_for
from tests.integration.test_schedules_version import external_ids, other_spelling, write_in_sql
from tests.taskapp import (
    events,
    scheduled,  # noqa: F401  (defines the schedules.task tasks)
)
from trigger_celery import runs, schedules
from trigger_celery.models import Run, Schedule

pytestmark = pytest.mark.integration


def tick_runs(schedule_id: str) -> list[Run]:
    return list(Run.objects.filter(schedule_id=schedule_id).order_by("schedule_tick_at"))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def wait_until_seconds_into_minute(low: float, high: float) -> None:
    """Start the scenario away from a minute boundary, so counts are predictable."""
    while not low <= datetime.now(UTC).second < high:
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_two_beats_fire_each_tick_once_and_pick_up_every_change(own):
    worker = own.worker(concurrency=2)
    wait_until_seconds_into_minute(5, 40)
    main = schedules.create(
        task="sched-record",
        cron="* * * * *",
        timezone="America/New_York",
        external_id="acme",
        deduplication_key="main",
    )
    switched_off = schedules.create(task="sched-record", cron="* * * * *", deduplication_key="off")
    schedules.deactivate(switched_off.id)
    # The same deduplication key again: the yearly schedule becomes an every-minute one.
    upsert_first = schedules.create(
        task="sched-record", cron="0 0 1 1 *", deduplication_key="upsert"
    )
    upsert = schedules.create(task="sched-record", cron="* * * * *", deduplication_key="upsert")
    assert upsert.id == upsert_first.id
    # Rows no scheduler can fire: a corrupt cron and a task that no longer exists.
    Schedule.objects.create(
        id="sched_corrupt",
        task_identifier="sched-record",
        cron="*/0 * * * *",
        deduplication_key="corrupt",
    )
    Schedule.objects.create(
        id="sched_orphan",
        task_identifier="deleted-task",
        cron="* * * * *",
        deduplication_key="orphan",
    )
    edited_in_sql = schedules.create(
        task="sched-record", cron="0 0 1 1 *", deduplication_key="sql", external_id="before"
    )
    edited_by_api = schedules.create(task="sched-record", cron="0 0 1 1 *", deduplication_key="api")
    every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="plain celery periodic task",
        task="tests.plain_periodic",
        interval=every_2s,
        args='["dcb"]',
    )

    beat_a = own.beat(name="sched-beat-a")
    beat_b = own.beat(name="sched-beat-b")
    # Changes made while both beats run, with no restart.
    time.sleep(3)
    # As another tool writes the row: its updated_at in another spelling than Django's.
    stored = Schedule.objects.get(id=edited_in_sql.id)
    write_in_sql(
        edited_in_sql.id,
        cron="* * * * *",
        external_id="from-sql",
        updated_at=other_spelling(stored.updated_at),
    )
    schedules.update(edited_by_api.id, cron="* * * * *")

    # The first two ticks with both beats up.
    wait_for(
        lambda: len(tick_runs(main.id)) >= 2, timeout=200, interval=1, what="two ticks of main"
    )
    beat_a.kill()
    ticks_at_kill = len(tick_runs(main.id))
    # The row last written in SQL, edited through the API: the next ticks carry the edit.
    schedules.update(edited_in_sql.id, external_id="from-api")
    # One more tick with one beat: it follows the last with none lost (checked below).
    wait_for(
        lambda: len(tick_runs(main.id)) >= ticks_at_kill + 1,
        timeout=200,
        interval=1,
        what="a tick after a beat was killed",
    )
    assert beat_b.alive(), beat_b.log()[-3000:]
    assert worker.alive()

    # -- one run per tick, consecutive minutes, none lost when a beat died ----------------
    main_runs = tick_runs(main.id)
    ticks = [r.schedule_tick_at for r in main_runs]
    assert len(ticks) == len(set(ticks))
    assert all(t.second == 0 and t.microsecond == 0 for t in ticks)
    assert [b - a for a, b in itertools.pairwise(ticks)] == [timedelta(minutes=1)] * (
        len(ticks) - 1
    )

    # -- each run completed and saw the schedule's payload --------------------------------
    for run in main_runs:
        wait_for(lambda r=run: runs.retrieve(r.id).is_completed, timeout=60, what=f"run {run.id}")
        assert runs.retrieve(run.id).status == "COMPLETED"
    seen = {e["timestamp"]: e for e in events.values(f"sched:{main.id}")}
    previous = None
    for tick in ticks:
        payload = seen[iso(tick)]
        assert payload["aware"] is True
        assert payload["type"] == "IMPERATIVE"
        assert payload["timezone"] == "America/New_York"
        assert payload["external_id"] == "acme"
        assert payload["last_timestamp"] == (iso(previous) if previous else None)
        assert payload["upcoming"] == [iso(tick + timedelta(minutes=n)) for n in range(1, 6)]
        previous = tick
    assert [r.id for r in runs.list(schedule=main.id)] == [r.id for r in reversed(main_runs)]

    # -- every other kind of row ------------------------------------------------------------
    # The last tick fired every due row in one pass: each has its run of it (made a moment
    # after main's, which the wait above looked for).
    for schedule_id in (upsert.id, edited_in_sql.id, edited_by_api.id):
        wait_for(
            lambda s=schedule_id: ticks[-1] in [r.schedule_tick_at for r in tick_runs(s)],
            timeout=30,
            what=f"{schedule_id}'s run of the last tick",
        )
    assert tick_runs(switched_off.id) == []
    # Rows written while beat runs fire from the tick after it picks them up: every tick,
    # but for the first when the setup ran close to it.
    assert len(tick_runs(upsert.id)) >= len(ticks) - 1
    for schedule_id in (edited_in_sql.id, edited_by_api.id):
        edited_ticks = [r.schedule_tick_at for r in tick_runs(schedule_id)]
        assert len(edited_ticks) >= len(ticks) - 1, schedule_id
        assert len(edited_ticks) == len(set(edited_ticks))
    sql_then_api = external_ids(edited_in_sql.id)
    assert "from-sql" in sql_then_api and sql_then_api[-1] == "from-api", sql_then_api
    corrupt = Schedule.objects.get(id="sched_corrupt")
    assert "step '0'" in corrupt.problem and tick_runs("sched_corrupt") == []
    orphan = Schedule.objects.get(id="sched_orphan")
    assert "'deleted-task' is not defined" in orphan.problem and tick_runs("sched_orphan") == []
    # Beat still serves django-celery-beat's own periodic tasks.
    assert len(events.values("plain-periodic:dcb")) >= 3
