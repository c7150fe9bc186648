"""The dashboard's permission matrix: every URL x five kinds of user x GET/POST.

No browser: Django's test client. Also: a POST without a CSRF token is refused and
changes nothing, and every answer (redirects and refusals too) carries the CSP header.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.models import BulkAction, QueueState, Run, Schedule

pytestmark = pytest.mark.django_db

USERS = ("anonymous", "non_staff", "staff", "viewer", "superuser")
VIEW_PERMS = ("view_run", "view_queuestate", "view_schedule")


def make_run(run_id: str, status: str = "QUEUED", **fields) -> Run:
    defaults = {
        "task_identifier": "hello-world",
        "status": status,
        "environment": "PRODUCTION",
        "queue": "hello-world",
        "max_attempts": 3,
        "payload": {"message": "hi"},
    }
    defaults.update(fields)
    return Run.objects.create(id=run_id, **defaults)


@pytest.fixture
def client_for(logged_in_client):
    """A client for one kind of user of USERS."""

    def make(kind: str, *, csrf: bool = False) -> Client:
        if kind == "anonymous":
            return Client(enforce_csrf_checks=csrf)
        if kind == "superuser":
            return logged_in_client(superuser=True, csrf=csrf)
        if kind == "viewer":
            return logged_in_client(*VIEW_PERMS, csrf=csrf)
        return logged_in_client(staff=kind != "non_staff", csrf=csrf)

    return make


def pages() -> list[tuple[str, str]]:
    """(name, url) of every page a GET shows; built per test (fresh rows)."""
    run = make_run("run_matrix_page")
    bulk = BulkAction.objects.create(action="cancel", run_ids=[run.id], total=1)
    bulk.finished_at = bulk.created_at
    bulk.save()
    sched = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="matrix")
    return [
        ("run-list", reverse("trigger_celery:run-list")),
        ("run-list-json", reverse("trigger_celery:run-list-json")),
        ("run-detail", reverse("trigger_celery:run-detail", args=[run.id])),
        ("run-detail-json", reverse("trigger_celery:run-detail-json", args=[run.id])),
        ("bulk-detail", reverse("trigger_celery:bulk-detail", args=[bulk.pk])),
        ("bulk-json", reverse("trigger_celery:bulk-json", args=[bulk.pk])),
        ("bulk-confirm", reverse("trigger_celery:bulk-new") + f"?action=cancel&run={run.id}"),
        ("task-list", reverse("trigger_celery:task-list")),
        ("test", reverse("trigger_celery:test") + "?task=hello-world"),
        ("queue-list", reverse("trigger_celery:queue-list")),
        ("schedule-list", reverse("trigger_celery:schedule-list")),
        ("schedule-detail", reverse("trigger_celery:schedule-detail", args=[sched.id])),
        ("schedule-new", reverse("trigger_celery:schedule-new")),
    ]


# GET as a staff user with every view permission and nothing else.
VIEWER_GET = {
    "test": 403,  # needs trigger_run
    "bulk-confirm": 403,  # needs cancel_run
    "schedule-new": 403,  # needs add_schedule
}


@pytest.mark.parametrize("kind", USERS)
def test_every_page_by_kind_of_user(kind, client_for):
    client = client_for(kind)
    for name, url in pages():
        response = client.get(url)
        if kind in ("anonymous", "non_staff"):
            expected = 302
        elif kind == "staff":
            expected = 403
        elif kind == "viewer":
            expected = VIEWER_GET.get(name, 200)
        else:
            expected = 200
        assert response.status_code == expected, (kind, name, response.status_code)
        if expected == 302:
            assert "/admin/login/" in response["Location"], (kind, name)
        assert "script-src 'self'" in response["Content-Security-Policy"], (kind, name)
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        # Never cached: payloads and logs must not come back from the cache after logout.
        assert "no-store" in response["Cache-Control"], (kind, name)
        assert "private" in response["Cache-Control"], (kind, name)


def actions() -> list[tuple[str, str, dict, int]]:
    """(name, url, data, superuser's status) of every state-changing POST."""
    executing = make_run("run_matrix_exec", status="QUEUED")
    delayed = make_run("run_matrix_delayed", status="DELAYED")
    replayed = make_run("run_matrix_replay", status="COMPLETED")
    bulked = make_run("run_matrix_bulk", status="QUEUED")
    sched = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="act")
    return [
        ("cancel", reverse("trigger_celery:run-cancel", args=[executing.id]), {}, 302),
        (
            "replay",
            reverse("trigger_celery:run-replay", args=[replayed.id]),
            {"payload": '{"message": "again"}'},
            302,
        ),
        (
            "reschedule",
            reverse("trigger_celery:run-reschedule", args=[delayed.id]),
            {"delay": "1h"},
            302,
        ),
        (
            "bulk",
            reverse("trigger_celery:bulk-new"),
            {"action": "cancel", "run": [bulked.id]},
            302,
        ),
        (
            "test",
            reverse("trigger_celery:test"),
            {"task": "hello-world", "payload": '{"message": "t"}'},
            302,
        ),
        ("pause", reverse("trigger_celery:queue-action", args=["hello-world", "pause"]), {}, 302),
        ("resume", reverse("trigger_celery:queue-action", args=["hello-world", "resume"]), {}, 302),
        (
            "override",
            reverse("trigger_celery:queue-action", args=["hello-world", "override"]),
            {"limit": "3"},
            302,
        ),
        ("reset", reverse("trigger_celery:queue-action", args=["hello-world", "reset"]), {}, 302),
        (
            "schedule-deactivate",
            reverse("trigger_celery:schedule-action", args=[sched.id, "deactivate"]),
            {},
            302,
        ),
    ]


