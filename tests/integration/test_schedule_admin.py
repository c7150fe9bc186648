"""Django admin for schedules: validation, fire times, read-only declared ones, actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.client.schedules import sync_declarative
from trigger_celery.models import Schedule

pytestmark = pytest.mark.django_db

ADD = "admin:trigger_celery_schedule_add"
LIST = "admin:trigger_celery_schedule_changelist"


def change_url(schedule_id: str) -> str:
    return reverse("admin:trigger_celery_schedule_change", args=[schedule_id])


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
    return {k: v for k, v in data.items() if v is not None}


def staff(*perms: str) -> Client:
    user = User.objects.create_user(f"staff{User.objects.count()}", password="x", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def test_the_task_choice_lists_only_scheduled_tasks(admin_client):
    page = admin_client.get(reverse(ADD)).content.decode()
    assert 'value="sched-record"' in page and 'value="sched-declared-utc"' in page
    assert 'value="hello-world"' not in page
    assert "celery." not in page.split('name="task_identifier"', 1)[1].split("</select>", 1)[0]
    response = admin_client.post(reverse(ADD), form_data(task_identifier="hello-world"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cron", "*/0 * * * *", "step &#x27;0&#x27; in the minute field"),
        ("cron", "77 * * * *", "minute 77 is out of range 0-59"),
        ("cron", "0 0 * * * *", "6 fields: seconds are not supported"),
        ("timezone", "Mars/Olympus", "Select a valid choice. Mars/Olympus"),
        ("deduplication_key", "declarative:x", "reserved"),
    ],
)
def test_invalid_input_is_a_form_error_naming_the_value(admin_client, field, value, message):
    response = admin_client.post(reverse(ADD), form_data(**{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Schedule.objects.exists()


def test_a_valid_form_creates_a_planned_schedule_shown_with_its_fire_times(admin_client):
    response = admin_client.post(reverse(ADD), form_data(environments=["PRODUCTION", "STAGING"]))
    assert response.status_code == 302, response.content.decode()[:3000]
    row = Schedule.objects.get()
    assert row.id.startswith("sched_") and row.next_tick_at is not None
    assert row.environments == ["PRODUCTION", "STAGING"] and not row.declarative
    assert row.next_tick_for == "0 8 * * *|America/New_York"

    page = admin_client.get(change_url(row.id)).content.decode()
    assert "At 08:00" in page
    assert page.count(" 08:00 E") == 5  # five local times, EST or EDT
    assert "(-0500)" in page or "(-0400)" in page

    old_tick = row.next_tick_at
    data = form_data(cron="*/15 * * * *", environments=["PRODUCTION", "STAGING"])
    assert admin_client.post(change_url(row.id), data).status_code == 302
    row.refresh_from_db()
    assert row.cron == "*/15 * * * *" and row.next_tick_at != old_tick
    assert row.next_tick_at.minute % 15 == 0


def test_declared_schedules_are_read_only(admin_client):
    sync_declarative()
    declared = Schedule.objects.get(task_identifier="sched-declared-utc")
    page = admin_client.get(change_url(declared.id)).content.decode()
    assert 'name="cron"' not in page and "0 0 1 1 *" in page
    admin_client.post(change_url(declared.id), form_data(cron="* * * * *"))
    declared.refresh_from_db()
    assert declared.cron == "0 0 1 1 *" and declared.active

    delete = reverse("admin:trigger_celery_schedule_delete", args=[declared.id])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    admin_client.post(
        reverse(LIST),
        {"action": "delete_selected", "_selected_action": [declared.id], "post": "yes"},
    )
    assert Schedule.objects.filter(id=declared.id).exists()

    response = admin_client.post(
        reverse(LIST),
        {"action": "deactivate_schedules", "_selected_action": [declared.id]},
        follow=True,
    )
    assert "Skipped 1 schedule(s) declared in code" in response.content.decode()
    declared.refresh_from_db()
    assert declared.active


def test_actions_switch_imperative_schedules_and_need_the_change_permission(admin_client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="a")
    admin_client.post(reverse(LIST), {"action": "deactivate_schedules", "_selected_action": [s.id]})
    row = Schedule.objects.get(id=s.id)
    assert not row.active and row.next_tick_at is None
    admin_client.post(reverse(LIST), {"action": "activate_schedules", "_selected_action": [s.id]})
    row.refresh_from_db()
    assert row.active and row.next_tick_at is not None

    viewer = staff("view_schedule")
    listing = viewer.get(reverse(LIST))
    assert listing.status_code == 200
    assert "deactivate_schedules" not in listing.content.decode()
    viewer.post(reverse(LIST), {"action": "deactivate_schedules", "_selected_action": [s.id]})
    assert Schedule.objects.get(id=s.id).active
    assert viewer.get(reverse(ADD)).status_code == 403
    assert viewer.post(reverse(ADD), form_data()).status_code == 403
    assert Schedule.objects.count() == 1

    admin_client.post(
        reverse(LIST), {"action": "delete_selected", "_selected_action": [s.id], "post": "yes"}
    )
    assert not Schedule.objects.filter(id=s.id).exists()


def test_non_staff_are_sent_to_log_in(client):
    User.objects.create_user("plain", password="x")
    client.login(username="plain", password="x")
    response = client.get(reverse(LIST))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_problem_text_is_escaped(admin_client):
    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="x")
    Schedule.objects.filter(id=s.id).update(problem="<script>alert(1)</script>")
    page = admin_client.get(change_url(s.id)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "⚠ skipped" in admin_client.get(reverse(LIST)).content.decode()


def test_the_runs_link_lists_the_schedule_runs(admin_client):
    from django.utils import timezone

    from trigger_celery.models import Run

    s = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="x")
    for n, schedule_id in enumerate([s.id, s.id, None]):
        Run.objects.create(
            id=f"run_{n}",
            task_identifier="sched-record",
            environment="PRODUCTION",
            queue="sched-record",
            max_attempts=1,
            schedule_id=schedule_id,
            schedule_tick_at=timezone.now() - timezone.timedelta(hours=n) if schedule_id else None,
        )
    page = admin_client.get(change_url(s.id)).content.decode()
    url = reverse("admin:trigger_celery_run_changelist") + f"?schedule__id__exact={s.id}"
    assert f'href="{url}"' in page and "2 run(s)" in page
    listing = admin_client.get(url)
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "run_0" in body and "run_1" in body and "run_2" not in body
