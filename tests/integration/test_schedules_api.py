"""The schedules API and the firing logic against the real database (SPEC 8).

These tests run inside a transaction (``db``), so beat processes of other tests never see
their rows; the engine is driven with explicit ``now`` values. The same logic running in
real beat processes is covered by ``test_schedules_beat.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import override_settings

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import runs, schedules
from trigger_celery.core import clock
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.registry import registry
from trigger_celery.engine.schedules import ScheduleTicker, fire_due, plan_stale, sync_declarative
from trigger_celery.errors import (
    DeclarativeScheduleError,
    InvalidScheduleError,
    ScheduleNotFoundError,
)
from trigger_celery.models import Run, Schedule

pytestmark = pytest.mark.django_db


def make(key: str = "k1", cron: str = "0 * * * *", **kw):
    return schedules.create(task="sched-record", cron=cron, deduplication_key=key, **kw)


def row(record) -> Schedule:
    return Schedule.objects.get(id=record.id)


def tick_runs(schedule_id: str) -> list[Run]:
    return list(Run.objects.filter(schedule_id=schedule_id).order_by("schedule_tick_at"))


# -- create / retrieve / list / update ------------------------------------------------------


def test_create_plans_the_next_tick_and_describes_it():
    s = make(cron="0 8 * * *", timezone="America/New_York", external_id="user_1")
    assert s.id.startswith("sched_") and s.task == "sched-record"
    assert (s.timezone, s.external_id, s.active, s.declarative) == (
        "America/New_York",
        "user_1",
        True,
        False,
    )
    assert s.cron_description == "At 08:00"
    assert len(s.upcoming) == 5 and s.next_run == s.upcoming[0] > datetime.now(UTC)
    assert all(t.astimezone(ZoneNY).hour == 8 for t in s.upcoming)
    assert schedules.retrieve(s.id) == s


def test_same_deduplication_key_updates_instead_of_adding():
    first = make("user_1-reminder", cron="0 8 * * *", external_id="user_1")
    again = make(
        "user_1-reminder", cron="30 9 * * *", timezone="Europe/London", external_id="user_1"
    )
    other = make("user_2-reminder", cron="0 8 * * *", external_id="user_2")
    assert again.id == first.id and other.id != first.id
    assert (again.cron, again.timezone) == ("30 9 * * *", "Europe/London")
    assert Schedule.objects.count() == 2
    assert row(again).next_tick_at == again.upcoming[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "hello-world"}, "'hello-world' is a plain task"),
        ({"task": "celery.backend_cleanup"}, "is not defined"),
        ({"task": "no-such-task"}, "is not defined"),
        ({"cron": "*/0 * * * *"}, "step '0'"),
        ({"cron": "0 0 * * * *"}, "seconds are not supported"),
        ({"timezone": "Mars/Base"}, "'Mars/Base' is not an IANA"),
        ({"deduplication_key": ""}, "deduplication_key must be a non-empty string"),
        ({"deduplication_key": "declarative:x"}, "reserved"),
        ({"environments": ["PROD"]}, "unknown environment"),
        ({"external_id": 5}, "external_id must be a string"),
    ],
)
def test_create_refuses_bad_input_naming_it(kwargs, message):
    args = {"task": "sched-record", "cron": "0 * * * *", "deduplication_key": "k", **kwargs}
    with pytest.raises(InvalidScheduleError, match=message):
        schedules.create(**args)
    assert not Schedule.objects.exists()


def test_create_requires_a_deduplication_key():
    with pytest.raises(TypeError):
        schedules.create(task="sched-record", cron="0 * * * *")  # type: ignore[call-arg]


def test_update_activate_deactivate_delete():
    s = make()
    updated = schedules.update(s.id, cron="*/5 * * * *", external_id="acme")
    assert (updated.cron, updated.external_id, updated.timezone) == ("*/5 * * * *", "acme", "UTC")
    assert updated.next_run.minute % 5 == 0
    with pytest.raises(InvalidScheduleError, match="'bad' has 1 field"):
        schedules.update(s.id, cron="bad")
    assert schedules.retrieve(s.id).cron == "*/5 * * * *"

    off = schedules.deactivate(s.id)
    assert off.active is False and off.next_run is None and off.upcoming == []
    assert row(off).next_tick_at is None
    on = schedules.activate(s.id)
    assert on.active is True and on.next_run is not None

    schedules.delete(s.id)
    with pytest.raises(ScheduleNotFoundError, match=s.id):
        schedules.retrieve(s.id)
    with pytest.raises(ScheduleNotFoundError):
        schedules.delete(s.id)


def test_update_changes_the_deduplication_key_and_refuses_one_in_use():
    s, other = make("first-key"), make("second-key")
    moved = schedules.update(s.id, deduplication_key="renamed-key")
    assert moved.deduplication_key == "renamed-key"
    assert (
        schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="renamed-key").id
        == s.id
    )  # the key finds it under its new name
    with pytest.raises(InvalidScheduleError, match="'second-key' is another schedule's"):
        schedules.update(s.id, deduplication_key="second-key")
    with pytest.raises(InvalidScheduleError, match="reserved"):
        schedules.update(s.id, deduplication_key="declarative:x")
    assert (
        row(s).deduplication_key == "renamed-key" and row(other).deduplication_key == "second-key"
    )


def test_list_filters_and_pages():
    made = [make(f"k{i}", external_id="even" if i % 2 == 0 else "odd") for i in range(7)]
    schedules.deactivate(made[0].id)
    page = schedules.list(limit=3)
    assert len(page.data) == 3 and page.has_next_page()
    assert [s.id for s in page] == sorted(s.id for s in made)  # walks every page
    assert {s.id for s in schedules.list(external_id="even")} == {s.id for s in made[::2]}
    assert [s.id for s in schedules.list(active=False)] == [made[0].id]
    assert len(list(schedules.list(task="sched-record", active=True))) == 6
    assert list(schedules.list(declarative=True)) == []
    with pytest.raises(ValueError, match="limit"):
        schedules.list(limit=0)


@pytest.mark.parametrize("name", ["active", "declarative"])
@pytest.mark.parametrize("value", ["false", 0, "no"])
def test_list_refuses_a_flag_that_is_not_a_bool_naming_it(name, value):
    make("on")
    with pytest.raises(
        TypeError, match=f"schedules.list {name}= must be True, False or None, got {value!r}"
    ):
        schedules.list(**{name: value})


def test_timezones_and_preview():
    zones = schedules.timezones()
    assert "America/New_York" in zones and "UTC" in zones and zones == sorted(zones)
    times = schedules.preview(
        "0 0 * * *",
        timezone="America/New_York",
        after=datetime(2025, 3, 8, 12, tzinfo=UTC),
        count=2,
    )
    assert times[1] - times[0] == timedelta(hours=23)


# -- firing ---------------------------------------------------------------------------------


ZoneNY = __import__("zoneinfo").ZoneInfo("America/New_York")


def test_a_due_tick_fires_one_run_with_the_schedule_payload():
    s = make(cron="*/10 * * * *", timezone="America/New_York", external_id="user_9")
    tick = s.next_run
    assert fire_due(tick - timedelta(seconds=1)) == []
    fired = fire_due(tick + timedelta(seconds=2))
    assert [f.run_id is not None for f in fired] == [True]
    (run,) = tick_runs(s.id)
    assert run.schedule_tick_at == tick and run.task_identifier == "sched-record"
    payload = load_payload(run.payload, run.payload_ref)
    assert payload["timestamp"] == tick.isoformat().replace("+00:00", "Z")
    assert payload["last_timestamp"] is None
    assert payload["schedule_id"] == s.id and payload["external_id"] == "user_9"
    assert payload["timezone"] == "America/New_York" and payload["type"] == "IMPERATIVE"
    assert len(payload["upcoming"]) == 5
    after = row(s)
    assert after.last_tick_at == tick and after.next_tick_at == tick + timedelta(minutes=10)
    assert fire_due(tick + timedelta(seconds=3)) == []  # nothing twice

    second_tick = after.next_tick_at
    fire_due(second_tick)
    runs_now = tick_runs(s.id)
    assert len(runs_now) == 2
    second = load_payload(runs_now[1].payload, runs_now[1].payload_ref)
    assert second["last_timestamp"] == payload["timestamp"]
    assert [r.id for r in runs.list(schedule=s.id)] == [r.id for r in reversed(runs_now)]


def test_two_schedulers_racing_for_one_tick_make_one_run():
    s = make(cron="* * * * *")
    tick = s.next_run
    stale_copy = row(s)  # what a second beat read before the first one fired
    fire_due(tick)
    from trigger_celery.engine.schedules import _fire

    assert _fire(stale_copy, tick) is None
    assert len(tick_runs(s.id)) == 1
    # The unique (schedule, tick) key refuses a second run for the tick in any case.
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.create(
            id="run_dup", task_identifier="sched-record", schedule_id=s.id, schedule_tick_at=tick
        )


def test_a_cron_edit_between_beat_reading_a_due_row_and_firing_it_is_kept():
    """Beat read the due row; the cron was edited (by a web server whose clock is a
    minute behind, so the new plan kept the same next tick); beat's compare-and-set on
    the tick alone succeeded and planned the tick after from the old cron."""
    from trigger_celery.engine.schedules import _fire

    s = make(cron="0 * * * *")
    tick = s.next_run
    read_by_beat = row(s)
    with clock.freeze(tick - timedelta(minutes=1)):
        schedules.update(s.id, cron="0,30 * * * *")
    assert row(s).next_tick_at == tick  # the same tick, for the new cron
    assert _fire(read_by_beat, tick) is None  # the row changed under it: not fired
    fire_due(tick)  # the next pass reads the edited row
    assert [r.schedule_tick_at for r in tick_runs(s.id)] == [tick]
    assert row(s).next_tick_at == tick + timedelta(minutes=30)


def test_an_edit_of_a_row_read_before_a_tick_keeps_what_beat_wrote():
    s = make(cron="*/10 * * * *")
    tick = s.next_run
    stale = row(s)  # a form or the API read the row ...
    fire_due(tick + timedelta(seconds=1))  # ... beat fired the tick meanwhile ...
    fired = row(s)
    assert fired.last_tick_at == tick and fired.next_tick_at == tick + timedelta(minutes=10)
    stale.external_id = "edited"  # ... and the edit, which changes no timing, is saved
    stale.save()
    after = row(s)
    assert after.external_id == "edited"
    assert (after.last_tick_at, after.next_tick_at) == (fired.last_tick_at, fired.next_tick_at)
    # The next tick still knows the one before it.
    fire_due(after.next_tick_at)
    latest = tick_runs(s.id)[-1]
    assert load_payload(latest.payload, latest.payload_ref)["last_timestamp"] == (
        tick.isoformat().replace("+00:00", "Z")
    )


def test_a_saved_edit_writes_the_changed_fields_and_in_place_changes_count():
    s = make(cron="*/10 * * * *", environments=["PRODUCTION"])
    edited = row(s)
    edited.environments.append("STAGING")  # changed in place
    edited.save()
    assert row(s).environments == ["PRODUCTION", "STAGING"]
    edited.save()  # nothing changed since: nothing written, nothing lost
    assert row(s).environments == ["PRODUCTION", "STAGING"]


def test_a_schedule_activated_again_in_sql_is_planned_whatever_problem_it_had():
    s = make(cron="*/10 * * * *")
    # A beat of another deployment reported a problem, then the schedule was switched
    # off by the API and on again straight in SQL.
    Schedule.objects.filter(id=s.id).update(problem="task 'x' is not defined here")
    schedules.deactivate(s.id)
    Schedule.objects.filter(id=s.id).update(active=True)
    now = datetime.now(UTC)
    assert plan_stale(now) == 1
    planned = row(s)
    assert planned.next_tick_at is not None and planned.next_tick_at > now
    assert planned.problem == ""


def test_a_schedule_edited_while_inactive_and_activated_in_sql_fires_no_stale_tick():
    s = make(cron="0 * * * *")
    schedules.deactivate(s.id)
    schedules.update(s.id, cron="30 * * * *")  # edited while switched off: nothing planned
    assert row(s).next_tick_at is None
    # Switched on again straight in SQL a day later: planned from then, no late tick.
    Schedule.objects.filter(id=s.id).update(active=True)
    later = datetime.now(UTC) + timedelta(days=1)
    assert ScheduleTicker().tick(now=later) == []
    assert tick_runs(s.id) == []
    planned = row(s).next_tick_at
    assert planned is not None and later < planned <= later + timedelta(hours=1)
    assert planned.minute == 30


def test_a_schedule_deactivated_and_activated_again_in_sql_fires_no_tick_it_missed():
    s = make(cron="*/2 * * * *")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ScheduleTicker().tick(now=now)
    tick = row(s).next_tick_at
    assert tick is not None
    Schedule.objects.filter(id=s.id).update(active=False)  # switched off in SQL
    assert ScheduleTicker().tick(now=tick - timedelta(seconds=30)) == []
    assert row(s).next_tick_at is None  # as schedules.deactivate leaves it
    # Switched on again in SQL after the tick it missed: planned from then, no late tick.
    Schedule.objects.filter(id=s.id).update(active=True)
    after = tick + timedelta(seconds=30)
    assert ScheduleTicker().tick(now=after) == []
    assert tick_runs(s.id) == []
    assert row(s).next_tick_at == tick + timedelta(minutes=2)


def test_a_cron_written_in_sql_that_breaks_planning_does_not_hold_up_later_rows():
    """A cron with a digit int() cannot read (a superscript two) was a ValueError that
    ended the planning pass, so rows after it were never planned."""
    bad = make("bad", cron="0 * * * *")
    later = make("later", cron="* * * * *")
    Schedule.objects.filter(id=bad.id).update(cron="0 \u00b2 * * *")
    Schedule.objects.filter(id=later.id).update(cron="*/5 * * * *")
    assert bad.id < later.id  # planned in id order: the bad row comes first
    now = datetime.now(UTC)
    ScheduleTicker().tick(now=now)
    assert "'\u00b2' is not a valid hour value" in row(bad).problem
    assert row(bad).next_tick_at is None
    planned = row(later)
    assert planned.next_tick_at is not None and planned.next_tick_at.minute % 5 == 0
    assert planned.next_tick_for == "*/5 * * * *|UTC"


def test_a_cron_too_long_to_store_is_refused_naming_it():
    long_cron = "0," * 200 + "0 * * * *"
    with pytest.raises(InvalidScheduleError, match="409 characters long; at most 255 fit"):
        make(cron=long_cron)
    s = make(cron="0 * * * *")
    with pytest.raises(InvalidScheduleError, match="409 characters long"):
        schedules.update(s.id, cron=long_cron)
    with pytest.raises(InvalidScheduleError, match="409 characters long"):
        schedules.task(id="sched-too-long", cron=long_cron)(lambda payload, ctx: None)
    assert row(s).cron == "0 * * * *" and registry.get_task("sched-too-long") is None


def test_missed_ticks_fire_once_late_and_are_not_caught_up():
    s = make(cron="0 * * * *")
    tick = s.next_run
    now = tick + timedelta(hours=3, minutes=30)  # beat was down for three hours
    fired = fire_due(now)
    assert len(fired) == 1
    (run,) = tick_runs(s.id)
    assert run.schedule_tick_at == tick
    assert row(s).next_tick_at == tick + timedelta(hours=4)
    assert fire_due(now + timedelta(minutes=1)) == []


def test_environments_are_honoured():
    s = make(cron="* * * * *", environments=["STAGING"])
    assert s.next_run is None  # not in this environment; beat still keeps its place
    tick = row(s).next_tick_at
    fired = fire_due(tick)  # the test settings run as PRODUCTION
    assert [f.skipped for f in fired] == ["not enabled in the PRODUCTION environment"]
    assert tick_runs(s.id) == [] and row(s).problem == ""
    assert row(s).next_tick_at == tick + timedelta(minutes=1)
    with override_settings(TRIGGER_CELERY={**settings.TRIGGER_CELERY, "ENVIRONMENT": "STAGING"}):
        fire_due(tick + timedelta(minutes=1))
    assert len(tick_runs(s.id)) == 1


def test_a_deactivated_schedule_does_not_fire():
    s = make(cron="* * * * *")
    schedules.deactivate(s.id)
    assert fire_due(s.next_run + timedelta(minutes=5)) == []
    plan_stale(s.next_run)
    assert fire_due(s.next_run + timedelta(minutes=5)) == []
    assert tick_runs(s.id) == []


def test_bad_rows_are_skipped_and_reported_without_stopping_others():
    good = make("good", cron="* * * * *")
    corrupt = make("corrupt", cron="* * * * *")
    orphan = make("orphan", cron="* * * * *")
    plain = make("plain", cron="* * * * *")
    tick = good.next_run
    Schedule.objects.filter(id=corrupt.id).update(cron="61 * * * *")
    Schedule.objects.filter(id=orphan.id).update(task_identifier="deleted-task")
    Schedule.objects.filter(id=plain.id).update(task_identifier="hello-world")
    fired = {f.schedule_id: f for f in ScheduleTicker().tick(now=tick)}  # plans, then fires
    assert fired[good.id].run_id is not None
    assert len(tick_runs(good.id)) == 1
    assert "'61 * * * *': minute 61 is out of range" in row(corrupt).problem
    assert row(corrupt).next_tick_at is None
    assert "'deleted-task' is not defined" in row(orphan).problem
    assert "'hello-world' is not a schedules.task" in row(plain).problem
    assert tick_runs(corrupt.id) == tick_runs(orphan.id) == tick_runs(plain.id) == []
    # The corrupt row waits for a fix. The orphan's tick is left, until its next tick, to
    # a beat that knows the task (another deployment); then it is skipped.
    assert row(orphan).next_tick_at == tick
    ScheduleTicker().tick(now=tick + timedelta(minutes=1))
    assert row(orphan).next_tick_at == tick + timedelta(minutes=2)
    assert tick_runs(orphan.id) == []
    plan_stale(tick)
    assert row(corrupt).next_tick_at is None

    Schedule.objects.filter(id=corrupt.id).update(cron="*/2 * * * *")
    plan_stale(tick)
    fixed = row(corrupt)
    assert fixed.problem == "" and fixed.next_tick_at is not None
    assert fixed.next_tick_at.minute % 2 == 0


def test_a_tick_a_beat_cannot_run_is_left_to_a_beat_that_can():
    """A rolling deploy: a beat whose code lacks the task leaves the tick; a beat of the
    new code fires it, once."""
    s = make(cron="* * * * *")
    tick = s.next_run
    Schedule.objects.filter(id=s.id).update(task_identifier="only-in-the-new-code")
    assert fire_due(tick) == []  # this beat does not know the task
    assert row(s).next_tick_at == tick and "not defined" in row(s).problem
    Schedule.objects.filter(id=s.id).update(task_identifier="sched-record")  # the new code
    fired = fire_due(tick + timedelta(seconds=1))
    assert [f.run_id is not None for f in fired] == [True]
    assert [r.schedule_tick_at for r in tick_runs(s.id)] == [tick]
    assert row(s).problem == ""


def test_an_edit_made_in_sql_is_planned_before_the_stale_tick_fires():
    s = make(cron="0 0 1 1 *")
    Schedule.objects.filter(id=s.id).update(cron="* * * * *", timezone="Asia/Tokyo")
    now = datetime.now(UTC)
    assert plan_stale(now) == 1
    edited = row(s)
    assert edited.next_tick_for == "* * * * *|Asia/Tokyo"
    assert edited.next_tick_at - now <= timedelta(minutes=1)
    # A row inserted without next_tick_at (fixtures, SQL) is planned too.
    Schedule.objects.create(
        id="sched_raw", task_identifier="sched-record", cron="*/5 * * * *", deduplication_key="raw"
    )
    plan_stale(now)
    assert row(Schedule(id="sched_raw")).next_tick_at is not None
    # Edited and not yet planned: the old tick is not fired.
    Schedule.objects.filter(id=s.id).update(cron="0 0 1 1 *")
    assert [f for f in fire_due(edited.next_tick_at) if f.schedule_id == s.id] == []
    assert tick_runs(s.id) == []


# -- declarative schedules ------------------------------------------------------------------


def test_sync_creates_updates_and_deletes_declarative_schedules(monkeypatch):
    counts = sync_declarative()
    assert counts["created"] == 2
    tokyo = Schedule.objects.get(task_identifier="sched-declared-tokyo")
    assert (tokyo.cron, tokyo.timezone, tokyo.environments, tokyo.declarative) == (
        "0 5 1 1 *",
        "Asia/Tokyo",
        ["PRODUCTION", "STAGING"],
        True,
    )
    assert tokyo.next_tick_at is not None
    assert sync_declarative() == {"created": 0, "updated": 0, "deleted": 0}

    definition = registry.get_task("sched-declared-utc")
    from trigger_celery.core.schedules import ScheduleSpec

    monkeypatch.setattr(definition, "declared_schedule", ScheduleSpec("0 3 * * *", "Europe/Berlin"))
    assert sync_declarative()["updated"] == 1
    utc = Schedule.objects.get(task_identifier="sched-declared-utc")
    assert (utc.cron, utc.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert utc.next_tick_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).hour == 3

    monkeypatch.setattr(definition, "declared_schedule", None)
    assert sync_declarative()["deleted"] == 1
    assert not Schedule.objects.filter(task_identifier="sched-declared-utc").exists()

    out = StringIO()
    call_command("trigger_sync", stdout=out)
    assert "0 created, 0 updated, 0 deleted" in out.getvalue()


def test_declarative_schedules_are_read_only_through_the_api():
    sync_declarative()
    tokyo = next(iter(schedules.list(declarative=True, task="sched-declared-tokyo")))
    assert tokyo.declarative and tokyo.environments == ["PRODUCTION", "STAGING"]
    for call in (
        lambda: schedules.update(tokyo.id, cron="* * * * *"),
        lambda: schedules.deactivate(tokyo.id),
        lambda: schedules.activate(tokyo.id),
        lambda: schedules.delete(tokyo.id),
    ):
        with pytest.raises(DeclarativeScheduleError, match="declared in code"):
            call()
    assert Schedule.objects.get(id=tokyo.id).cron == "0 5 1 1 *"


def test_declarations_are_validated_when_the_task_is_defined():
    from trigger_celery.errors import ConfigurationError

    with pytest.raises(InvalidScheduleError, match="'77 \\* \\* \\* \\*': minute 77"):
        schedules.task(id="bad-cron", cron="77 * * * *")
    with pytest.raises(InvalidScheduleError, match="'Nowhere/City' is not an IANA"):
        schedules.task(id="bad-zone", cron={"pattern": "0 * * * *", "timezone": "Nowhere/City"})
    with pytest.raises(ConfigurationError, match="unknown option"):
        schedules.task(id="bad-option", cron="0 * * * *", schedule="daily")
    from trigger_celery import task

    with pytest.raises(ConfigurationError, match="unknown option"):
        task(id="plain-with-cron", cron="0 * * * *")