@pytest.mark.parametrize("kind", USERS)
def test_every_action_by_kind_of_user(kind, client_for):
    client = client_for(kind)
    for name, url, data, superuser_status in actions():
        before = _state()
        response = client.post(url, data)
        if kind in ("anonymous", "non_staff"):
            expected = 302
        elif kind in ("staff", "viewer"):
            expected = 403
        else:
            expected = superuser_status
        assert response.status_code == expected, (kind, name, response.status_code)
        assert "Content-Security-Policy" in response, (kind, name)
        if kind != "superuser":
            assert _state() == before, (kind, name)
            assert "/admin/login/" in response.get("Location", "/admin/login/")


def test_actions_refuse_get(client_for):
    client = client_for("superuser")
    for name, url, _data, _status in actions():
        if name in ("bulk", "test"):
            continue  # their GET is the confirmation page / the form
        assert client.get(url).status_code == 405, name


def _state() -> tuple:
    return (
        sorted(Run.objects.values_list("id", "status", "delayed_until")),
        sorted(QueueState.objects.values_list("name", "paused", "concurrency_limit_override")),
        BulkAction.objects.count(),
        sorted(Schedule.objects.values_list("id", "active")),
    )


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(client_for):
    client = client_for("superuser", csrf=True)
    for name, url, data, _status in actions():
        before = _state()
        response = client.post(url, data)
        assert response.status_code == 403, name
        assert _state() == before, name


def test_viewer_sees_no_action_buttons_but_superuser_does(client_for):
    run = make_run("run_buttons", status="DELAYED")
    url = reverse("trigger_celery:run-detail", args=[run.id])
    viewer = client_for("viewer").get(url).content.decode()
    assert "tc-cancel" not in viewer and "tc-replay" not in viewer
    assert "tc-reschedule" not in viewer
    admin = client_for("superuser").get(url).content.decode()
    assert 'id="tc-cancel"' in admin and 'id="tc-replay"' in admin
    assert 'id="tc-reschedule"' in admin


