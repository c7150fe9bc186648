"""Dashboard schedules pages: staff-only, CSRF and permission checked, values escaped."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.engine.schedules import sync_declarative
from trigger_celery.models import Run, Schedule

pytestmark = pytest.mark.django_db

LIST = reverse("trigger_celery:schedule-list")
NEW = reverse("trigger_celery:schedule-new")


def detail(schedule_id: str) -> str:
    return reverse("trigger_celery:schedule-detail", args=[schedule_id])


def action(schedule_id: str, name: str) -> str:
    return reverse("trigger_celery:schedule-action", args=[schedule_id, name])


def form_data(**overrides):
    data = {
        "task_identifier": "sched-record",
        "cron": "0 8 * * *",
        "timezone": "America/New_York",
        "external_id": "user_1",
        "deduplication_key": "user_1-reminder",
        "active": "on",
    }
    data.update(overrides)
    return data


def test_pages_are_staff_only(client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="k")
    User.objects.create_user("plain", password="x")
    client.login(username="plain", password="x")
    for url in (LIST, NEW, detail(s.id)):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"], url
    assert client.post(action(s.id, "deactivate")).status_code == 302
    assert Schedule.objects.get(id=s.id).active


def test_create_from_the_dashboard_with_validation(admin_client):
    page = admin_client.get(NEW).content.decode()
    assert 'value="sched-record"' in page and 'value="hello-world"' not in page
    bad = admin_client.post(NEW, form_data(cron="77 * * * *"))
    assert bad.status_code == 200 and "minute 77 is out of range" in bad.content.decode()
    bad = admin_client.post(NEW, form_data(timezone="Mars/Olympus"))
    assert bad.status_code == 200 and not Schedule.objects.exists()

    response = admin_client.post(NEW, form_data())
    row = Schedule.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(row.id)
    assert row.next_tick_at is not None and row.next_tick_for == "0 8 * * *|America/New_York"

    page = admin_client.get(detail(row.id)).content.decode()
    assert "At 08:00" in page
    assert page.count(" 08:00 E") == 5  # five fire times on New York's wall clock


def test_edit_and_actions(admin_client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="k")
    response = admin_client.post(
        detail(s.id), form_data(cron="*/15 * * * *", deduplication_key="k")
    )
    assert response.status_code == 302
    row = Schedule.objects.get(id=s.id)
    assert row.cron == "*/15 * * * *" and row.next_tick_at.minute % 15 == 0

    admin_client.post(action(s.id, "deactivate"))
    row.refresh_from_db()
    assert not row.active and row.next_tick_at is None
    admin_client.post(action(s.id, "activate"))
    row.refresh_from_db()
    assert row.active and row.next_tick_at is not None
    assert admin_client.get(action(s.id, "activate")).status_code == 405  # POST only
    assert admin_client.post(action(s.id, "explode")).status_code == 404
    assert admin_client.post(action(s.id, "delete")).status_code == 302
    assert not Schedule.objects.filter(id=s.id).exists()


def test_permissions_gate_every_change(logged_in_client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="k")
    viewer = logged_in_client("view_schedule")
    assert viewer.get(LIST).status_code == 200
    page = viewer.get(detail(s.id)).content.decode()
    assert "Deactivate" not in page and "<h2>Edit</h2>" not in page
    assert viewer.get(NEW).status_code == 403
    assert viewer.post(NEW, form_data()).status_code == 403
    assert viewer.post(detail(s.id), form_data(cron="* * * * *")).status_code == 403
    assert viewer.post(action(s.id, "deactivate")).status_code == 403
    assert viewer.post(action(s.id, "delete")).status_code == 403
    row = Schedule.objects.get(id=s.id)
    assert row.active and row.cron == "0 * * * *"

    changer = logged_in_client("view_schedule", "change_schedule")
    assert changer.post(action(s.id, "delete")).status_code == 403
    assert changer.post(action(s.id, "deactivate")).status_code == 302
    assert logged_in_client().get(LIST).status_code == 403  # staff without view permission


def test_actions_need_a_csrf_token(logged_in_client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="k")
    client = logged_in_client("view_schedule", "change_schedule", "delete_schedule", csrf=True)
    assert client.post(action(s.id, "deactivate")).status_code == 403
    assert client.post(action(s.id, "delete")).status_code == 403
    assert Schedule.objects.get(id=s.id).active


def test_declared_schedules_are_read_only(admin_client):
    sync_declarative()
    declared = Schedule.objects.get(task_identifier="sched-declared-tokyo")
    page = admin_client.get(detail(declared.id)).content.decode()
    assert "declared in code" in page and "<h2>Edit</h2>" not in page
    assert admin_client.post(detail(declared.id), form_data(cron="* * * * *")).status_code == 403
    for name in ("deactivate", "delete"):
        assert admin_client.post(action(declared.id, name)).status_code == 403
    declared.refresh_from_db()
    assert declared.active and declared.cron == "0 5 1 1 *"


def test_values_are_escaped_and_runs_listed(admin_client):
    s = schedules.create(
        task="sched-record",
        cron="0 * * * *",
        deduplication_key="<b>key</b>",
        external_id="<i>x</i>",
    )
    Schedule.objects.filter(id=s.id).update(problem="<script>alert(1)</script>")
    Run.objects.create(
        id="run_tick",
        task_identifier="sched-record",
        environment="PRODUCTION",
        queue="sched-record",
        max_attempts=1,
        schedule_id=s.id,
        schedule_tick_at=s.next_run,
    )
    for url in (LIST, detail(s.id)):
        body = admin_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body
        assert "<i>x</i>" not in body and "<b>key</b>" not in body
    assert "run_tick" in admin_client.get(detail(s.id)).content.decode()


def test_a_schedule_created_without_a_deduplication_key_is_a_new_schedule(admin_client):
    page = admin_client.get(NEW).content.decode()
    assert (
        'name="deduplication_key"' in page
        and "required" not in page.split('name="deduplication_key"')[1].split(">")[0]
    )
    first = admin_client.post(NEW, form_data(deduplication_key=""))
    second = admin_client.post(NEW, form_data(deduplication_key="  "))
    assert first.status_code == 302 and second.status_code == 302
    rows = list(Schedule.objects.order_by("id"))
    assert len(rows) == 2
    # Each got a key of its own: its id, so schedules.create can still address it.
    assert [r.deduplication_key for r in rows] == [r.id for r in rows]
    assert all(r.next_tick_at is not None for r in rows)
    # An edit that clears the key keeps the schedule's own key; it does not clash.
    edit = admin_client.post(detail(rows[0].id), form_data(deduplication_key="", cron="5 * * * *"))
    assert edit.status_code == 302
    rows[0].refresh_from_db()
    assert rows[0].deduplication_key == rows[0].id and rows[0].cron == "5 * * * *"
    # A key given is still a key: the same one again is refused as a duplicate.
    assert admin_client.post(NEW, form_data(deduplication_key="mine")).status_code == 302
    again = admin_client.post(NEW, form_data(deduplication_key="mine"))
    assert again.status_code == 200
    assert "deduplication key 'mine' is already schedule" in html.unescape(again.content.decode())
    assert Schedule.objects.count() == 3


def test_a_schedule_of_another_environment_says_it_does_not_fire_here(admin_client, settings):
    # The tests run as PRODUCTION (tests/settings.py).
    elsewhere = schedules.create(
        task="sched-record",
        cron="0 8 * * *",
        timezone="America/New_York",
        deduplication_key="staging-only",
        environments=["STAGING"],
    )
    here = schedules.create(
        task="sched-record",
        cron="0 9 * * *",
        timezone="America/New_York",
        deduplication_key="everywhere",
    )
    body = admin_client.get(detail(elsewhere.id)).content.decode()
    assert " 08:00 E" not in body  # no fire time it will not fire at
    assert "Does not fire in this environment (PRODUCTION): only in STAGING." in body
    listed = admin_client.get(LIST).content.decode()
    row = listed.split(f">{elsewhere.id}<")[1].split("</tr>")[0]
    assert " 08:00 E" not in row and "not in PRODUCTION (only in STAGING)" in row
    assert " 09:00 E" in listed.split(f">{here.id}<")[1].split("</tr>")[0]
    assert admin_client.get(detail(here.id)).content.decode().count(" 09:00 E") == 5
