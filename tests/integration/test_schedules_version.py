"""Beat's compare-and-set on a schedule row's ``version`` (SPEC 8).

Beat reads the due rows, then fires each with an UPDATE that must find the row as it
read it. It used to compare ``updated_at``, which missed an edit saved within the same
clock reading as the row beat read, and which never matched again on SQLite once
another tool had written ``updated_at`` in another spelling: that schedule stopped
firing, silently. The edits are made at the exact point between beat's read and its
fire, through a hook around the real ``_fire`` (the database is real; nothing is
mocked). A real ``celery beat`` firing a row written this way is part of
``test_schedules_beat``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.integration.test_schedules_edits import edit_between_read_and_fire, tick_runs
from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.engine import schedules as schedule_engine
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.registry import registry
from trigger_celery.engine.schedules import fire_due
from trigger_celery.models import Schedule

TABLE = Schedule._meta.db_table


def make(key: str = "k1", cron: str = "* * * * *", **kw: Any) -> Any:
    return schedules.create(task="sched-record", cron=cron, deduplication_key=key, **kw)


def external_ids(schedule_id: str) -> list[str | None]:
    return [load_payload(r.payload, r.payload_ref)["external_id"] for r in tick_runs(schedule_id)]


def write_in_sql(schedule_id: str, **values: Any) -> None:
    """An UPDATE as another tool sends it: the values go to the database as written."""
    columns = ", ".join(f"{name} = %s" for name in values)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET {columns} WHERE id = %s",
            [*values.values(), schedule_id],
        )


def other_spelling(instant: datetime) -> str:
    """``instant`` as a tool other than Django writes it: milliseconds and an offset."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds")


@pytest.mark.django_db
def test_an_edit_saved_within_the_clock_reading_beat_read_is_fired_with_its_values(
    monkeypatch,
):
    # A coarse clock (or a fast machine): every save in this test reads the same instant.
    reading = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: reading)
    s = make(external_id="before")
    tick = s.next_run
    edit_between_read_and_fire(monkeypatch, lambda: schedules.update(s.id, external_id="after"))
    assert fire_due(tick) == []  # the row changed under the pass: the tick is left
    assert Schedule.objects.get(id=s.id).updated_at == reading  # nothing else tells
    fire_due(tick)  # the next pass reads the edit
    assert external_ids(s.id) == ["after"]


@pytest.mark.django_db
def test_a_schedule_whose_updated_at_another_tool_wrote_keeps_firing():
    s = make(external_id="before")
    tick = s.next_run
    written = datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)
    write_in_sql(s.id, external_id="from-sql", updated_at=other_spelling(written))
    assert Schedule.objects.get(id=s.id).updated_at == written  # Django reads it fine
    (fired,) = fire_due(tick)
    assert fired.run_id is not None
    assert external_ids(s.id) == ["from-sql"]
    # And it goes on: the next tick fires too.
    fire_due(tick + timedelta(minutes=1))
    assert external_ids(s.id) == ["from-sql", "from-sql"]


@pytest.mark.django_db
def test_every_write_moves_the_version_on():
    s = make()
    versions = [Schedule.objects.get(id=s.id).version]

    def moved() -> bool:
        versions.append(Schedule.objects.get(id=s.id).version)
        return versions[-1] > versions[-2]

    schedules.update(s.id, external_id="x")
    assert moved()
    schedules.update(s.id, external_id="x")  # nothing changed: nothing written
    assert not moved()
    schedules.deactivate(s.id)
    assert moved()
    schedules.activate(s.id)
    assert moved()
    fire_due(Schedule.objects.get(id=s.id).next_tick_at)  # beat's own write
    assert moved()
    row = Schedule.objects.get(id=s.id)
    row.external_id = "saved"
    row.save()
    assert row.version == versions[-1] + 1 == Schedule.objects.get(id=s.id).version


@pytest.mark.django_db
def test_a_tick_a_beat_of_the_release_before_fired_is_not_fired_again(monkeypatch):
    """A beat of the release before moves no version when it fires; a new beat that read
    the row before that makes no second run of the tick (the run's unique tick key)."""
    s = make()
    tick = s.next_run

    def old_beat_fires() -> None:
        row = Schedule.objects.get(id=s.id)
        Schedule.objects.filter(id=s.id, next_tick_at=tick, updated_at=row.updated_at).update(
            next_tick_at=tick + timedelta(minutes=1), last_tick_at=tick
        )
        definition = registry.get_task("sched-record")
        assert definition is not None
        run, _span = schedule_engine._tick_run(row, definition, tick, [tick + timedelta(minutes=1)])
        run.save(force_insert=True)

    edit_between_read_and_fire(monkeypatch, old_beat_fires)
    fire_due(tick)
    assert [r.schedule_tick_at for r in tick_runs(s.id)] == [tick]
    assert Schedule.objects.get(id=s.id).next_tick_at == tick + timedelta(minutes=1)