def test_a_refusal_has_the_dashboard_layout_and_names_the_permission(client_for):
    response = client_for("viewer").get(reverse("trigger_celery:test"))
    body = response.content.decode()
    assert response.status_code == 403
    assert "trigger_celery/dashboard.css" in body and "<nav>" in body  # the layout
    assert "trigger_celery.trigger_run" in body
    staff = client_for("staff").get(reverse("trigger_celery:run-list"))
    assert staff.status_code == 403 and "trigger_celery.view_run" in staff.content.decode()
    assert "script-src 'self'" in staff["Content-Security-Policy"]
    anonymous = client_for("anonymous").get(reverse("trigger_celery:test"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_a_missing_page_has_the_dashboard_layout_and_says_what_is_missing(client_for):
    missing = reverse("trigger_celery:run-detail", args=["run_<i>nope"])
    response = client_for("viewer").get(missing)
    body = response.content.decode()
    assert response.status_code == 404
    assert "trigger_celery/dashboard.css" in body and "<nav>" in body  # the layout
    assert "No run run_&lt;i&gt;nope" in body and "<i>nope" not in body
    assert "script-src 'self'" in response["Content-Security-Policy"]
    anonymous = client_for("anonymous").get(missing)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_links_to_pages_a_user_may_not_open_are_hidden(client_for, logged_in_client):
    test_url = reverse("trigger_celery:test")
    viewer = client_for("viewer").get(reverse("trigger_celery:run-list")).content.decode()
    assert f'href="{test_url}' not in viewer  # the nav and the empty list's hint
    tasks_page = client_for("viewer").get(reverse("trigger_celery:task-list"))
    assert f'href="{test_url}' not in tasks_page.content.decode()
    runs_only = logged_in_client("view_run").get(reverse("trigger_celery:run-list"))
    for name in ("queue-list", "schedule-list"):
        assert f'href="{reverse("trigger_celery:" + name)}"' not in runs_only.content.decode()
    tester = logged_in_client("view_run", "trigger_run")
    assert f'href="{test_url}"' in tester.get(reverse("trigger_celery:run-list")).content.decode()
    admin = client_for("superuser").get(reverse("trigger_celery:task-list")).content.decode()
    assert f'href="{test_url}"' in admin and f'href="{test_url}?task=' in admin


def test_links_inside_pages_lead_only_where_the_user_may_go(logged_in_client):
    """With view_run only: the tasks page names each task's queue and schedules, and a
    scheduled run its schedule, without linking to pages that would answer 403 (found
    by a browser audit)."""
    sched = schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="links")
    run = make_run("run_of_a_schedule", task_identifier="sched-record", schedule_id=sched.id)
    runs_only = logged_in_client("view_run")
    queues_url = reverse("trigger_celery:queue-list")
    sched_url = reverse("trigger_celery:schedule-detail", args=[sched.id])
    tasks_page = runs_only.get(reverse("trigger_celery:task-list")).content.decode()
    run_page = runs_only.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    assert f'href="{queues_url}' not in tasks_page and f'href="{sched_url}"' not in tasks_page
    assert f'href="{sched_url}"' not in run_page and sched.id in run_page
    everything = logged_in_client(*VIEW_PERMS)
    tasks_page = everything.get(reverse("trigger_celery:task-list")).content.decode()
    run_page = everything.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    assert f'href="{queues_url}#q-' in tasks_page and f'href="{sched_url}"' in tasks_page
    assert f'href="{sched_url}"' in run_page
    # The other way round: queues and schedules, but not runs.
    no_runs = logged_in_client("view_queuestate", "view_schedule")
    queues_page = no_runs.get(queues_url).content.decode()
    sched_page = no_runs.get(sched_url).content.decode()
    runs_url, a_run = (
        reverse("trigger_celery:run-list"),
        reverse("trigger_celery:run-detail", args=["x"]),
    )
    for page in (queues_page, sched_page):
        assert f'href="{runs_url}?' not in page and f'href="{runs_url}"' not in page
        assert f'href="{a_run[: -len("x/")]}' not in page
    assert f'class="brand" href="{queues_url}"' in queues_page


def test_a_tester_who_may_not_view_runs_stays_on_the_test_page_told_the_run(logged_in_client):
    tester = logged_in_client("trigger_run", csrf=False)
    page = tester.get(reverse("trigger_celery:test") + "?task=hello-world").content.decode()
    assert f'class="brand" href="{reverse("trigger_celery:test")}"' in page
    response = tester.post(
        reverse("trigger_celery:test") + "?task=hello-world",
        {"task": "hello-world", "payload": '{"message": "hi"}'},
        follow=True,
    )
    run = Run.objects.get(task_identifier="hello-world", payload={"message": "hi"})
    assert response.redirect_chain[-1][0] == reverse("trigger_celery:test") + "?task=hello-world"
    assert response.status_code == 200
    assert f"Triggered run {run.id}." in response.content.decode()


def test_the_test_page_shows_no_run_payload_to_a_user_who_may_not_view_runs(logged_in_client):
    """Its payload box is filled from the task's latest run: a user who may trigger but
    not view runs read that run's payload there, past the permission."""
    Run.objects.create(
        id="run_secret_payload",
        task_identifier="hello-world",
        status="COMPLETED",
        environment="PRODUCTION",
        queue="hello-world",
        max_attempts=3,
        payload={"card": "4242-SECRET"},
    )
    trigger_only = logged_in_client("trigger_run")
    detail = reverse("trigger_celery:run-detail", args=["run_secret_payload"])
    assert trigger_only.get(detail).status_code == 403
    page = trigger_only.get(reverse("trigger_celery:test") + "?task=hello-world")
    assert page.status_code == 200 and "4242-SECRET" not in page.content.decode()
    viewer = logged_in_client("trigger_run", "view_run")
    assert (
        "4242-SECRET"
        in viewer.get(reverse("trigger_celery:test") + "?task=hello-world").content.decode()
    )
