"""The schedule admin (SPEC 9): allow-listed tasks, validated cron and time zone, local
fire times, read-only declared schedules, permission-gated actions, escaped output.

Database only: no worker or beat is started. "Now" is frozen where fire times are
compared, so the expected times (across the 2025 US DST switch) are exact.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery.api.schedules import scheduled_task_ids, schedules
from trigger_celery.core import clock
from trigger_celery.core.cron_words import describe
from trigger_celery.engine.schedules import sync_declarative
from trigger_celery.models import Run, Schedule

pytestmark = pytest.mark.django_db

ADD = "admin:trigger_celery_schedule_add"
CHANGELIST = "admin:trigger_celery_schedule_changelist"

# Saturday 07:00 in New York (EST); DST starts the next night at 02:00.
FROZEN = datetime(2025, 3, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[datetime]:
    with clock.freeze(FROZEN):
        yield FROZEN


def change_url(schedule_id: str) -> str:
    return reverse("admin:trigger_celery_schedule_change", args=[schedule_id])


def delete_url(schedule_id: str) -> str:
    return reverse("admin:trigger_celery_schedule_delete", args=[schedule_id])


def post_data(**changes: object) -> dict[str, object]:
    """A valid add/change form; a value of None leaves the field out."""
    data: dict[str, object] = {
        "task_identifier": "sched-record",
        "cron": "0 0 * * *",
        "timezone": "America/New_York",
        "external_id": "customer-7",
        "deduplication_key": "customer-7-midnight",
        "active": "on",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def text(response) -> str:  # type: ignore[no-untyped-def]
    """The page with HTML entities decoded, to look for messages naming values."""
    return html.unescape(response.content.decode())


def select_options(page: str, name: str) -> list[str]:
    select = page.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"', select)


def make_staff(*codenames: str) -> Client:
    user = User.objects.create_user(f"staff-{User.objects.count()}", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="trigger_celery", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def run_action(client: Client, action: str, *ids: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": list(ids), **extra},
        follow=True,
    )


def imperative(key: str = "k1", cron: str = "0 * * * *") -> str:
    return schedules.create(task="sched-record", cron=cron, deduplication_key=key).id


# -- the add form ------------------------------------------------------------------------


def test_the_task_choices_are_exactly_the_scheduled_tasks(admin_client: Client) -> None:
    page = admin_client.get(reverse(ADD)).content.decode()
    offered = [v for v in select_options(page, "task_identifier") if v]
    assert offered == scheduled_task_ids()
    assert {"sched-record", "sched-declared-tokyo", "sched-declared-utc"} <= set(offered)
    assert "hello-world" not in offered
    assert not [v for v in offered if v.startswith("celery.")]
    # Time zones come from the IANA list, UTC chosen by default; environments are boxes.
    zones = select_options(page, "timezone")
    assert "UTC" in zones and "America/New_York" in zones
    assert re.search(r'<option value="UTC" selected>', page)
    assert page.count('type="checkbox" name="environments"') == 4


@pytest.mark.parametrize("task", ["hello-world", "celery.backend_cleanup", "no-such-task", ""])
def test_a_task_outside_the_allow_list_is_refused(admin_client: Client, task: str) -> None:
    response = admin_client.post(reverse(ADD), post_data(task_identifier=task))
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cron": "*/0 * * * *"}, "cron '*/0 * * * *': step '0' in the minute field"),
        ({"cron": "77 * * * *"}, "cron '77 * * * *': minute 77 is out of range 0-59"),
        ({"cron": "0 0 12 * * *"}, "cron '0 0 12 * * *' has 6 fields"),
        ({"cron": "0 \u00b2 * * *"}, "'\u00b2' is not a valid hour value"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus is not one of the available choices"),
        ({"deduplication_key": "declarative:mine"}, "reserved for schedules declared in code"),
    ],
)
def test_invalid_input_is_a_form_error_naming_the_value(
    admin_client: Client, changes: dict[str, str], expected: str
) -> None:
    response = admin_client.post(reverse(ADD), post_data(**changes))
    assert response.status_code == 200
    assert expected in text(response)
    assert "errornote" in response.content.decode()
    assert not Schedule.objects.exists()


def test_a_deduplication_key_another_schedule_holds_is_a_form_error_naming_it(
    admin_client: Client,
) -> None:
    taken = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="taken")
    other = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="other")
    added = admin_client.post(reverse(ADD), post_data(deduplication_key="taken"))
    changed = admin_client.post(change_url(other.id), post_data(deduplication_key="taken"))
    for response in (added, changed):
        assert response.status_code == 200
        assert f"deduplication key 'taken' is already schedule {taken.id}'s" in text(response)
    assert Schedule.objects.count() == 2
    assert Schedule.objects.get(id=other.id).deduplication_key == "other"


def test_an_edit_keeps_keys_and_external_ids_exactly_as_the_api_wrote_them(
    admin_client: Client,
) -> None:
    """The form stripped them: editing anything of a schedule made with key ' k ' turned
    the key into 'k', and schedules.create(deduplication_key=' k ') then made another."""
    s = schedules.create(
        task="sched-record", cron="0 * * * *", deduplication_key=" k ", external_id=" u1 "
    )
    url = reverse("admin:trigger_celery_schedule_change", args=[s.id])
    response = admin_client.post(
        url, post_data(deduplication_key=" k ", external_id=" u1 ", cron="5 * * * *")
    )
    assert response.status_code == 302
    saved = Schedule.objects.get(id=s.id)
    assert (saved.deduplication_key, saved.external_id, saved.cron) == (" k ", " u1 ", "5 * * * *")
    again = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key=" k ")
    assert again.id == s.id and Schedule.objects.count() == 1


def test_a_schedule_added_without_a_deduplication_key_has_its_id_as_key(
    admin_client: Client,
) -> None:
    for _ in range(2):
        response = admin_client.post(reverse(ADD), post_data(deduplication_key=""))
        assert response.status_code == 302, text(response)[:2000]
    rows = list(Schedule.objects.all())
    assert len(rows) == 2 and all(r.deduplication_key == r.id for r in rows)


def test_a_valid_form_creates_a_planned_schedule(admin_client: Client, frozen: datetime) -> None:
    response = admin_client.post(reverse(ADD), post_data(environments=["STAGING", "PRODUCTION"]))
    assert response.status_code == 302, text(response)[:2000]
    row = Schedule.objects.get()
    assert row.id.startswith("sched_")
    assert (row.task_identifier, row.cron, row.timezone) == (
        "sched-record",
        "0 0 * * *",
        "America/New_York",
    )
    assert row.environments == ["PRODUCTION", "STAGING"]
    assert row.active and not row.declarative and row.problem == ""
    assert row.external_id == "customer-7"
    # First midnight in New York after the frozen now: 2025-03-09 00:00 EST.
    assert row.next_tick_at == datetime(2025, 3, 9, 5, 0, tzinfo=UTC)
    assert row.next_tick_for == "0 0 * * *|America/New_York"


def test_a_schedule_created_inactive_has_no_next_tick(admin_client: Client) -> None:
    response = admin_client.post(reverse(ADD), post_data(active=None, external_id=""))
    assert response.status_code == 302
    row = Schedule.objects.get()
    assert not row.active and row.next_tick_at is None
    assert row.environments == [] and row.external_id == ""


# -- the change page ---------------------------------------------------------------------


def test_the_change_page_shows_local_fire_times_and_the_cron_in_words(
    admin_client: Client, frozen: datetime
) -> None:
    admin_client.post(reverse(ADD), post_data())
    row = Schedule.objects.get()
    page = text(admin_client.get(change_url(row.id)))
    fire_times = [
        "2025-03-09 00:00 EST (-05:00)",
        "2025-03-10 00:00 EDT (-04:00)",
        "2025-03-11 00:00 EDT (-04:00)",
        "2025-03-12 00:00 EDT (-04:00)",
        "2025-03-13 00:00 EDT (-04:00)",
    ]
    positions = [page.index(f"<li>{t}</li>") for t in fire_times]
    assert positions == sorted(positions)
    assert page.count("<li>2025-03-") == 5
    assert describe("0 0 * * *") in page and describe("0 0 * * *") != "0 0 * * *"
    for label in ("Next 5 fire times", "In words", "Last tick at", "Next tick at", "Problem"):
        assert f"{label}:</label>" in page
    listing = text(admin_client.get(reverse(CHANGELIST)))
    assert "2025-03-09 00:00 EST (-05:00)" in listing and describe("0 0 * * *") in listing


def test_a_schedule_of_another_environment_shows_no_fire_times_here(
    admin_client: Client, frozen: datetime
) -> None:
    # The tests run as PRODUCTION (tests/settings.py).
    admin_client.post(reverse(ADD), post_data(environments=["STAGING"]))
    row = Schedule.objects.get()
    page = text(admin_client.get(change_url(row.id)))
    assert "<li>2025-03-" not in page
    assert "not enabled in the PRODUCTION environment" in page
    listing = text(admin_client.get(reverse(CHANGELIST)))
    assert "2025-03-09 00:00" not in listing
    assert "not enabled in the PRODUCTION environment" in listing


def test_editing_the_cron_or_zone_re_plans_other_edits_do_not(
    admin_client: Client, frozen: datetime
) -> None:
    admin_client.post(reverse(ADD), post_data())
    row = Schedule.objects.get()
    first_tick = row.next_tick_at

    # A later "now": an edit that does not touch cron/zone/active keeps the planned tick.
    later = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
    with clock.freeze(later):
        response = admin_client.post(change_url(row.id), post_data(external_id="other"))
        assert response.status_code == 302
        row.refresh_from_db()
        assert row.external_id == "other" and row.next_tick_at == first_tick
        response = admin_client.post(change_url(row.id), post_data(cron="30 6 * * 1"))
        assert response.status_code == 302
        row.refresh_from_db()
        # Monday 2025-03-24 06:30 EDT.
        assert row.cron == "30 6 * * 1"
        assert row.next_tick_at == datetime(2025, 3, 24, 10, 30, tzinfo=UTC)
        assert row.next_tick_for == "30 6 * * 1|America/New_York"

        response = admin_client.post(
            change_url(row.id), post_data(cron="30 6 * * 1", timezone="Asia/Tokyo")
        )
        assert response.status_code == 302
        row.refresh_from_db()
        assert row.next_tick_at == datetime(2025, 3, 23, 21, 30, tzinfo=UTC)  # Mon 06:30 JST

        # Deactivating in the form clears the tick; activating again plans from "now".
        admin_client.post(
            change_url(row.id), post_data(cron="30 6 * * 1", timezone="Asia/Tokyo", active=None)
        )
        row.refresh_from_db()
        assert not row.active and row.next_tick_at is None
        admin_client.post(change_url(row.id), post_data(cron="30 6 * * 1", timezone="Asia/Tokyo"))
        row.refresh_from_db()
        assert row.active and row.next_tick_at == datetime(2025, 3, 23, 21, 30, tzinfo=UTC)


def test_an_invalid_edit_changes_nothing(admin_client: Client) -> None:
    schedule_id = imperative(cron="15 * * * *")
    response = admin_client.post(change_url(schedule_id), post_data(cron="61 * * * *"))
    assert response.status_code == 200
    assert "minute 61 is out of range" in text(response)
    assert Schedule.objects.get(id=schedule_id).cron == "15 * * * *"


def test_the_runs_link_opens_the_run_list_filtered_to_the_schedule(admin_client: Client) -> None:
    schedule_id = imperative()
    other_id = imperative(key="k2")
    for n, owner in enumerate([schedule_id, schedule_id, other_id, None]):
        Run.objects.create(
            id=f"run_admin_{n}",
            task_identifier="sched-record",
            status="COMPLETED",
            environment="PRODUCTION",
            queue="sched-record",
            max_attempts=1,
            schedule_id=owner,
            schedule_tick_at=datetime(2025, 1, 1, n, tzinfo=UTC) if owner else None,
        )
    url = reverse("admin:trigger_celery_run_changelist") + f"?schedule__id__exact={schedule_id}"
    page = admin_client.get(change_url(schedule_id)).content.decode()
    assert f'href="{url}"' in page and "2 run(s)" in page
    listing = admin_client.get(url)
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "run_admin_0" in body and "run_admin_1" in body
    assert "run_admin_2" not in body and "run_admin_3" not in body


def test_the_list_filters_and_search_work(admin_client: Client) -> None:
    sync_declarative()
    schedule_id = imperative()
    url = reverse(CHANGELIST)
    declared = admin_client.get(url, {"declarative__exact": "1"})
    assert declared.status_code == 200
    body = declared.content.decode()
    assert "sched-declared-tokyo" in body and schedule_id not in body
    for query in (
        {"active__exact": "1"},
        {"task_identifier": "sched-record"},
        {"timezone": "Asia/Tokyo"},
        {"q": "k1"},
    ):
        assert admin_client.get(url, query).status_code == 200, query
    assert schedule_id in admin_client.get(url, {"q": "k1"}).content.decode()


# -- declared schedules ------------------------------------------------------------------


def test_a_declared_schedule_is_view_only(admin_client: Client) -> None:
    sync_declarative()
    row = Schedule.objects.get(task_identifier="sched-declared-tokyo")
    before = (row.cron, row.timezone, row.environments, row.active, row.next_tick_at)

    page = admin_client.get(change_url(row.id))
    assert page.status_code == 200
    body = text(page)
    assert 'name="cron"' not in body and 'name="_save"' not in body
    assert "Declared in code" in body and "0 5 1 1 *" in body
    assert "JST (+09:00)" in body  # fire times in the schedule's own zone

    response = admin_client.post(
        change_url(row.id), post_data(task_identifier="sched-declared-tokyo", cron="* * * * *")
    )
    assert response.status_code == 403
    row.refresh_from_db()
    assert (row.cron, row.timezone, row.environments, row.active, row.next_tick_at) == before

    assert admin_client.get(delete_url(row.id)).status_code == 403
    assert admin_client.post(delete_url(row.id), {"post": "yes"}).status_code == 403
    assert Schedule.objects.filter(id=row.id).exists()


def test_bulk_delete_leaves_declared_schedules(admin_client: Client) -> None:
    sync_declarative()
    declared = list(Schedule.objects.filter(declarative=True).values_list("id", flat=True))
    mine = imperative()

    confirm = run_action(admin_client, "delete_selected", mine, *declared)
    assert confirm.status_code == 200
    body = text(confirm)
    assert "Are you sure" in body and "Skipped 2 schedule(s) declared in code" in body

    done = run_action(admin_client, "delete_selected", mine, *declared, post="yes")
    assert "Successfully deleted 1 schedule" in text(done)
    assert not Schedule.objects.filter(id=mine).exists()
    assert Schedule.objects.filter(id__in=declared).count() == 2

    only_declared = run_action(admin_client, "delete_selected", *declared, post="yes")
    assert "Skipped 2 schedule(s) declared in code" in text(only_declared)
    assert Schedule.objects.filter(id__in=declared).count() == 2


def test_activate_and_deactivate_skip_declared_schedules(admin_client: Client) -> None:
    sync_declarative()
    row = Schedule.objects.get(task_identifier="sched-declared-utc")
    mine = imperative()

    response = run_action(admin_client, "deactivate_schedules", row.id, mine)
    body = text(response)
    assert "Deactivated 1 schedule(s)." in body
    assert "Skipped 1 schedule(s) declared in code" in body
    row.refresh_from_db()
    assert row.active and row.next_tick_at is not None
    assert not Schedule.objects.get(id=mine).active

    response = run_action(admin_client, "activate_schedules", row.id)
    assert "Skipped 1 schedule(s) declared in code" in text(response)


def test_declared_schedules_are_marked_in_the_list(admin_client: Client) -> None:
    sync_declarative()
    imperative()
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert body.count('alt="True"') >= 2  # boolean icons: active and declarative columns
    assert "column-declarative" in body and "By declarative" in body


# -- actions and permissions -------------------------------------------------------------


def test_the_actions_switch_imperative_schedules_through_the_api(
    admin_client: Client, frozen: datetime
) -> None:
    schedule_id = imperative(cron="0 0 * * *")
    response = run_action(admin_client, "deactivate_schedules", schedule_id)
    assert "Deactivated 1 schedule(s)." in text(response)
    row = Schedule.objects.get(id=schedule_id)
    assert not row.active and row.next_tick_at is None

    response = run_action(admin_client, "activate_schedules", schedule_id)
    assert "Activated 1 schedule(s)." in text(response)
    row.refresh_from_db()
    assert row.active and row.next_tick_at == datetime(2025, 3, 9, 0, 0, tzinfo=UTC)

    # The inactive one shows so in the list and on its page.
    run_action(admin_client, "deactivate_schedules", schedule_id)
    assert "inactive" in admin_client.get(change_url(schedule_id)).content.decode()


def test_a_view_only_user_can_look_but_not_change(admin_client: Client) -> None:
    schedule_id = imperative()
    viewer = make_staff("view_schedule")

    listing = viewer.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    body = listing.content.decode()
    assert schedule_id in body
    for action in ("activate_schedules", "deactivate_schedules", "delete_selected"):
        assert f'value="{action}"' not in body

    run_action(viewer, "deactivate_schedules", schedule_id)
    run_action(viewer, "delete_selected", schedule_id, post="yes")
    row = Schedule.objects.get(id=schedule_id)
    assert row.active and row.next_tick_at is not None

    assert viewer.get(change_url(schedule_id)).status_code == 200
    assert viewer.post(change_url(schedule_id), post_data(cron="1 1 * * *")).status_code == 403
    assert Schedule.objects.get(id=schedule_id).cron == "0 * * * *"
    assert viewer.get(reverse(ADD)).status_code == 403
    assert viewer.post(reverse(ADD), post_data()).status_code == 403
    assert viewer.post(delete_url(schedule_id), {"post": "yes"}).status_code == 403
    assert Schedule.objects.count() == 1


def test_the_change_permission_allows_the_actions_but_not_delete() -> None:
    schedule_id = imperative()
    editor = make_staff("view_schedule", "change_schedule")
    body = editor.get(reverse(CHANGELIST)).content.decode()
    assert 'value="deactivate_schedules"' in body and 'value="delete_selected"' not in body
    run_action(editor, "deactivate_schedules", schedule_id)
    assert not Schedule.objects.get(id=schedule_id).active
    run_action(editor, "delete_selected", schedule_id, post="yes")
    assert Schedule.objects.filter(id=schedule_id).exists()


def test_people_who_are_not_staff_are_sent_to_log_in(client: Client) -> None:
    for url in (reverse(CHANGELIST), reverse(ADD)):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    User.objects.create_user("someone", password="pw")
    client.login(username="someone", password="pw")
    response = client.post(reverse(ADD), post_data())
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not Schedule.objects.exists()


# -- escaping ----------------------------------------------------------------------------


def test_user_supplied_text_is_escaped(admin_client: Client) -> None:
    schedule_id = imperative()
    Schedule.objects.filter(id=schedule_id).update(
        problem='<script>alert("p")</script>', external_id="<b>ext</b>"
    )
    page = admin_client.get(change_url(schedule_id)).content.decode()
    assert "<script>alert" not in page and "<b>ext</b>" not in page
    assert "&lt;script&gt;alert(&quot;p&quot;)&lt;/script&gt;" in page

    listing = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "⚠" in listing and "<script>alert" not in listing
    assert 'title="&lt;script&gt;alert(&quot;p&quot;)&lt;/script&gt;"' in listing
