"""A run's page in a real headless Chromium: what a user debugging a run needs to see."""

from __future__ import annotations

import pytest

from tests.integration.browser.test_dashboard_browser import EVIL, make_run
from tests.integration.harness import wait_for
from trigger_celery import tasks
from trigger_celery.models import Attempt, Run

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
