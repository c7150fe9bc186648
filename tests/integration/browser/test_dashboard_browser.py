"""The dashboard in a real headless Chromium: what a user clicks, and what happens."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.integration.browser.conftest import PASSWORD, Watched
from tests.integration.harness import _env, max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import queues, tasks
from trigger_celery.models import Run

pytestmark = [pytest.mark.integration, pytest.mark.browser]

EVIL = [
    "<script>window.__xss = 1; alert('script')</script>",
    '"><img src=x onerror="window.__xss = 2; alert(\'img\')">',
    "{{ 7|add:1 }} {% now 'Y' %}",
]


def make_run(run_id: str, status: str = "COMPLETED", **fields) -> Run:
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


def status_of(page, selector: str = "#tc-status") -> str:
    return page.inner_text(selector).strip()


def test_log_in_filter_by_status_and_tag_then_page_forward(browser_page):
    page = browser_page.page
    for i in range(60):
        make_run(f"run_b_{i:03d}", "FAILED", tags=["nightly"])
    make_run("run_b_ok", "COMPLETED", tags=["nightly"])
    make_run("run_b_other", "FAILED", tags=["weekly"])
    browser_page.go("/trigger/")
    page.check("input[name=status][value=FAILED]")
    page.fill("input[name=tag]", "nightly")
    page.click("#tc-filters button[type=submit]")
    page.wait_for_url("**status=FAILED**")
    rows = page.locator("#tc-runs tbody tr")
    assert rows.count() == 50
    assert rows.first.get_attribute("data-id") == "run_b_059"
    assert "run_b_ok" not in page.content() and "run_b_other" not in page.content()
    page.click("#tc-next")
    page.wait_for_url("**after=**")
    ids = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
    assert ids == [f"run_b_{i:03d}" for i in range(9, -1, -1)]
    assert browser_page.csp_violations() == []


def test_a_run_triggered_elsewhere_appears_and_completes_without_a_reload(browser_page, live):
    page = browser_page.page
    browser_page.go("/trigger/")
    page.evaluate("window.__not_reloaded = true")
    script = (
        "import django; django.setup()\n"
        "from trigger_celery import tasks\n"
        "print(tasks.trigger('hello-world', {'message': 'from afar'}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    page.wait_for_selector(f'#tc-runs tr[data-id="{run_id}"]')
    page.wait_for_selector(f'#tc-runs tr[data-id="{run_id}"] .status.COMPLETED')
    assert page.evaluate("window.__not_reloaded") is True
    assert browser_page.csp_violations() == []


def test_a_live_list_whose_last_run_stops_matching_says_no_runs_match(browser_page):
    page = browser_page.page
    make_run("run_live_only", "EXECUTING", tags=["now-running"])
    browser_page.go("/trigger/?status=EXECUTING&tag=now-running")
    page.wait_for_selector('#tc-runs tr[data-id="run_live_only"]')
    Run.objects.filter(id="run_live_only").update(status="COMPLETED")
    page.wait_for_selector("#tc-runs tbody tr.empty")
    assert page.locator('#tc-runs tr[data-id="run_live_only"]').count() == 0
    assert browser_page.csp_violations() == []


def test_cancel_an_executing_run_from_its_page(browser_page, live):
    page = browser_page.page
    handle = tasks.trigger("sleepy", {"seconds": 30, "tag": "browser-cancel"})
    wait_for(
        lambda: Run.objects.get(id=handle.id).status == "EXECUTING",
        timeout=30,
        what="the run to execute",
    )
    browser_page.go(f"/trigger/runs/{handle.id}/")
    assert status_of(page) == "EXECUTING"
    page.click("#tc-cancel button")  # the confirmation is dismissed: nothing happens
    assert browser_page.dialogs == [f"Cancel run {handle.id} (sleepy)?"]
    assert Run.objects.get(id=handle.id).status == "EXECUTING"
    assert status_of(page) == "EXECUTING" and page.locator("#tc-cancel").count() == 1
    page.remove_listener("dialog", browser_page._dialog)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#tc-cancel button")
    page.wait_for_selector("#tc-status.CANCELED")
    assert Run.objects.get(id=handle.id).status == "CANCELED"
    assert page.locator("#tc-cancel").count() == 0


def test_replay_with_an_edited_payload(browser_page):
    page = browser_page.page
    original = make_run("run_b_replay", task_identifier="greet", payload={"name": "Ada"})
    browser_page.go(f"/trigger/runs/{original.id}/")
    page.click("#tc-replay summary")
    # The box is filled from the payload on the toggle event, after the click returns:
    # typed before that, the payload lands in the middle of the text (CI met it).
    page.wait_for_function("document.querySelector('#tc-replay textarea').value !== ''")
    page.fill("#tc-replay textarea", '{"name": "Grace", "count": 2}')
    page.click("#tc-replay button[type=submit]")
    page.wait_for_selector("text=Replay of")
    new = Run.objects.get(replayed_from_id=original.id)
    assert page.url.endswith(f"/trigger/runs/{new.id}/")
    assert new.payload == {"name": "Grace", "count": 2}
    browser_page.go(f"/trigger/runs/{original.id}/")
    assert page.locator(f'a[href="/trigger/runs/{new.id}/"]').count() == 1


def test_reschedule_a_delayed_run(browser_page):
    page = browser_page.page
    handle = tasks.trigger("hello-world", {"message": "later"}, delay="1h")
    browser_page.go(f"/trigger/runs/{handle.id}/")
    assert status_of(page) == "DELAYED"
    page.fill("#tc-reschedule input[name=delay]", "3h")
    page.click("#tc-reschedule button")
    page.wait_for_selector("text=rescheduled (3h)")
    moved = Run.objects.get(id=handle.id).delayed_until - timezone.now()
    assert timedelta(hours=2, minutes=59) < moved <= timedelta(hours=3)


def test_bulk_cancel_50_runs_matched_by_a_filter(browser_page):
    page = browser_page.page
    ids = [tasks.trigger("hello-world", {"n": i}, delay="1h", tags=["b50"]).id for i in range(50)]
    spared = tasks.trigger("hello-world", {"n": "spared"}, delay="1h").id
    browser_page.go("/trigger/?tag=b50")
    page.check("#tc-scope")
    page.click("#tc-bulk button[value=cancel]")
    page.wait_for_selector("text=Cancel 50 runs?")
    page.click("#tc-bulk-confirm button[type=submit]")
    page.wait_for_selector("#tc-progress-state:has-text('finished')")
    assert page.inner_text("#tc-progress-text") == "50 done, 0 failed, of 50"
    assert Run.objects.filter(id__in=ids, status="CANCELED").count() == 50
    assert Run.objects.get(id=spared).status == "DELAYED"


def test_test_page_bad_payload_then_a_good_one(browser_page):
    page = browser_page.page
    browser_page.go("/trigger/test/")
    page.select_option("select[name=task]", "greet")
    page.click("form.filters button")
    page.wait_for_selector("#tc-test-form")
    page.fill("textarea[name=payload]", '{"count": "many"}')
    page.click("#tc-test-form button[type=submit]")
    page.wait_for_selector("#tc-error-payload")
    assert "does not fit the task" in page.inner_text("#tc-error-payload")
    assert not Run.objects.filter(task_identifier="greet").exists()
    page.fill("textarea[name=payload]", '{"name": "Lin"}')
    page.fill("input[name=tags]", "from-test-page")
    page.click("#tc-test-form button[type=submit]")
    page.wait_for_url("**/trigger/runs/run_*/")
    run = Run.objects.get(task_identifier="greet")
    assert page.url.endswith(f"/runs/{run.id}/") and run.tags == ["from-test-page"]


def _queue_button(page, queue: str, label: str):
    return page.locator(f'tr[data-queue="{queue}"] button', has_text=label)


def test_pause_a_queue_and_resume_it(browser_page, live):
    page = browser_page.page
    browser_page.go("/trigger/queues/")
    try:
        _queue_button(page, "shared-1", "Pause").click()
        page.wait_for_selector('tr[data-queue="shared-1"] .state:has-text("PAUSED")')
        waiting = tasks.trigger("shared-a", {"tag": "b-paused", "seconds": 0.05})
        other = tasks.trigger("hello-world", {"message": "other queue"})
        wait_for(
            lambda: Run.objects.get(id=other.id).status == "COMPLETED",
            timeout=30,
            what="a run of another queue",
        )
        assert Run.objects.get(id=waiting.id).status == "QUEUED"
        page.reload()
        assert page.inner_text('tr[data-queue="shared-1"] td:nth-child(4)') == "1"
        _queue_button(page, "shared-1", "Resume").click()
        page.wait_for_selector('tr[data-queue="shared-1"] .state:has-text("RUNNING")')
        wait_for(
            lambda: Run.objects.get(id=waiting.id).status == "COMPLETED",
            timeout=30,
            what="the paused run after resume",
        )
    finally:
        queues.resume("shared-1")


def test_override_a_limit_and_a_real_worker_honours_it(browser_page, live):
    page = browser_page.page
    browser_page.go("/trigger/queues/")
    try:
        page.fill('tr[data-queue="override-1"] input[name=limit]', "3")
        _queue_button(page, "override-1", "Override limit").click()
        page.wait_for_selector('tr[data-queue="override-1"] .overridden')
        handles = [tasks.trigger("override-me", {"tag": "b-ovr", "seconds": 0.5}) for _ in range(6)]
        ids = [h.id for h in handles]
        wait_for(
            lambda: Run.objects.filter(id__in=ids, status="COMPLETED").count() == 6,
            timeout=60,
            what="six runs of override-me",
        )
        assert max_overlap([(v[2], v[3]) for v in events.values("interval:b-ovr")]) == 3
        _queue_button(page, "override-1", "Reset to code").click()
        page.wait_for_selector("text=back to the limit in code")
        assert page.locator('tr[data-queue="override-1"] .overridden').count() == 0
    finally:
        queues.reset_limit("override-1")


def test_hostile_strings_show_as_text_and_run_no_script(browser_page):
    page = browser_page.page
    evil = " ".join(EVIL)
    run = make_run(
        "run_b_evil",
        "FAILED",
        payload={"x": evil},
        output={"y": evil},
        metadata={"m": evil},
        tags=[EVIL[0][:60], EVIL[1][:60]],
        error={"type": "ValueError", "message": evil, "stack": evil},
        task_identifier="hello-world",
        idempotency_key=EVIL[1][:60],
    )
    run.logs.create(attempt_number=1, level="INFO", message=evil, attributes={"a": evil})
    for path in (f"/trigger/runs/{run.id}/", "/trigger/", "/trigger/?tag=" + EVIL[0][:60]):
        browser_page.go(path)
        page.wait_for_timeout(300)  # let any injected handler fire, if one got through
        text = page.inner_text("main")
        assert "<script>window.__xss = 1" in text, path
        assert page.evaluate("window.__xss") is None, path
    browser_page.go(f"/trigger/runs/{run.id}/")
    assert "{{ 7|add:1 }} {% now 'Y' %}" in page.inner_text("#tc-payload")
    assert page.locator("main img").count() == 0
    assert browser_page.dialogs == []
    # Escaped, nothing even tried to run (the CSP would have reported a blocked attempt).
    assert browser_page.csp_violations() == []


def test_status_tags_and_metadata_update_live_on_the_run_page(browser_page, live):
    page = browser_page.page
    queues.pause("progress")  # the page is loaded before the run starts
    try:
        handle = tasks.trigger("progress", {})
        browser_page.go(f"/trigger/runs/{handle.id}/")
        assert status_of(page) == "QUEUED"
        assert "halfway" not in page.inner_text("#tc-tags")
        page.evaluate("window.__not_reloaded = true")
    finally:
        queues.resume("progress")
    page.wait_for_selector("#tc-status.EXECUTING")
    page.wait_for_selector("#tc-tags .tag:has-text('halfway')")
    page.wait_for_function(
        "document.getElementById('tc-metadata').textContent.includes('\"progress\": 0.5')"
    )
    assert page.evaluate("window.__not_reloaded") is True
    events.record(f"go:{handle.id}", 1)
    page.wait_for_selector("#tc-status.COMPLETED")  # final: the page reloads with the output
    assert '"done"' in page.inner_text("#tc-output")
    assert browser_page.csp_violations() == []


def test_a_run_ending_while_the_user_types_reloads_once_they_leave_the_form(browser_page, live):
    page = browser_page.page
    queues.pause("progress")  # the page is loaded before the run starts
    try:
        handle = tasks.trigger("progress", {})
        browser_page.go(f"/trigger/runs/{handle.id}/")
        page.evaluate("window.__not_reloaded = true")
        page.click("#tc-replay summary")
        # The box is filled from the payload when it opens (a toggle event, which comes
        # after the click returns): typed into before that, the payload lands beside it.
        page.wait_for_function("document.querySelector('#tc-replay textarea').value !== ''")
        page.fill("#tc-replay textarea", '{"edited": true}')
        page.focus("#tc-replay textarea")
    finally:
        queues.resume("progress")
    events.record(f"go:{handle.id}", 1)
    page.wait_for_selector("#tc-status.COMPLETED")  # the poll saw it end...
    # ...and left the page alone: what the user typed is still there.
    assert page.evaluate("window.__not_reloaded") is True
    assert page.input_value("#tc-replay textarea") == '{"edited": true}'
    with page.expect_navigation():  # focus leaves the form: now the page shows the output
        page.click("h1")
    assert page.evaluate("window.__not_reloaded") is None
    assert '"done"' in page.inner_text("#tc-output")
    assert browser_page.csp_violations() == []


def test_the_payload_is_rendered_once_and_replay_starts_from_it(browser_page):
    page = browser_page.page
    original = make_run(
        "run_b_once", task_identifier="greet", payload={"name": "Ada <b>once-marker</b>"}
    )
    browser_page.go(f"/trigger/runs/{original.id}/")
    assert page.content().count("once-marker") == 1
    assert "<b>once-marker</b>" in page.inner_text("#tc-payload")  # escaped: shown as text
    page.click("#tc-replay summary")  # the replay box starts from the payload shown
    page.wait_for_function("document.querySelector('#tc-replay textarea').value !== ''")
    assert page.input_value("#tc-replay textarea") == page.inner_text("#tc-payload")
    page.click("#tc-replay button[type=submit]")
    page.wait_for_selector("text=Replay of")
    assert Run.objects.get(replayed_from_id=original.id).payload == original.payload
    assert browser_page.csp_violations() == []


def test_log_lines_appear_live_while_the_run_executes(browser_page, live):
    page = browser_page.page
    queues.pause("logs-in-steps")  # the page is loaded before the run starts
    try:
        handle = tasks.trigger("logs-in-steps", {"lines": ["first step", EVIL[0], "third"]})
        browser_page.go(f"/trigger/runs/{handle.id}/")
        assert "No log lines." in page.inner_text("#tc-logs")
        page.evaluate("window.__not_reloaded = true")
    finally:
        queues.resume("logs-in-steps")
    page.wait_for_selector("#tc-logs tbody tr:has-text('first step')")
    assert "No log lines." not in page.inner_text("#tc-logs")
    events.record(f"go:{handle.id}", 1)
    page.wait_for_selector("#tc-logs tbody tr:has-text('window.__xss')")
    rows = page.locator("#tc-logs tbody tr")
    assert rows.count() == 2  # each line once, in order, as text
    assert "first step" in rows.nth(0).inner_text()
    assert EVIL[0] in rows.nth(1).inner_text() and '"step": 2' in rows.nth(1).inner_text()
    assert page.evaluate("window.__xss") is None and browser_page.dialogs == []
    assert status_of(page) == "EXECUTING"
    assert page.evaluate("window.__not_reloaded") is True  # no reload did this
    events.record(f"go:{handle.id}", 2)
    page.wait_for_selector("#tc-logs tbody tr:has-text('third')")
    events.record(f"go:{handle.id}", 3)
    page.wait_for_selector("#tc-status.COMPLETED")
    assert page.locator("#tc-logs tbody tr").count() == 3
    assert browser_page.csp_violations() == []


def test_a_user_without_a_permission_sees_no_link_to_it_and_a_dashboard_403(
    chromium, live_server, django_user_model
):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    make_run("run_b_viewer")
    context = chromium.new_context()
    page = context.new_page()
    watched = Watched(page, live_server.url)
    try:
        watched.go("/trigger/")
        page.fill("#id_username", "viewer")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/trigger/")
        nav = page.inner_text("header nav")
        assert "Runs" in nav and "Tasks" in nav
        assert "Test" not in nav and "Queues" not in nav and "Schedules" not in nav
        watched.go("/trigger/tasks/")
        assert page.locator("a[href^='/trigger/test/']").count() == 0
        response = watched.go("/trigger/test/")
        assert response.status == 403
        assert "trigger_celery.trigger_run" in page.inner_text("main")
        assert page.locator("header nav a", has_text="Runs").count() == 1  # the layout
        # The dashboard's stylesheet is applied to it, as to any page.
        assert page.eval_on_selector("header", "e => getComputedStyle(e).display") == "flex"
        assert watched.csp_violations() == []
    finally:
        context.close()


def test_the_live_bulk_progress_bar_counts_skipped_runs(browser_page):
    """The bar the page polls left skipped runs out: a finished action showed 0 of 3
    until a reload (the text said 3 skipped, finished)."""
    from trigger_celery import bulk
    from trigger_celery.models import BulkAction

    page = browser_page.page
    ids = [make_run(f"run_skip{i}", "QUEUED").id for i in range(3)]
    row = BulkAction(action="cancel", run_ids=ids, filters={}, created_by="boss")
    row.total = bulk.matching(row).count()
    row.save()  # the web process that took it went away before working it off
    BulkAction.objects.filter(pk=row.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    Run.objects.filter(id__in=ids).update(status="COMPLETED")  # they finished on their own
    browser_page.go(f"/trigger/bulk/{row.pk}/")  # resumes it; the page polls its progress
    page.wait_for_selector("#tc-progress-state:has-text('finished')")
    assert "3 skipped (already finished), of 3" in page.inner_text("#tc-progress-text")
    assert page.eval_on_selector("#tc-progress", "e => [e.value, e.max]") == [3, 3]


def test_a_form_holding_more_than_the_site_accepts_is_kept_and_not_sent(browser_page, settings):
    """Django answers a form body past DATA_UPLOAD_MAX_MEMORY_SIZE with a bare 400, and
    what was typed is lost: the replay box and the test page say so and keep it."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4000
    page = browser_page.page
    original = make_run("run_b_big", task_identifier="greet", payload={"name": "x" * 5000})
    browser_page.go(f"/trigger/runs/{original.id}/")
    page.click("#tc-replay summary")
    page.wait_for_function("document.querySelector('#tc-replay textarea').value !== ''")
    page.click("#tc-replay button[type=submit]")
    note = page.wait_for_selector("#tc-replay .tc-too-large")
    assert "more than the 4000 this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)" in (
        note.inner_text()
    )
    assert page.url.endswith(f"/runs/{original.id}/")  # not sent
    assert "x" * 5000 in page.input_value("#tc-replay textarea")  # kept
    assert not Run.objects.filter(replayed_from_id=original.id).exists()
    # Within the limit, the same form is sent (as multipart, which Django reads alike).
    page.fill("#tc-replay textarea", '{"name": "Ünïcode"}')
    page.click("#tc-replay button[type=submit]")
    page.wait_for_selector("text=Replay of")
    assert Run.objects.get(replayed_from_id=original.id).payload == {"name": "Ünïcode"}

    browser_page.go("/trigger/test/?task=greet")
    page.fill("textarea[name=payload]", '{"name": "' + "y" * 5000 + '"}')
    page.click("#tc-test-form button[type=submit]")
    page.wait_for_selector("#tc-test-form .tc-too-large")
    assert Run.objects.filter(task_identifier="greet").count() == 2  # nothing new
    assert browser_page.csp_violations() == []
