"""An edit saved while beat fires a schedule (SPEC 8), and what the API says about a
schedule of another environment.

Beat reads the due rows, then fires them one by one. An edit saved in between must not
be fired with the values beat read: beat's compare-and-set covers the row's
``updated_at``, which every save moves. The tests edit the row at that exact point
through a hook around the real ``_fire`` (the database is real; nothing is mocked).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.engine import schedules as schedule_engine
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.schedules import fire_due, sync_declarative
from trigger_celery.models import Run, Schedule

pytestmark = pytest.mark.django_db


def make(key: str = "k1", cron: str = "* * * * *", **kw: Any) -> Any:
    return schedules.create(task="sched-record", cron=cron, deduplication_key=key, **kw)


def tick_runs(schedule_id: str) -> list[Run]:
    return list(Run.objects.filter(schedule_id=schedule_id).order_by("schedule_tick_at"))


def edit_between_read_and_fire(monkeypatch: pytest.MonkeyPatch, edit: Callable[[], None]) -> None:
    """Run ``edit`` once, after ``fire_due`` read the due rows and before it fires one."""
    real_fire = schedule_engine._fire
    pending = [edit]

    def fire_after_edit(schedule: Schedule, now: Any) -> Any:
        while pending:
            pending.pop()()
        return real_fire(schedule, now)

    monkeypatch.setattr(schedule_engine, "_fire", fire_after_edit)


def test_environments_edited_between_read_and_fire_are_honoured_by_that_tick(monkeypatch):
    s = make()  # every environment
    tick = s.next_run
    edit_between_read_and_fire(
        monkeypatch, lambda: schedules.update(s.id, environments=["STAGING"])
    )
    assert fire_due(tick) == []  # the row changed under the pass: the tick is left
    monkeypatch.undo()
    fired = fire_due(tick)  # the next pass reads the edited row
    assert [f.skipped for f in fired] == ["not enabled in the PRODUCTION environment"]
    assert tick_runs(s.id) == []
    assert Schedule.objects.get(id=s.id).next_tick_at == tick + timedelta(minutes=1)


def test_external_id_edited_between_read_and_fire_is_in_that_ticks_payload(monkeypatch):
    s = make(external_id="old-user")
    tick = s.next_run
    edit_between_read_and_fire(monkeypatch, lambda: schedules.update(s.id, external_id="new"))
    fire_due(tick)
    monkeypatch.undo()
    fire_due(tick)
    (run,) = tick_runs(s.id)
    assert run.schedule_tick_at == tick
    assert load_payload(run.payload, run.payload_ref)["external_id"] == "new"


def _api_edit(**changes: Any) -> Callable[[str], None]:
    def edit(schedule_id: str) -> None:
        schedules.update(schedule_id, **changes)

    return edit


def _deactivate(schedule_id: str) -> None:
    schedules.deactivate(schedule_id)


def _form_edit(schedule_id: str) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    url = reverse("admin:trigger_celery_schedule_change", args=[schedule_id])
    response = client.post(
        url,
        {
            "task_identifier": "sched-record",
            "cron": "* * * * *",
            "timezone": "UTC",
            "external_id": "from-admin",
            "deduplication_key": "k1",
            "environments": ["PRODUCTION"],
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]


@pytest.mark.parametrize(
    "edit",
    [
        _api_edit(external_id="acme"),
        _api_edit(environments=["PRODUCTION"]),
        _api_edit(deduplication_key="renamed"),
        _api_edit(cron="*/5 * * * *"),
        _deactivate,
        _form_edit,
    ],
    ids=["external_id", "environments", "deduplication_key", "cron", "deactivate", "admin"],
)
def test_every_edit_moves_updated_at(edit):
    s = make()
    before = Schedule.objects.get(id=s.id).updated_at
    edit(s.id)
    assert Schedule.objects.get(id=s.id).updated_at != before


def test_a_declarative_sync_moves_updated_at():
    sync_declarative()
    row = Schedule.objects.get(deduplication_key="declarative:sched-declared-tokyo")
    Schedule.objects.filter(id=row.id).update(environments=["PRODUCTION"])  # drifted
    sync_declarative()
    after = Schedule.objects.get(id=row.id)
    assert after.environments == ["PRODUCTION", "STAGING"]
    assert after.updated_at != row.updated_at


# -- a schedule limited to other environments ------------------------------------------------


def test_the_api_gives_no_fire_times_for_a_schedule_that_does_not_fire_here():
    s = make(environments=["STAGING"])  # the test settings run as PRODUCTION
    assert (s.fires_here, s.next_run, s.upcoming) == (False, None, [])
    listed = schedules.list().data
    assert [(r.id, r.fires_here, r.next_run) for r in listed] == [(s.id, False, None)]
    with override_settings(TRIGGER_CELERY={**settings.TRIGGER_CELERY, "ENVIRONMENT": "STAGING"}):
        there = schedules.retrieve(s.id)
    assert there.fires_here is True and there.next_run is not None
    assert there.next_run == there.upcoming[0] == Schedule.objects.get(id=s.id).next_tick_at
    everywhere = make("k2")
    assert everywhere.fires_here is True and len(everywhere.upcoming) == 5
