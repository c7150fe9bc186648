"""A run's page in a real headless Chromium: what a user debugging a run needs to see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import storages
from django.utils import timezone

from tests.integration.browser.test_dashboard_browser import EVIL, make_run, status_of
from tests.integration.harness import wait_for
from trigger_celery import queues, runs, tasks
from trigger_celery.engine.payloads import store_payload
from trigger_celery.models import Attempt, Run, Waitpoint

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_each_failed_attempt_shows_its_traceback_folded_under_its_error(browser_page, live):
    page = browser_page.page
    handle = tasks.trigger("always-fails", {})
    wait_for(
        lambda: Run.objects.get(id=handle.id).status == "FAILED",
        timeout=60,
        what="three failed attempts",
    )
    browser_page.go(f"/trigger/runs/{handle.id}/")
    rows = page.locator("#tc-attempt-table tbody tr")
    assert rows.count() == 3
    for i in range(3):
        row = rows.nth(i)
        assert "ValueError: this task always fails" in row.inner_text()
        stack = row.locator("details.stack pre")
        assert stack.count() == 1
        assert not stack.is_visible()  # folded until asked for
        row.locator("details.stack summary").click()
        assert stack.is_visible()
        text = stack.inner_text()
        assert text.startswith("Traceback (most recent call last):")
        assert "in always_fails" in text and 'raise ValueError("this task always fails")' in text
    assert browser_page.csp_violations() == []


def test_an_attempt_traceback_is_escaped_and_bounded(browser_page):
    page = browser_page.page
    evil = " ".join(EVIL)
    huge = "Traceback (most recent call last):\n" + "  frame\n" * 40_000 + "ValueError: the end\n"
    run = make_run("run_b_stacks", "FAILED", error={"type": "ValueError", "message": "x"})
    Attempt.objects.create(
        run=run,
        number=1,
        status="FAILED",
        started_at=run.created_at,
        finished_at=run.created_at,
        error={"type": "ValueError", "message": evil, "stack": evil},
    )
    Attempt.objects.create(
        run=run,
        number=2,
        status="FAILED",
        started_at=run.created_at,
        finished_at=run.created_at,
        error={"type": "ValueError", "message": "big", "stack": huge},
    )
    browser_page.go(f"/trigger/runs/{run.id}/")
    rows = page.locator("#tc-attempt-table tbody tr")
    assert rows.nth(0).locator("details.stack").count() == 1
    rows.nth(0).locator("details.stack summary").click()
    assert rows.nth(0).locator("details.stack pre").inner_text() == evil  # as text
    assert page.evaluate("window.__xss") is None and browser_page.dialogs == []
    assert page.locator("main img").count() == 0
    rows.nth(1).locator("details.stack summary").click()
    shown = rows.nth(1).locator("details.stack pre").inner_text()
    assert len(shown) < 16 * 1024 < len(huge)  # a page, not the 128 KB stored
    assert shown.startswith("Traceback") and shown.rstrip().endswith("ValueError: the end")
    assert "characters left out" in shown
    assert browser_page.csp_violations() == []


def _stored(run_id: str, kind: str, value: object) -> str:
    inline, ref = store_payload(run_id, kind, value, limit=100 * 1024 * 1024)
    assert inline is None and ref
    return ref


def test_a_large_stored_output_shows_its_start_and_says_it_was_cut(browser_page):
    page = browser_page.page
    big = {"rows": [f"row {i:06d}" for i in range(200_000)]}  # about 2.6 MB of JSON
    run = make_run(
        "run_b_big_out",
        payload={"small": True},
        output=None,
        output_ref=_stored("run_b_big_out", "output", big),
    )
    browser_page.go(f"/trigger/runs/{run.id}/")
    shown = page.inner_text("#tc-output")
    assert "row 000000" in shown[:40] and "row 199999" not in shown
    assert 256 * 1024 < len(shown) < 1024 * 1024  # a start of it, not 2.6 MB of page
    assert "larger than 512 KB" in page.inner_text("#tc-output-note")
    assert page.locator("#tc-payload-note").count() == 0
    assert '"small": true' in page.inner_text("#tc-payload")
    assert browser_page.csp_violations() == []


def test_a_run_whose_stored_payload_is_gone_still_shows_and_says_so(browser_page):
    page = browser_page.page
    ref = _stored("run_b_gone", "payload", {"blob": "x" * 700_000})
    # DELAYED a day: a shared beat and worker of the session leave it as it is (QUEUED,
    # the beat's reconcile would send it, and its failed start end it).
    later = timezone.now() + timedelta(days=1)
    run = make_run("run_b_gone", "DELAYED", payload=None, payload_ref=ref, delayed_until=later)
    storages["default"].delete(ref)  # a storage the web process does not share, say
    response = browser_page.go(f"/trigger/runs/{run.id}/")
    assert response.status == 200
    assert "could not be read" in page.inner_text("#tc-payload-note")
    assert page.locator("#tc-cancel button").count() == 1  # it can still be canceled
    page.click("#tc-replay summary")  # nothing to start the box from: left empty
    assert page.input_value("#tc-replay textarea") == ""
    page.click("#tc-replay button[type=submit]")
    page.wait_for_selector(".messages .msg-error")
    assert "its payload could not be read" in page.inner_text(".messages")
    assert not Run.objects.filter(replayed_from_id=run.id).exists()
    # The test page, which starts from the task's latest payload, starts from an example.
    assert browser_page.go("/trigger/test/?task=hello-world").status == 200
    assert page.locator("#tc-test-form textarea[name=payload]").count() == 1


def test_a_failed_attempt_shows_on_the_open_page_while_the_run_waits_to_retry(browser_page, live):
    page = browser_page.page
    queues.pause("retry-later")  # the page is loaded before the run starts
    try:
        handle = tasks.trigger("retry-later", {})
        browser_page.go(f"/trigger/runs/{handle.id}/")
        assert "No attempts yet." in page.inner_text("#tc-attempt-table")
    finally:
        queues.resume("retry-later")
    try:
        # Attempt 1 fails; attempt 2 is a minute away. The open page shows why.
        page.wait_for_selector("#tc-attempt-table tbody tr:has-text('come back in a minute')")
        assert Run.objects.get(id=handle.id).status == "QUEUED"
        assert status_of(page) == "QUEUED"
        assert page.locator("#tc-attempt-table details.stack").count() == 1
    finally:
        runs.cancel(handle.id)
    assert browser_page.csp_violations() == []


def test_the_timeline_of_a_waiting_run_shows_its_wait_lasting_until_now(browser_page):
    page = browser_page.page
    now = timezone.now()
    run = make_run("run_b_waiting", "WAITING")
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=100))
    run.attempts.create(
        number=1,
        status="SUSPENDED",
        started_at=now - timedelta(seconds=100),
        finished_at=now - timedelta(seconds=90),
    )
    wait = Waitpoint.objects.create(
        run=run, step=0, kind="DATETIME", label="wait", resume_at=now + timedelta(seconds=210)
    )
    Waitpoint.objects.filter(id=wait.id).update(created_at=now - timedelta(seconds=90))
    browser_page.go(f"/trigger/runs/{run.id}/")
    rows = page.locator("table.timeline-table tbody tr")
    labels = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert labels == ["attempt 1", "wait 5m"]  # waiting at its wait, not "queued"
    seconds = float(rows.nth(1).locator("td").nth(1).inner_text())
    assert seconds >= 90  # from the wait's start until now
    assert rows.nth(1).locator("rect.waiting").count() == 1
